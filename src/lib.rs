//! capig: a self-hosted Conversions API Gateway.
//!
//! Browser copies of Meta Pixel events come in (WebSocket, HTTPS), and backends send
//! CAPI-shaped events to the server-to-gateway API; capig turns them into Conversions
//! API events and delivers them to the Graph API without losing any.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map, `docs/DESIGN.md`
//! for the design and the names other programs rely on, and `docs/CAPI.md` for the facts
//! about Meta's APIs that the code relies on. The modules:
//! - [`config`]: the TOML configuration, its validation and `--set` overrides;
//! - [`event`]: the browser event model, normalization and hashing, the transform;
//! - [`deliver`]: batches, the hand-off, the durable spool, the sender and the scheduler;
//! - [`proto`]: the sans-IO HTTP/1.1 and WebSocket codecs;
//! - [`send`]: `capig send`, events from a stream through the delivery path;
//! - [`sim`]: the CAPI simulator that stands in for `graph.facebook.com`;
//! - [`demo`]: `capig demo`, everything on an embedded default with a demo shop;
//! - [`ingest`]: `capig serve`'s per-core server.
#![forbid(unsafe_code)]

pub mod config;
pub mod deliver;
pub mod demo;
pub mod event;
pub mod ingest;
pub mod proto;
pub mod send;
pub mod sim;
