//! Events: from a browser pixel event to a Conversions API server event.
//!
//! - [`normalize`]: Meta's normalization and SHA-256 hashing of `user_data` fields.
//! - [`ids`]: the `_fbp` / `_fbc` cookie formats.
pub mod ids;
pub mod normalize;
