//! The configuration: one TOML file (`/etc/capig/capig.toml` on an installed system) that
//! describes everything the gateway runs with, plus `--set key.path=value` overrides.
//!
//! The file format is documented key by key in `examples/capig.toml`, which is also a
//! working configuration. In short: top-level `trusted_proxies`, tables `[runtime]`,
//! `[control]`, `[upstream]`, `[spool]`, `[limits]`, and arrays of tables `[[listeners]]`,
//! `[[domains]]`, `[[pixels]]`. Relative paths resolve against the directory of the
//! configuration file (so `/etc/capig/capig.toml` can say `secrets/123.token`); a relative
//! path given with `--set` resolves against the current directory, where the person typing
//! it is.
//!
//! Design constraints:
//! - Loading is all-or-nothing and says everything at once: [`Config::load`] either
//!   returns a complete, validated `Config` or a [`ConfigError`] with *every* problem found,
//!   each with `file:line:col` (or `--set <path>`), the key, what is wrong and what to do.
//!   Unknown keys are errors, with a "did you mean" or the list of valid keys.
//! - Secrets (access tokens, access keys) are read from files named in the configuration,
//!   never written in it, and are held in [`Secret`], whose `Debug`/`Display` are redacted.
//!   No message prints a secret or a secret file's content.
//! - Everything the gateway needs from a file is read here (tokens, keys, TLS certificates
//!   and keys parsed into a rustls `CertifiedKey`), so a configuration that passes
//!   `capig check-config` cannot fail later on one of its files, and a reload swaps one
//!   complete value for another.
//! - Defaults live in the `Default` impls of the public types below, in one place.
//!
//! Modules: `document` (the TOML tree with spans, overrides, unknown keys), `raw` (serde
//! structs as written), `validate` (raw → public types, every rule), `files` (secret and
//! TLS files), `problem` (locations and messages), `net` (IP networks), `size` (byte
//! sizes), `secret`.

mod document;
mod files;
mod net;
mod problem;
mod raw;
mod secret;
mod size;
mod validate;

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

use crate::event::policy::{parse_pixel_id, DedupConfig, PixelId, PixelPolicy, Policies};

pub use net::{IpNet, IpNetError};
pub use problem::{ConfigError, Problem};
pub use secret::Secret;
pub use size::{parse_size, SizeError};

/// Where an installed system keeps its configuration.
pub const DEFAULT_PATH: &str = "/etc/capig/capig.toml";

