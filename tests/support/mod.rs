//! Helpers shared by the integration tests: temporary directories, CAPI events that
//! Meta's rules accept, the simulator on 127.0.0.1, and a thread-free "core" that
//! drives a batcher and a hand-off link like an ingestion core does.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capig::deliver::batch::{BatchConfig, Batcher, ClosedBatch};
use capig::deliver::handoff::{CoreLink, Done, Origin, SubmitError, Ticket};
use capig::sim::{FailRule, FaultConfig, SimArgs, SimHandle, Simulator};

/// A SHA-256 hex value (of an email): enough for Meta's baseline matching rule.
pub const HASH: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("capig-it-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// One CAPI event as the transform writes it, accepted by the simulator.
pub fn capi_event(event_id: &str, event_time: u64) -> String {
    serde_json::json!({
        "event_name": "Purchase",
        "event_time": event_time,
        "event_id": event_id,
        "action_source": "website",
        "event_source_url": "https://shop.example/checkout",
        "user_data": {"em": [HASH], "client_user_agent": "Mozilla/5.0 (capig test)", "client_ip_address": "2001:db8::1"},
        "custom_data": {"value": 12.5, "currency": "EUR"},
    })
    .to_string()
}

/// A website event without a user agent: Meta refuses it (code 100).
pub fn invalid_event(event_id: &str, event_time: u64) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&capi_event(event_id, event_time)).unwrap();
    v["user_data"].as_object_mut().unwrap().remove("client_user_agent");
    v.to_string()
}

pub fn sim() -> SimHandle {
    sim_with(SimArgs::default())
}

pub fn sim_with(args: SimArgs) -> SimHandle {
    Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..args }).unwrap()
}

/// Faults from `CODE=RATE[@PIXEL]` rules.
pub fn faults(rules: &[&str]) -> FaultConfig {
    FaultConfig {
        fail: rules.iter().map(|r| r.parse::<FailRule>().unwrap()).collect(),
        ..FaultConfig::default()
    }
}

