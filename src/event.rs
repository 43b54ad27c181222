//! Events: from a browser pixel event to a Conversions API server event.
//!
//! - [`json`]: the in-place simd-json parser and the JSON writer;
//! - [`browser`]: the browser event object, borrowed from the request buffer;
//! - [`transform`]: the pure transform into a CAPI event written into a batch buffer;
//! - [`normalize`]: Meta's normalization and SHA-256 hashing of `user_data` fields;
//! - [`custom_data`]: the checks of `custom_data`;
//! - [`ids`]: the `_fbp` / `_fbc` cookie formats;
//! - [`policy`]: per-pixel policy and the dedup window;
//! - [`reject`]: rejection reasons and counters.
pub mod browser;
pub mod custom_data;
pub mod ids;
pub mod json;
pub mod normalize;
pub mod policy;
pub mod reject;
pub mod transform;

pub use json::Parser;
pub use transform::{Accepted, Context, Transformer};