/// Meta's limit on events per Graph API request.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// A complete, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (as given).
    pub source: PathBuf,
    pub runtime: Runtime,
    pub control: Control,
    pub listeners: Vec<Listener>,
    pub domains: Vec<Domain>,
    pub pixels: Vec<Pixel>,
    pub upstream: Upstream,
    pub spool: Spool,
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Things worth telling the operator that do not stop the gateway (a secret file
    /// readable by every user, a disabled pixel without its token). `check-config` prints
    /// them; `serve` should log them at start.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    /// Ingestion cores (one runtime thread each); 0 = every available core.
    pub cores: usize,
    pub log_level: LogLevel,
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime {
            cores: 0,
            log_level: LogLevel::Info,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// The control socket (metrics, status, pause/resume, reload, live tap).
    pub socket: PathBuf,
    /// Its file mode: the admin process connects through the group.
    pub socket_mode: u32,
}

impl Default for Control {
    fn default() -> Control {
        Control {
            socket: PathBuf::from("/run/capig/control.sock"),
            socket_mode: 0o660,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// TLS, with the certificate chosen by SNI among `[[domains]]`.
    Https,
    /// Plain HTTP, for use behind a load balancer that terminates TLS.
    Http,
    /// Answers every request with a redirect to the same URL over https.
    Redirect,
}

impl ListenerKind {
    pub const ALL: [ListenerKind; 3] = [
        ListenerKind::Https,
        ListenerKind::Http,
        ListenerKind::Redirect,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            ListenerKind::Http => "http",
            ListenerKind::Redirect => "redirect",
        }
    }
}

/// One of capig's own host names.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Lowercase host name, e.g. `capig.shop.example`.
    pub name: String,
    /// Site origins allowed to call the browser endpoints, normalized: lowercase
    /// `scheme://host[:port]`, without the scheme's default port. Empty: none.
    pub origins: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// The certificate chain and key, loaded and checked; `Some` when both files are set.
    pub certified_key: Option<Arc<CertifiedKey>>,
}

impl Domain {
    /// Whether a request's `Origin` header is one of this domain's origins.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// One Meta pixel (dataset).
#[derive(Clone, Debug)]
pub struct Pixel {
    pub id: PixelId,
    pub access_token_file: Option<PathBuf>,
    /// The Graph API access token. Always `Some` for an enabled pixel; a disabled pixel
    /// may be configured before its token exists.
    pub access_token: Option<Secret>,
    pub access_keys_file: Option<PathBuf>,
    /// Keys that backends present to the server-to-gateway API; empty: that API refuses
    /// this pixel.
    pub access_keys: Vec<Secret>,
    pub enabled: bool,
    /// Site domains (lowercase) the pixel may fire on, each with its subdomains; empty: any.
    pub domains: Vec<String>,
    pub blocked_events: Vec<String>,
    pub test_event_code: Option<String>,
}

impl Pixel {
    /// What the transform's policy needs of this pixel.
    pub fn policy(&self) -> PixelPolicy {
        PixelPolicy {
            id: self.id,
            enabled: self.enabled,
            domains: self.domains.clone(),
            blocked_events: self.blocked_events.clone(),
        }
    }

    /// Whether `key` is one of this pixel's access keys (compared in constant time).
    pub fn accepts_access_key(&self, key: &str) -> bool {
        // Every key is compared, so the time does not tell which one matched.
        self.access_keys
            .iter()
            .fold(false, |hit, k| k.matches(key.as_bytes()) | hit)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Scheme, host and optional path prefix, without a trailing slash.
    pub graph_url: String,
    pub api_version: String,
    /// Events per Graph API request, 1 to [`MAX_BATCH_EVENTS`].
    pub batch_size: usize,
    /// A batch also closes before its JSON body would exceed this many bytes.
    pub batch_bytes: usize,
    /// How long an open batch waits for more events.
    pub linger_ms: u64,
    /// Timeout of one Graph API request.
    pub timeout_ms: u64,
    /// Requests in flight per pixel.
    pub concurrency: usize,
    /// First retry delay after a retryable failure; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for Upstream {
    fn default() -> Upstream {
        Upstream {
            graph_url: "https://graph.facebook.com".to_string(),
            api_version: "v26.0".to_string(),
            batch_size: MAX_BATCH_EVENTS,
            batch_bytes: 4 << 20,
            linger_ms: 1000,
            timeout_ms: 1500,
            concurrency: 4,
            retry_initial_ms: 1000,
            retry_max_ms: 300_000,
        }
    }
}

impl Upstream {
    /// `{graph_url}/{api_version}/{pixel}/events`.
    pub fn events_url(&self, pixel: PixelId) -> String {
        format!("{}/{}/{pixel}/events", self.graph_url, self.api_version)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spool {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// With [`FsyncPolicy::Interval`]: the longest an appended batch waits for its
    /// `fdatasync` (group commit).
    pub fsync_interval_ms: u64,
    /// Spool size cap; above it new events are refused (503), as on a full disk.
    pub max_bytes: u64,
}

impl Default for Spool {
    fn default() -> Spool {
        Spool {
            dir: PathBuf::from("/var/lib/capig/spool"),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 10,
            max_bytes: 10 << 30,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before every acknowledgement.
    Always,
    /// One `fdatasync` for all batches appended within `fsync_interval_ms`; events are
    /// acknowledged after it.
    Interval,
    /// Never: acknowledged events survive a crash of capig, not of the machine.
    Never,
}

impl FsyncPolicy {
    pub const ALL: [FsyncPolicy; 3] = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ];

    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub body_bytes: usize,
    /// The request line and all headers together.
    pub header_bytes: usize,
    pub header_count: usize,
    pub ws_frame_bytes: usize,
    pub ws_message_bytes: usize,
    /// Events in one request body or WebSocket message.
    pub events_per_request: usize,
    pub connections_per_core: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    /// An HTTP keep-alive connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A WebSocket with no frame for this long is closed.
    pub ws_idle_timeout_ms: u64,
    /// Requests and WebSocket messages per second from one client address (all its
    /// connections); 0 is no limit.
    pub requests_per_second_per_ip: u32,
    /// The same for one connection; 0 is no limit.
    pub requests_per_second_per_connection: u32,
    /// 0 turns deduplication off.
    pub dedup_window_secs: u64,
    /// Remembered event ids per pixel and core; 0 turns deduplication off.
    pub dedup_capacity: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let dedup = DedupConfig::default();
        Limits {
            body_bytes: 2 << 20,
            header_bytes: 16 << 10,
            header_count: 64,
            ws_frame_bytes: 256 << 10,
            ws_message_bytes: 256 << 10,
            events_per_request: MAX_BATCH_EVENTS,
            connections_per_core: 50_000,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            idle_timeout_ms: 75_000,
            ws_idle_timeout_ms: 600_000,
            requests_per_second_per_ip: 2_000,
            requests_per_second_per_connection: 500,
            dedup_window_secs: dedup.window_secs,
            dedup_capacity: dedup.capacity,
        }
    }
}

impl Limits {
    pub fn dedup(&self) -> DedupConfig {
        DedupConfig {
            window_secs: self.dedup_window_secs,
            capacity: self.dedup_capacity,
        }
    }
}

impl Config {
    /// Reads the file at `path`, applies `overrides` (`key.path=value`), validates, and
    /// reads the files it names.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![Problem {
                location: path.display().to_string(),
                key: String::new(),
                message: format!("cannot read the configuration: {e}"),
                hint: format!(
                    "pass an existing file with --config (installed systems use {DEFAULT_PATH}; \
                     examples/capig.toml is the commented example)"
                ),
            }],
        })?;
        Config::from_toml(&text, path, overrides)
    }

    /// Like [`Config::load`] with the file's text given: `origin` names it in messages and
    /// is where relative paths start from.
    pub fn from_toml(
        text: &str,
        origin: &Path,
        overrides: &[String],
    ) -> Result<Config, ConfigError> {
        validate::build(text, origin, overrides)
    }

    /// The pixel with this id (digits).
    pub fn pixel(&self, id: &str) -> Option<&Pixel> {
        let id = parse_pixel_id(id)?;
        self.pixels.iter().find(|p| p.id == id)
    }

    /// The transform's policies: the configured pixels and the dedup window.
    pub fn policies(&self) -> Policies {
        Policies::configured(self.pixels.iter().map(Pixel::policy), self.limits.dedup())
    }

    /// What `check-config` prints: listeners, domains, pixels, upstream, spool, limits.
    /// Never a secret.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        self.write_summary(&mut out)
            .expect("writing to a String cannot fail");
        out
    }

    fn write_summary(&self, out: &mut String) -> fmt::Result {
        let cores = match self.runtime.cores {
            0 => "all".to_string(),
            n => n.to_string(),
        };
        writeln!(
            out,
            "runtime: cores {cores}, log level {}",
            self.runtime.log_level.as_str()
        )?;
        writeln!(out, "listeners:")?;
        for l in &self.listeners {
            writeln!(out, "  {} {}", l.kind.as_str(), l.addr)?;
        }
        writeln!(
            out,
            "domains:{}",
            if self.domains.is_empty() { " none" } else { "" }
        )?;
        for d in &self.domains {
            let tls = match &d.tls_cert {
                Some(cert) => format!("tls {}", cert.display()),
                None => "no tls".to_string(),
            };
            let origins = if d.origins.is_empty() {
                "none".to_string()
            } else {
                d.origins.join(", ")
            };
            writeln!(out, "  {} ({tls}); origins: {origins}", d.name)?;
        }
        let enabled = self.pixels.iter().filter(|p| p.enabled).count();
        writeln!(out, "pixels: {} ({enabled} enabled)", self.pixels.len())?;
        for p in &self.pixels {
            let state = if p.enabled { "enabled" } else { "disabled" };
            let token = if p.access_token.is_some() {
                "token loaded"
            } else {
                "token not loaded"
            };
            let domains = if p.domains.is_empty() {
                "any".to_string()
            } else {
                p.domains.join(", ")
            };
            write!(
                out,
                "  {} {state}, {token}, {} access key(s), domains: {domains}",
                p.id,
                p.access_keys.len()
            )?;
            if !p.blocked_events.is_empty() {
                write!(out, ", blocked: {}", p.blocked_events.join(", "))?;
            }
            if let Some(code) = &p.test_event_code {
                write!(out, ", test_event_code {code}")?;
            }
            writeln!(out)?;
        }
        let u = &self.upstream;
        writeln!(
            out,
            "upstream: {}/{} batches of {} events or {}, linger {} ms, timeout {} ms, {} request(s) per pixel, retry {}..{} ms",
            u.graph_url,
            u.api_version,
            u.batch_size,
            size::Human(u.batch_bytes as u64),
            u.linger_ms,
            u.timeout_ms,
            u.concurrency,
            u.retry_initial_ms,
            u.retry_max_ms
        )?;
        let s = &self.spool;
        let fsync = match s.fsync {
            FsyncPolicy::Interval => format!("interval {} ms", s.fsync_interval_ms),
            other => other.as_str().to_string(),
        };
        writeln!(
            out,
            "spool: {} (fsync {fsync}, max {})",
            s.dir.display(),
            size::Human(s.max_bytes)
        )?;
        let l = &self.limits;
        writeln!(
            out,
            "limits: body {}, headers {} (at most {}), websocket frame {} message {}, {} events per request, \
             {} connections per core, timeouts header {} ms body {} ms idle {} ms websocket {} ms, \
             rate {}/s per address {}/s per connection, dedup {} s × {} ids",
            size::Human(l.body_bytes as u64),
            size::Human(l.header_bytes as u64),
            l.header_count,
            size::Human(l.ws_frame_bytes as u64),
            size::Human(l.ws_message_bytes as u64),
            l.events_per_request,
            l.connections_per_core,
            l.header_timeout_ms,
            l.body_timeout_ms,
            l.idle_timeout_ms,
            l.ws_idle_timeout_ms,
            l.requests_per_second_per_ip,
            l.requests_per_second_per_connection,
            l.dedup_window_secs,
            l.dedup_capacity
        )?;
        writeln!(
            out,
            "control: {} (mode {:04o})",
            self.control.socket.display(),
            self.control.socket_mode
        )?;
        let proxies: Vec<String> = self.trusted_proxies.iter().map(IpNet::to_string).collect();
        writeln!(
            out,
            "trusted proxies: {}",
            if proxies.is_empty() {
                "none".to_string()
            } else {
                proxies.join(", ")
            }
        )
    }
}

/// What `capig check-config` prints, and whether the configuration is valid: `ok: FILE`,
/// the summary and any notes; or every problem, one per line.
pub fn check_config_report(path: &Path, overrides: &[String]) -> (String, bool) {
    match Config::load(path, overrides) {
        Ok(config) => {
            let mut out = format!("ok: {}\n{}", path.display(), config.summary());
            for note in &config.notes {
                out.push_str(&format!("note: {note}\n"));
            }
            (out, true)
        }
        Err(error) => {
            let n = error.problems.len();
            let plural = if n == 1 { "" } else { "s" };
            (
                format!("{error}\n{n} problem{plural} in {}\n", path.display()),
                false,
            )
        }
    }
}

#[cfg(test)]
mod tests;
