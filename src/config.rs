//! The configuration (being written).
