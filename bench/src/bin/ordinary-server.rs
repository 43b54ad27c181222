//! The "ordinary implementation" baseline of the comparison harness: a plain hyper 1.x
//! HTTP/1.1 server on a tokio current-thread runtime that reads each `POST` body whole,
//! parses it with serde_json into an owned `Value` (an event or an array of them) and
//! answers `204` (`400` for a body that is not JSON). It does none of capig's work after
//! the parse — no transform, no batch, no spool — so it is a floor for a straightforward
//! Rust service, not a competitor doing equal work.
//!
//!   ordinary-server [ADDR]      (default 127.0.0.1:8088; prints "listening on ADDR")

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match req.into_body().collect().await {
        Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) {
            Ok(v) => {
                std::hint::black_box(v);
                StatusCode::NO_CONTENT
            }
            Err(_) => StatusCode::BAD_REQUEST,
        },
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    Ok(r)
}

fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an address: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle)).await;
            });
        }
    })
}