/// The event ids the simulator accepted for `pixel`, in the order it accepted them.
pub fn sim_ids(sim: &SimHandle, pixel: u64) -> Vec<String> {
    sim.events(Some(&pixel.to_string()))
        .into_iter()
        .map(|e| e.event["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the simulator has as many events of `pixel` as `want` holds, then
/// checks that they are exactly `want`, each once (in any order).
pub fn assert_each_once(sim: &SimHandle, pixel: u64, mut want: Vec<String>, timeout: Duration) {
    wait_for(timeout, "every stored event at the simulator", || sim_ids(sim, pixel).len() >= want.len());
    let mut got = sim_ids(sim, pixel);
    got.sort();
    want.sort();
    assert_eq!(got, want, "each stored event exactly once, nothing else");
}

/// Waits until `cond` holds, polling; panics with `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Plays an ingestion core: batches events per pixel and hands closed batches over,
/// remembering which event ids each ticket carries.
pub struct Core {
    pub batcher: Batcher,
    pub link: CoreLink,
    /// Event ids in each pixel's open batch, oldest first.
    open: HashMap<u64, Vec<String>>,
    tickets: HashMap<Ticket, Vec<String>>,
    pub acked: Vec<String>,
    pub refused: Vec<(String, SubmitError)>,
    closed: Vec<ClosedBatch>,
    done: Vec<Done>,
}

impl Core {
    pub fn new(link: CoreLink, cfg: BatchConfig) -> Core {
        Core {
            batcher: Batcher::new(cfg),
            link,
            open: HashMap::new(),
            tickets: HashMap::new(),
            acked: Vec::new(),
            refused: Vec::new(),
            closed: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Adds one serialized CAPI event to `pixel`'s batch.
    pub fn push(&mut self, pixel: u64, event_id: &str, event: &str, event_time: u64) {
        if self.link.spool_full() {
            self.refused.push((event_id.to_owned(), self.link.full_error()));
            return;
        }
        self.open.entry(pixel).or_default().push(event_id.to_owned());
        self.batcher.push(pixel, Instant::now(), event_time, event.as_bytes(), &mut self.closed);
        self.submit_closed();
    }

    /// Closes batches whose linger passed, collects answers.
    pub fn tick(&mut self) {
        self.batcher.poll_linger(Instant::now(), &mut self.closed);
        self.submit_closed();
        self.poll();
    }

    pub fn flush(&mut self) {
        self.batcher.flush_all(&mut self.closed);
        self.submit_closed();
    }

    fn submit_closed(&mut self) {
        for b in std::mem::take(&mut self.closed) {
            let ids: Vec<String> = self.open.get_mut(&b.pixel).unwrap().drain(..b.events as usize).collect();
            match self.link.submit(b) {
                Ok(t) => {
                    self.tickets.insert(t, ids);
                }
                Err(e) => self.refused.extend(ids.into_iter().map(|id| (id, e.clone()))),
            }
        }
    }

    pub fn poll(&mut self) {
        self.link.poll(&mut self.done);
        for d in std::mem::take(&mut self.done) {
            let Origin::Fresh(t) = d.origin else { panic!("the link reports only fresh tickets") };
            let ids = self.tickets.remove(&t).expect("a known ticket");
            match d.result {
                Ok(()) => self.acked.extend(ids),
                Err(e) => self.refused.extend(ids.into_iter().map(|id| (id, e.clone()))),
            }
        }
    }

    /// Tickets handed over and not answered yet.
    pub fn unanswered(&self) -> usize {
        self.tickets.len()
    }

    /// Flushes, then polls until every ticket is answered.
    pub fn settle(&mut self, timeout: Duration) {
        self.flush();
        let start = Instant::now();
        while self.unanswered() > 0 {
            assert!(start.elapsed() < timeout, "{} batch(es) never answered", self.unanswered());
            std::thread::sleep(Duration::from_millis(2));
            self.poll();
        }
    }
}

/// A `capig serve` child process with its own configuration and spool.
pub struct Gateway {
    pub child: std::process::Child,
    /// The plain HTTP listener.
    pub http: std::net::SocketAddr,
    /// The HTTPS listener, when configured.
    pub https: Option<std::net::SocketAddr>,
    /// A redirect listener, when configured.
    pub redirect: Option<std::net::SocketAddr>,
    pub config: PathBuf,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

pub const GW_PIXEL: &str = "5555555555555555";
pub const GW_KEY: &str = "backend-key-1";
pub const GW_ORIGIN: &str = "https://www.shop.example";
pub const GW_HOST: &str = "capig.shop.example";
pub const GW_OTHER_HOST: &str = "capig.other.example";

/// Writes a gateway configuration under `dir` (http on 127.0.0.1:0, optionally https
/// with the example certificate) with `extra` appended, pointing at `graph_url`.
pub fn gateway_config(dir: &TempDir, graph_url: &str, https: bool, extra: &str) -> PathBuf {
    std::fs::write(dir.0.join("token"), "gw-token\n").unwrap();
    std::fs::write(dir.0.join("keys"), format!("{GW_KEY}\n")).unwrap();
    // With https: a certificate per domain (the second domain proves SNI picks).
    let mut tls = String::new();
    let mut other = String::new();
    if https {
        for (host, name) in [(GW_HOST, "main"), (GW_OTHER_HOST, "other")] {
            let c = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
            std::fs::write(dir.0.join(format!("{name}.crt")), c.cert.pem()).unwrap();
            std::fs::write(dir.0.join(format!("{name}.key")), c.signing_key.serialize_pem()).unwrap();
        }
        tls = "tls_cert = \"main.crt\"\ntls_key = \"main.key\"\n".to_owned();
        other = format!("[[domains]]\nname = \"{GW_OTHER_HOST}\"\norigins = [\"https://www.other.example\"]\ntls_cert = \"other.crt\"\ntls_key = \"other.key\"\n");
    }
    let https_listener = if https { "[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"https\"\n" } else { "" };
    let text = format!(
        r#"
[[listeners]]
addr = "127.0.0.1:0"
kind = "http"

{https_listener}
[[domains]]
name = "{GW_HOST}"
origins = ["{GW_ORIGIN}"]
{tls}
{other}
[[pixels]]
id = "{GW_PIXEL}"
access_token_file = "token"
access_keys_file = "keys"

[upstream]
graph_url = "{graph_url}"
linger_ms = 5
retry_initial_ms = 10
retry_max_ms = 200

[spool]
dir = "spool"
fsync_interval_ms = 2

[runtime]
cores = 2
{extra}
"#
    );
    let path = dir.0.join("capig.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Gateway {
    pub fn start(config: &std::path::Path, args: &[&str]) -> Gateway {
        Gateway::start_with(config, args, |_| {})
    }

    /// Starts `capig serve`, with `prepare` applied to the command (environment,
    /// pre-exec hooks), and waits for its listeners.
    pub fn start_with(config: &std::path::Path, args: &[&str], prepare: impl FnOnce(&mut std::process::Command)) -> Gateway {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_capig"));
        cmd.args(["serve", "--config"]).arg(config).args(args);
        cmd.env("CAPIG_LOG", "info");
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("start capig serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(out).lines();
        let (mut http, mut https, mut redirect) = (None, None, None);
        // One "listening" line per [[listeners]] entry of the file.
        let listeners = std::fs::read_to_string(config).unwrap().matches("\nkind = \"").count();
        let mut seen = 0;
        while seen < listeners {
            let Some(Ok(line)) = lines.next() else {
                panic!("capig serve ended before listening; its log:\n{}", log.lock().unwrap());
            };
            if line.starts_with("capig: listening on ") {
                seen += 1;
            }
            if let Some(a) = line.strip_prefix("capig: listening on http (redirect) ") {
                redirect = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("capig: listening on http ") {
                http = Some(a.parse().unwrap());
            } else if let Some(a) = line.strip_prefix("capig: listening on https ") {
                https = Some(a.parse().unwrap());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Gateway { child, http: http.unwrap(), https, redirect, config: config.to_path_buf(), log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): status, headers
/// (lowercase names) and body.
pub fn http(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {GW_HOST}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// An HTTP answer: status, headers (lowercase names), body.
pub type Answer = (u16, Vec<(String, String)>, String);

pub fn parse_response(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, Vec::new(), text);
    };
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A browser event of the gateway's pixel, 30 days old: Meta refuses it (`event_too_old`).
pub fn stale_browser_event(id: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&browser_event(id)).unwrap();
    v["event_time"] = (unix_now() - 30 * 86400).into();
    v.to_string()
}

/// A WebSocket upgrade request for `url` from the shop's page (its `Origin`), with
/// `user_agent`.
pub fn ws_request(url: &str, user_agent: &str) -> tungstenite::handshake::client::Request {
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    req.headers_mut().insert("Origin", GW_ORIGIN.parse().unwrap());
    req.headers_mut().insert("User-Agent", user_agent.parse().unwrap());
    req
}

/// A browser event of the gateway's pixel.
pub fn browser_event(id: &str) -> String {
    browser_event_of(GW_PIXEL, id)
}

/// A browser event (a Purchase with an email to hash) of `pixel`.
pub fn browser_event_of(pixel: &str, id: &str) -> String {
    serde_json::json!({
        "pixel_id": pixel,
        "event_name": "Purchase",
        "event_id": id,
        "event_time": unix_now(),
        "event_source_url": "https://www.shop.example/checkout",
        "custom_data": {"value": 9.99, "currency": "EUR"},
        "user_data": {"em": "Jane.Doe@Example.com"},
    })
    .to_string()
}

/// A TLS client (ALPN http/1.1) that trusts the certificate in `cert_pem` and asks for
/// `sni`.
pub fn tls_client(addr: std::net::SocketAddr, cert_pem: &std::path::Path, sni: &'static str) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tls_client_over(tcp, cert_pem, sni)
}

/// The same over any byte stream (one that cuts what it writes, say).
pub fn tls_client_over<S: std::io::Read + std::io::Write>(stream: S, cert_pem: &std::path::Path, sni: &'static str) -> rustls::StreamOwned<rustls::ClientConnection, S> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cert_pem).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), sni.try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, stream)
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`: status, headers,
/// body. `None` when the connection ended (or failed) before a whole response.
pub fn read_response(s: &mut impl std::io::Read) -> Option<Answer> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, headers, _) = parse_response(&raw[..end + 4]);
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            if raw.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).into_owned();
                return Some((status, headers, body));
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A tmpfs of a given size mounted on `mnt`, unmounted on drop.
pub struct Tmpfs {
    pub mnt: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `<dir>/disk`. `None`, with the reason printed,
    /// where this process may not mount (not root, no mount namespace rights); under
    /// CI (`CI=true`), which runs as root, that fails the test instead.
    pub fn mount(dir: &TempDir, bytes: u64) -> Option<Tmpfs> {
        let mnt = dir.0.join("disk");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "capig-test"])
            .arg(&mnt)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { mnt }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "cannot mount a tmpfs under CI (it runs as root): {why}");
        eprintln!("skipped: cannot mount a tmpfs here ({why}); run as root to test a really full disk");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}
