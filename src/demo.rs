//! `capig demo`: the whole gateway on an embedded default, no Meta account needed.
//!
//! It starts the CAPI simulator on a free port of 127.0.0.1 as the upstream, writes a
//! configuration (one pixel, its token and access key, a domain whose origins are the
//! demo's own) into a data directory, and runs `capig serve`'s server with a few more
//! routes: a demo shop at `/` that loads the Meta Pixel base code (pointing at a labelled
//! local stand-in for `fbevents.js`, since Meta's servers are not reachable) and
//! `capig.js`; `POST /demo/pixel`, where the stand-in records what the browser pixel
//! sent; `/demo/status` and `/demo/status.json`, both channels side by side, matched by
//! `event_id`. Everything stops on Ctrl-C, and a temporary data directory is removed.
//!
//! The demo routes take a lock per request: they are a demonstration, not the hot path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::config::{Config, ConfigError};
use crate::ingest::{ExtraAnswer as Answer, ExtraRoutes, ServeError, ServeOptions, Server};
use crate::proto::http1::Method;
use crate::sim::{SimArgs, SimError, SimHandle, Simulator};

/// The demo's pixel.
pub const PIXEL: &str = "1234567890123456";
const SHOP: &str = include_str!("../web-client/demo/shop.html");
const STATUS: &str = include_str!("../web-client/demo/status.html");
const PIXEL_JS: &str = include_str!("../web-client/demo/pixel.js");
/// Browser-side records kept (the oldest go first).
const KEEP: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare the data directory {}: {source}", path.display())]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot start the CAPI simulator: {0}")]
    Sim(#[from] SimError),
    #[error("the demo's configuration does not load (a bug, please report it): {0}")]
    Config(#[from] ConfigError),
    #[error("{0}; pick another address with --listen")]
    Serve(#[from] ServeError),
}

#[derive(Deserialize)]
struct PixelRecord {
    pixel_id: Option<String>,
    event_name: Option<String>,
    event_id: Option<String>,
}

/// The demo's state: what the browser pixel sent, and the simulator to compare with.
pub struct Demo {
    browser: Mutex<Vec<(String, String)>>,
    sim: Arc<SimHandle>,
}

impl ExtraRoutes for Demo {
    fn route(&self, method: Method, path: &str, body: &[u8]) -> Option<Answer> {
        self.answer(matches!(method, Method::Get | Method::Head), method == Method::Post, path, body)
    }
}

impl Demo {
    pub fn new(sim: Arc<SimHandle>) -> Demo {
        Demo { browser: Mutex::new(Vec::new()), sim }
    }

    /// The demo's routes; `None` for any other path.
    fn answer(&self, get: bool, post: bool, path: &str, body: &[u8]) -> Option<Answer> {
        let page = |body: &str, content_type| Some(Answer { status: 200, content_type, body: body.as_bytes().to_vec() });
        match path {
            "/" | "/index.html" if get => page(SHOP, "text/html; charset=utf-8"),
            "/demo/status" if get => page(STATUS, "text/html; charset=utf-8"),
            "/demo/pixel.js" if get => page(PIXEL_JS, "application/javascript; charset=utf-8"),
            "/demo/status.json" if get => Some(Answer {
                status: 200,
                content_type: "application/json",
                body: self.status_json().into_bytes(),
            }),
            "/demo/pixel" if post => Some(self.record(body)),
            _ => None,
        }
    }

    fn record(&self, body: &[u8]) -> Answer {
        let Ok(r) = serde_json::from_slice::<PixelRecord>(body) else {
            return Answer { status: 400, content_type: "text/plain", body: b"not a pixel record\n".to_vec() };
        };
        if r.pixel_id.as_deref() == Some(PIXEL) {
            let mut b = self.browser.lock().unwrap_or_else(|e| e.into_inner());
            if b.len() == KEEP {
                b.remove(0);
            }
            b.push((r.event_id.unwrap_or_default(), r.event_name.unwrap_or_default()));
        }
        Answer { status: 204, content_type: "text/plain", body: Vec::new() }
    }

    /// `{"browser_events", "capig_events", "matched", "events":[{event_id, event_name,
    /// browser, capig}]}`, newest first.
    pub fn status_json(&self) -> String {
        let browser = self.browser.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let capig: Vec<(String, String)> = self
            .sim
            .events(Some(PIXEL))
            .into_iter()
            .map(|e| {
                let s = |k: &str| e.event[k].as_str().unwrap_or_default().to_owned();
                (s("event_id"), s("event_name"))
            })
            .collect();
        let delivered: std::collections::HashSet<&(String, String)> = capig.iter().collect();
        let matched = browser.iter().filter(|b| delivered.contains(b)).count();
        let mut rows: Vec<serde_json::Value> = Vec::new();
        let mut index: HashMap<&(String, String), usize> = HashMap::new();
        for (is_browser, list) in [(true, &browser), (false, &capig)] {
            for e in list.iter() {
                let i = *index.entry(e).or_insert_with(|| {
                    rows.push(serde_json::json!({"event_id": e.0, "event_name": e.1, "browser": false, "capig": false}));
                    rows.len() - 1
                });
                rows[i][if is_browser { "browser" } else { "capig" }] = true.into();
            }
        }
        rows.reverse();
        rows.truncate(200);
        serde_json::json!({
            "browser_events": browser.len(),
            "capig_events": capig.len(),
            "matched": matched,
            "events": rows,
        })
        .to_string()
    }
}

/// What `capig demo` is told.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    /// `None`: a fresh temporary directory, removed on exit.
    pub data_dir: Option<PathBuf>,
    /// More site origins allowed to send events (the shop reached through a proxy).
    pub origins: Vec<String>,
}

/// A running demo.
pub struct RunningDemo {
    pub server: Server,
    pub sim: Arc<SimHandle>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    temporary: bool,
}

/// Starts the simulator and the gateway with the demo's configuration.
pub fn start(opts: &DemoOptions) -> Result<RunningDemo, DemoError> {
    let (data_dir, temporary) = match &opts.data_dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            (std::env::temp_dir().join(format!("capig-demo-{}-{nanos}", std::process::id())), true)
        }
    };
    let io = |source| DemoError::DataDir { path: data_dir.clone(), source };
    std::fs::create_dir_all(&data_dir).map_err(io)?;
    write_secret(&data_dir.join("demo.token"), "demo-token-for-the-simulator\n").map_err(io)?;
    write_secret(&data_dir.join("demo.keys"), "demo-backend-key\n").map_err(io)?;
    let sim = Arc::new(Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() })?);
    // The origins name the port, so a port 0 is resolved now (a free one, asked of the
    // kernel; another program could take it before the gateway binds it, then the start
    // fails and says so).
    let mut listen = opts.listen;
    if listen.port() == 0 {
        let probe = std::net::TcpListener::bind(listen).map_err(io)?;
        listen = probe.local_addr().map_err(io)?;
    }
    let port = listen.port();
    let mut origins = vec![format!("http://{listen}"), format!("http://localhost:{port}"), format!("http://127.0.0.1:{port}")];
    origins.extend(opts.origins.iter().cloned());
    let origins = origins.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(", ");
    let text = format!(
        r#"
[[listeners]]
addr = "{listen}"
kind = "http"

[[domains]]
name = "localhost"
origins = [{origins}]

[[pixels]]
id = "{PIXEL}"
access_token_file = "demo.token"
access_keys_file = "demo.keys"

[upstream]
graph_url = "{graph}"
linger_ms = 200

[spool]
dir = "spool"

# One ingestion core: dedup windows are per core, and a browser that leaves hands its
# unacknowledged events over by sendBeacon, which may reach another core than the
# WebSocket that carried them; on one core the demo delivers each event exactly once.
[runtime]
cores = 1
"#,
        graph = sim.url(),
    );
    let config = Config::from_toml(&text, &data_dir.join("capig-demo.toml"), &[])?;
    let demo = Arc::new(Demo::new(sim.clone()));
    let server = Server::start(config, ServeOptions { extra_routes: Some(demo), ..ServeOptions::default() })?;
    let addr = server
        .listening()
        .first()
        .map(|(_, a)| *a)
        .expect("the demo has one listener");
    Ok(RunningDemo { server, sim, addr, data_dir, temporary })
}

impl RunningDemo {
    /// Stops the gateway and the simulator; removes a temporary data directory.
    pub fn stop(self) {
        self.server.shutdown(std::time::Duration::from_secs(2));
        if let Ok(sim) = Arc::try_unwrap(self.sim) {
            sim.shutdown();
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}
