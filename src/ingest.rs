//! The ingestion side (issue 4): the per-core server that takes browser and backend
//! events. Built piece by piece; what exists is sans-IO and tested, and no command runs a
//! server yet:
//! - [`edge`]: client IP through trusted proxies, cookie domain, `_fbp` minting.

pub mod edge;
