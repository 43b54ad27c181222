//! Sans-IO protocol codecs of the ingestion side: [`http1`] (HTTP/1.1 requests and
//! responses over `httparse`) and [`websocket`] (RFC 6455 frames). They work on byte
//! slices and an explicit `now`; the runtime (`ingest`, issue 4) is the thin driver.

pub mod http1;
pub mod websocket;
