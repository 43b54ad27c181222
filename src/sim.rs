//! The CAPI simulator (being written).
