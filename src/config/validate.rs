//! From the raw tables to a `Config`: defaults, every rule, the secret and TLS files.
//!
//! Each rule reports into the document (so the problem gets its location) and the
//! validation goes on; a value that is wrong is replaced by its default or left out, only
//! so that the later rules can still run. If anything was reported, no `Config` is built.
//! Rules that relate two tables (an https listener needs a domain with TLS) run only when
//! both tables deserialized, so one mistake does not cause a second, misleading problem.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::document::{did_you_mean, Document};
use super::files::{self, TlsPart};
use super::problem::{ConfigError, KeyPath};
use super::raw::{
    IntOrText, RawControl, RawDomain, RawLimits, RawListener, RawPixel, RawRuntime, RawSpool,
    RawUpstream, TOP_LEVEL,
};
use super::size::{parse_size, Human, SIZE_HINT};
use super::{
    Config, Control, Domain, FsyncPolicy, IpNet, Limits, Listener, ListenerKind, LogLevel, Pixel,
    Runtime, Spool, Upstream, MAX_BATCH_EVENTS,
};
use crate::event::policy::parse_pixel_id;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

pub(crate) fn build(
    text: &str,
    origin: &Path,
    overrides: &[String],
) -> Result<Config, ConfigError> {
    let mut doc = Document::parse(text, origin.display().to_string(), overrides)
        .map_err(|problems| ConfigError { problems })?;
    doc.check_top_level(TOP_LEVEL);
    let mut v = Validator {
        doc,
        base: base_dir(origin),
        cwd: std::env::current_dir().unwrap_or_default(),
        notes: Vec::new(),
    };

    let runtime = v.doc.table::<RawRuntime>("runtime").map(|r| v.runtime(r));
    let control = v.doc.table::<RawControl>("control").map(|r| v.control(r));
    let raw_listeners = v.doc.tables::<RawListener>("listeners");
    let listeners = v.listeners(raw_listeners);
    let raw_domains = v.doc.tables::<RawDomain>("domains");
    let domains = v.domains(raw_domains);
    let raw_pixels = v.doc.tables::<RawPixel>("pixels");
    let pixels = v.pixels(raw_pixels);
    let upstream = v
        .doc
        .table::<RawUpstream>("upstream")
        .map(|r| v.upstream(r));
    let spool = v.doc.table::<RawSpool>("spool").map(|r| v.spool(r));
    let limits = v.doc.table::<RawLimits>("limits").map(|r| v.limits(r));
    let proxies = v
        .doc
        .value::<Vec<String>>("trusted_proxies")
        .map(|r| v.trusted_proxies(r));

    if let (Some(listeners), Some(domains)) = (&listeners, &domains) {
        v.https_needs_tls(listeners, domains);
    }

    match (
        runtime, control, listeners, domains, pixels, upstream, spool, limits, proxies,
    ) {
        (
            Some(runtime),
            Some(control),
            Some(listeners),
            Some(domains),
            Some(pixels),
            Some(upstream),
            Some(spool),
            Some(limits),
            Some(trusted_proxies),
        ) if !v.doc.has_problems() => Ok(Config {
            source: origin.to_path_buf(),
            runtime,
            control,
            listeners,
            domains,
            pixels,
            upstream,
            spool,
            limits,
            trusted_proxies,
            notes: v.notes,
        }),
        _ => Err(ConfigError {
            problems: v.doc.into_problems(),
        }),
    }
}

/// The absolute directory of the configuration file.
fn base_dir(origin: &Path) -> PathBuf {
    match origin.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        None => std::env::current_dir().unwrap_or_default(),
    }
}

struct Validator<'a> {
    doc: Document<'a>,
    /// Where relative paths in the file start from.
    base: PathBuf,
    /// Where relative paths given with `--set` start from.
    cwd: PathBuf,
    notes: Vec<String>,
}

impl Validator<'_> {
    fn missing(&mut self, path: &KeyPath, hint: &str) {
        let key = path.to_string();
        let name = key.rsplit('.').next().unwrap_or(&key).to_string();
        self.doc.report(path, format!("`{name}` is missing"), hint);
    }

    /// `value` (or `default`), reported when outside `range`.
    fn number<T: PartialOrd + Display + Copy>(
        &mut self,
        path: &KeyPath,
        value: Option<T>,
        default: T,
        range: RangeInclusive<T>,
        hint: &str,
    ) -> T {
        let n = value.unwrap_or(default);
        if !range.contains(&n) {
            let message = format!(
                "{n} is out of range: it must be from {} to {}",
                range.start(),
                range.end()
            );
            self.doc.report(path, message, hint);
        }
        n
    }

    /// A byte size (integer or string with a unit), reported when invalid or outside `range`.
    fn size(
        &mut self,
        path: &KeyPath,
        value: Option<IntOrText>,
        default: u64,
        range: RangeInclusive<u64>,
        hint: &str,
    ) -> u64 {
        let bytes = match value {
            None => default,
            Some(IntOrText::Int(n)) => match u64::try_from(n) {
                Ok(n) => n,
                Err(_) => {
                    self.doc
                        .report(path, "a size cannot be negative", SIZE_HINT);
                    return default;
                }
            },
            Some(IntOrText::Text(text)) => match parse_size(&text) {
                Ok(n) => n,
                Err(e) => {
                    self.doc.report(path, e.to_string(), SIZE_HINT);
                    return default;
                }
            },
        };
        if !range.contains(&bytes) {
            let message = match *range.end() {
                u64::MAX => format!(
                    "{} is too small: it must be at least {}",
                    Human(bytes),
                    Human(*range.start())
                ),
                end => format!(
                    "{} is out of range: it must be from {} to {}",
                    Human(bytes),
                    Human(*range.start()),
                    Human(end)
                ),
            };
            self.doc.report(path, message, hint);
        }
        bytes
    }

    /// A size held in memory.
    fn mem_size(
        &mut self,
        path: &KeyPath,
        value: Option<IntOrText>,
        default: usize,
        range: RangeInclusive<u64>,
        hint: &str,
    ) -> usize {
        let bytes = self.size(path, value, default as u64, range, hint);
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// One of `all`, by the name `name` gives it.
    fn choice<T: Copy>(
        &mut self,
        path: &KeyPath,
        value: Option<String>,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Option<T> {
        let value = value?;
        if let Some(t) = all.iter().find(|t| name(**t) == value) {
            return Some(*t);
        }
        let names: Vec<&str> = all.iter().map(|t| name(*t)).collect();
        let hint = match did_you_mean(&value, &names) {
            Some(near) => format!("did you mean \"{near}\"?"),
            None => format!("use one of: {}", names.join(", ")),
        };
        self.doc.report(
            path,
            format!("`{value}` is not one of: {}", names.join(", ")),
            hint,
        );
        None
    }

    /// A path, absolute or relative to the file's directory (or, from `--set`, to the
    /// current directory).
    fn path(&mut self, path: &KeyPath, value: &str) -> Option<PathBuf> {
        if value.trim().is_empty() {
            self.doc.report(
                path,
                "the path is empty",
                "give the path of the file or directory",
            );
            return None;
        }
        let p = Path::new(value);
        if p.is_absolute() {
            return Some(p.to_path_buf());
        }
        let base = if self.doc.is_override(path) {
            &self.cwd
        } else {
            &self.base
        };
        Some(base.join(p))
    }

    fn runtime(&mut self, r: RawRuntime) -> Runtime {
        let t = KeyPath::root().key("runtime");
        let d = Runtime::default();
        Runtime {
            cores: r.cores.unwrap_or(d.cores),
            log_level: self
                .choice(
                    &t.key("log_level"),
                    r.log_level,
                    &LogLevel::ALL,
                    LogLevel::as_str,
                )
                .unwrap_or(d.log_level),
        }
    }

    fn control(&mut self, r: RawControl) -> Control {
        let t = KeyPath::root().key("control");
        let d = Control::default();
        let socket = match r.socket {
            None => d.socket,
            Some(s) => {
                let path = t.key("socket");
                let socket = self.path(&path, &s).unwrap_or(d.socket);
                // sun_path holds 108 bytes including the terminating NUL.
                let len = socket.as_os_str().len();
                if len > 107 {
                    let message = format!(
                        "the socket path is {len} bytes long; Unix sockets allow at most 107"
                    );
                    self.doc.report(
                        &path,
                        message,
                        "use a shorter path, e.g. /run/capig/control.sock",
                    );
                }
                socket
            }
        };
        let mode_hint =
            "write the mode in octal, e.g. socket_mode = 0o660 (owner and group may connect)";
        let socket_mode = self.number(
            &t.key("socket_mode"),
            r.socket_mode,
            d.socket_mode,
            0..=0o777,
            mode_hint,
        );
        Control {
            socket,
            socket_mode,
        }
    }

    fn listeners(&mut self, raw: Vec<Option<RawListener>>) -> Option<Vec<Listener>> {
        if raw.is_empty() {
            let hint =
                "add one, e.g. [[listeners]] with addr = \"0.0.0.0:443\" and kind = \"https\"";
            self.doc.report(
                &KeyPath::root().key("listeners"),
                "there are no [[listeners]]: the gateway would accept no connections",
                hint,
            );
        }
        // Port 0 asks the kernel for a free port: several such listeners never clash.
        let unique = |l: &Listener| (l.addr.port() != 0).then_some(l.addr);
        self.each("listeners", raw, Self::listener, ("addr", unique))
    }

    fn listener(&mut self, t: &KeyPath, r: RawListener) -> Option<Listener> {
        let addr_hint =
            "write IP:port, e.g. \"0.0.0.0:443\" or \"[::]:443\" (host names are not resolved)";
        let addr = match r.addr {
            None => {
                self.missing(&t.key("addr"), addr_hint);
                None
            }
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.doc.report(
                        &t.key("addr"),
                        format!("`{s}` is not an IP address and port"),
                        addr_hint,
                    );
                    None
                }
            },
        };
        let kind_path = t.key("kind");
        let kind = match r.kind {
            None => {
                let hint = "kind is \"https\", \"http\" (plain, behind a load balancer) or \"redirect\" (to https)";
                self.missing(&kind_path, hint);
                None
            }
            kind => self.choice(&kind_path, kind, &ListenerKind::ALL, ListenerKind::as_str),
        };
        Some(Listener {
            addr: addr?,
            kind: kind?,
        })
    }

    fn domains(&mut self, raw: Vec<Option<RawDomain>>) -> Option<Vec<Domain>> {
        self.each(
            "domains",
            raw,
            Self::domain,
            ("name", |d| Some(d.name.clone())),
        )
    }

    fn domain(&mut self, t: &KeyPath, r: RawDomain) -> Option<Domain> {
        let name_hint = "the host name browsers use to reach capig, e.g. \"capig.shop.example\"";
        let name = match r.name {
            None => {
                self.missing(&t.key("name"), name_hint);
                None
            }
            Some(s) => match hostname(&s) {
                Ok(h) => Some(h),
                Err((message, hint)) => {
                    self.doc.report(&t.key("name"), message, hint);
                    None
                }
            },
        };
        let mut origins = Vec::new();
        for (i, o) in r.origins.unwrap_or_default().iter().enumerate() {
            match origin(o) {
                Ok(o) => origins.push(o),
                Err((message, hint)) => self.doc.report(&t.key("origins").index(i), message, hint),
            }
        }
        let cert_path = t.key("tls_cert");
        let key_path = t.key("tls_key");
        let tls_cert = r.tls_cert.and_then(|c| self.path(&cert_path, &c));
        let tls_key = r.tls_key.and_then(|k| self.path(&key_path, &k));
        let certified_key = match (&tls_cert, &tls_key) {
            (Some(cert), Some(key)) => match files::load_certified_key(cert, key) {
                Ok(ck) => Some(ck),
                Err((part, issue)) => {
                    let path = if part == TlsPart::Cert {
                        &cert_path
                    } else {
                        &key_path
                    };
                    self.doc.report(path, issue.message, issue.hint);
                    None
                }
            },
            (Some(_), None) => {
                self.missing(
                    &key_path,
                    "tls_cert is set, so tls_key (the certificate's PEM private key) must be too",
                );
                None
            }
            (None, Some(_)) => {
                self.missing(
                    &cert_path,
                    "tls_key is set, so tls_cert (the PEM certificate chain) must be too",
                );
                None
            }
            (None, None) => None,
        };
        Some(Domain {
            name: name?,
            origins,
            tls_cert,
            tls_key,
            certified_key,
        })
    }

    fn pixels(&mut self, raw: Vec<Option<RawPixel>>) -> Option<Vec<Pixel>> {
        self.each("pixels", raw, Self::pixel, ("id", |p| Some(p.id)))
    }

    /// Builds each element of the array of tables `section`, then reports an element
    /// whose `unique` key (`None`: exempt) repeats an earlier element's. `None` if any
    /// element could not be built.
    fn each<R, T, K: PartialEq + Display>(
        &mut self,
        section: &str,
        raw: Vec<Option<R>>,
        build: fn(&mut Self, &KeyPath, R) -> Option<T>,
        (field, unique): (&str, fn(&T) -> Option<K>),
    ) -> Option<Vec<T>> {
        let t = KeyPath::root().key(section);
        let built: Vec<Option<T>> = raw
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.and_then(|r| build(self, &t.index(i), r)))
            .collect();
        let keys: Vec<Option<K>> = built.iter().map(|b| b.as_ref().and_then(unique)).collect();
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            if let Some(j) = keys[..i].iter().position(|k| k.as_ref() == Some(key)) {
                let message = format!("{field} `{key}` is already used by {section}[{j}]");
                let hint = format!("each of the [[{section}]] needs its own {field}");
                self.doc.report(&t.index(i).key(field), message, hint);
            }
        }
        built.into_iter().collect()
    }

    fn pixel(&mut self, t: &KeyPath, r: RawPixel) -> Option<Pixel> {
        let id_path = t.key("id");
        let id_hint =
            "copy the pixel (dataset) id from Events Manager, e.g. id = \"1234567890123456\"";
        let id = match r.id {
            None => {
                self.missing(&id_path, id_hint);
                None
            }
            Some(raw) => {
                let text = match raw {
                    IntOrText::Int(n) => n.to_string(),
                    IntOrText::Text(s) => s,
                };
                let id = parse_pixel_id(&text);
                if id.is_none() {
                    let message = format!(
                        "`{text}` is not a pixel id: pixel ids are 1 to 20 digits, not all zero"
                    );
                    self.doc.report(&id_path, message, id_hint);
                }
                id
            }
        };
        let enabled = r.enabled.unwrap_or(true);
        let label = match id {
            Some(id) => format!("{t} (pixel {id})"),
            None => t.to_string(),
        };

        let token_path = t.key("access_token_file");
        let access_token_file = match r.access_token_file {
            None => {
                if enabled {
                    let hint = "name the file that holds the pixel's Graph API access token, e.g. \
                                access_token_file = \"secrets/PIXEL_ID.token\" (mode 0600)";
                    self.missing(&token_path, hint);
                }
                None
            }
            Some(s) => self.path(&token_path, &s),
        };
        let access_token = access_token_file.as_deref().and_then(|file| {
            self.secret_file(
                &token_path,
                &label,
                enabled,
                "token",
                file,
                files::read_token,
            )
        });

        let keys_path = t.key("access_keys_file");
        let access_keys_file = r.access_keys_file.and_then(|s| self.path(&keys_path, &s));
        let access_keys = access_keys_file
            .as_deref()
            .and_then(|file| {
                self.secret_file(
                    &keys_path,
                    &label,
                    enabled,
                    "access keys",
                    file,
                    files::read_access_keys,
                )
            })
            .unwrap_or_default();

        let mut domains = Vec::new();
        for (i, d) in r.domains.unwrap_or_default().iter().enumerate() {
            match site_domain(d) {
                Ok(d) => domains.push(d),
                Err((message, hint)) => self.doc.report(&t.key("domains").index(i), message, hint),
            }
        }
        let blocked_events = r.blocked_events.unwrap_or_default();
        for (i, name) in blocked_events.iter().enumerate() {
            if name.is_empty() || name.trim() != name {
                let message =
                    format!("`{name}` is not an event name (empty, or with spaces around it)");
                let hint = "write the event name exactly as the pixel sends it, e.g. \"AddToCart\" (names are case-sensitive)";
                self.doc
                    .report(&t.key("blocked_events").index(i), message, hint);
            }
        }
        let test_event_code = r.test_event_code;
        if let Some(code) = &test_event_code {
            if code.is_empty() || !code.bytes().all(|b| b.is_ascii_graphic()) {
                let hint = "copy the code from Events Manager's Test events tab (e.g. \"TEST12345\"), or remove the key";
                self.doc.report(
                    &t.key("test_event_code"),
                    "the test event code is empty or has spaces",
                    hint,
                );
            }
        }
        Some(Pixel {
            id: id?,
            access_token_file,
            access_token,
            access_keys_file,
            access_keys,
            enabled,
            domains,
            blocked_events,
            test_event_code,
        })
    }

    /// Reads a secret file. For an enabled pixel a problem is an error; a disabled pixel
    /// may be configured before its secrets exist, so there it is a note.
    fn secret_file<T>(
        &mut self,
        path: &KeyPath,
        label: &str,
        enabled: bool,
        what: &str,
        file: &Path,
        read: fn(&Path) -> Result<T, files::FileIssue>,
    ) -> Option<T> {
        match read(file) {
            Ok(value) => {
                self.notes.extend(files::mode_note(file));
                Some(value)
            }
            Err(issue) if enabled => {
                self.doc.report(path, issue.message, issue.hint);
                None
            }
            Err(issue) => {
                self.notes.push(format!(
                    "{label} is disabled, so its {what} file is not needed yet: {}",
                    issue.message
                ));
                None
            }
        }
    }

    fn upstream(&mut self, r: RawUpstream) -> Upstream {
        let t = KeyPath::root().key("upstream");
        let d = Upstream::default();
        let graph_url = match r.graph_url {
            None => d.graph_url.clone(),
            Some(s) => graph_url(&s).unwrap_or_else(|(message, hint)| {
                self.doc.report(&t.key("graph_url"), message, hint);
                s
            }),
        };
        let api_version = r.api_version.unwrap_or_else(|| d.api_version.clone());
        if !is_api_version(&api_version) {
            let message = format!("`{api_version}` is not a Graph API version");
            self.doc
                .report(&t.key("api_version"), message, "write it like \"v26.0\"");
        }
        let batch_size = self.number(
            &t.key("batch_size"),
            r.batch_size,
            d.batch_size,
            1..=MAX_BATCH_EVENTS,
            "Meta accepts at most 1,000 events per request",
        );
        let batch_bytes = self.mem_size(
            &t.key("batch_bytes"),
            r.batch_bytes,
            d.batch_bytes,
            64 * KIB..=64 * MIB,
            "a batch must have room for a large event; Meta documents no byte limit, 4 MiB is the default",
        );
        let linger_ms = self.number(
            &t.key("linger_ms"),
            r.linger_ms,
            d.linger_ms,
            0..=60_000,
            "events wait at most this long for their batch to fill; 0 sends at once",
        );
        let timeout_ms = self.number(
            &t.key("timeout_ms"),
            r.timeout_ms,
            d.timeout_ms,
            100..=120_000,
            "Meta advises 1500 ms",
        );
        let concurrency = self.number(
            &t.key("concurrency"),
            r.concurrency,
            d.concurrency,
            1..=64,
            "requests in flight per pixel; Meta's SDKs use 4",
        );
        let retry_initial_ms = self.number(
            &t.key("retry_initial_ms"),
            r.retry_initial_ms,
            d.retry_initial_ms,
            10..=60_000,
            "the first retry waits this long, then the wait doubles",
        );
        let retry_max_ms = self.number(
            &t.key("retry_max_ms"),
            r.retry_max_ms,
            d.retry_max_ms.max(retry_initial_ms),
            retry_initial_ms..=3_600_000,
            "the longest wait between retries: at least retry_initial_ms, at most an hour",
        );
        Upstream {
            graph_url,
            api_version,
            batch_size,
            batch_bytes,
            linger_ms,
            timeout_ms,
            concurrency,
            retry_initial_ms,
            retry_max_ms,
        }
    }

    fn spool(&mut self, r: RawSpool) -> Spool {
        let t = KeyPath::root().key("spool");
        let d = Spool::default();
        let dir = match r.dir {
            None => d.dir.clone(),
            Some(s) => self
                .path(&t.key("dir"), &s)
                .unwrap_or_else(|| d.dir.clone()),
        };
        let fsync = self
            .choice(
                &t.key("fsync"),
                r.fsync,
                &FsyncPolicy::ALL,
                FsyncPolicy::as_str,
            )
            .unwrap_or(d.fsync);
        let interval_path = t.key("fsync_interval_ms");
        let fsync_interval_ms = self.number(
            &interval_path,
            r.fsync_interval_ms,
            d.fsync_interval_ms,
            0..=10_000,
            "how long appended batches wait for their shared fdatasync",
        );
        if fsync == FsyncPolicy::Interval && fsync_interval_ms == 0 {
            let hint = "use fsync = \"always\" to sync before every acknowledgement, or an interval of 1 ms or more";
            self.doc.report(
                &interval_path,
                "an interval of 0 ms with fsync = \"interval\"",
                hint,
            );
        }
        let max_bytes = self.size(
            &t.key("max_bytes"),
            r.max_bytes,
            d.max_bytes,
            MIB..=u64::MAX,
            "the spool needs room for batches",
        );
        Spool {
            dir,
            fsync,
            fsync_interval_ms,
            max_bytes,
        }
    }

    fn limits(&mut self, r: RawLimits) -> Limits {
        let t = KeyPath::root().key("limits");
        let d = Limits::default();
        let body_bytes = self.mem_size(
            &t.key("body_bytes"),
            r.body_bytes,
            d.body_bytes,
            KIB..=64 * MIB,
            "the largest request body",
        );
        let header_bytes = self.mem_size(
            &t.key("header_bytes"),
            r.header_bytes,
            d.header_bytes,
            KIB..=MIB,
            "the request line and headers together, cookies included",
        );
        let header_count = self.number(
            &t.key("header_count"),
            r.header_count,
            d.header_count,
            8..=1024,
            "headers per request",
        );
        let ws_frame_bytes = self.mem_size(
            &t.key("ws_frame_bytes"),
            r.ws_frame_bytes,
            d.ws_frame_bytes,
            KIB..=64 * MIB,
            "the largest WebSocket frame",
        );
        let message_path = t.key("ws_message_bytes");
        let ws_message_bytes = self.mem_size(
            &message_path,
            r.ws_message_bytes,
            d.ws_message_bytes,
            KIB..=64 * MIB,
            "the largest WebSocket message",
        );
        if ws_message_bytes < ws_frame_bytes {
            let message = format!(
                "{} is less than ws_frame_bytes ({}): no frame that size could be a whole message",
                Human(ws_message_bytes as u64),
                Human(ws_frame_bytes as u64)
            );
            self.doc.report(
                &message_path,
                message,
                "make ws_message_bytes at least ws_frame_bytes",
            );
        }
        let events_per_request = self.number(
            &t.key("events_per_request"),
            r.events_per_request,
            d.events_per_request,
            1..=MAX_BATCH_EVENTS,
            "like Meta, capig takes at most 1,000 events per request",
        );
        let connections_per_core = self.number(
            &t.key("connections_per_core"),
            r.connections_per_core,
            d.connections_per_core,
            1..=10_000_000,
            "open connections each core accepts before refusing new ones",
        );
        let header_timeout_ms = self.number(
            &t.key("header_timeout_ms"),
            r.header_timeout_ms,
            d.header_timeout_ms,
            100..=600_000,
            "time allowed for the request headers",
        );
        let body_timeout_ms = self.number(
            &t.key("body_timeout_ms"),
            r.body_timeout_ms,
            d.body_timeout_ms,
            100..=600_000,
            "time allowed for the request body",
        );
        let idle_timeout_ms = self.number(
            &t.key("idle_timeout_ms"),
            r.idle_timeout_ms,
            d.idle_timeout_ms,
            1_000..=3_600_000,
            "keep-alive time between requests; behind a load balancer, longer than its idle timeout",
        );
        let ws_idle_timeout_ms = self.number(
            &t.key("ws_idle_timeout_ms"),
            r.ws_idle_timeout_ms,
            d.ws_idle_timeout_ms,
            1_000..=86_400_000,
            "a WebSocket with no frame for this long is closed",
        );
        let requests_per_second_per_ip = self.number(
            &t.key("requests_per_second_per_ip"),
            r.requests_per_second_per_ip,
            d.requests_per_second_per_ip,
            0..=10_000_000,
            "requests (and WebSocket messages) one client address may send per second, a second's worth at once; 0 turns the limit off",
        );
        let requests_per_second_per_connection = self.number(
            &t.key("requests_per_second_per_connection"),
            r.requests_per_second_per_connection,
            d.requests_per_second_per_connection,
            0..=10_000_000,
            "requests (and WebSocket messages) one connection may send per second, a second's worth at once; 0 turns the limit off",
        );
        let dedup_window_secs = self.number(
            &t.key("dedup_window_secs"),
            r.dedup_window_secs,
            d.dedup_window_secs,
            0..=604_800,
            "Meta deduplicates over 48 hours and takes events up to 7 days old, so a longer window \
             changes nothing; 0 turns deduplication off",
        );
        let dedup_capacity = self.number(
            &t.key("dedup_capacity"),
            r.dedup_capacity,
            d.dedup_capacity,
            0..=100_000_000,
            "each remembered id takes about 32 bytes per pixel and core; 0 turns deduplication off",
        );
        Limits {
            body_bytes,
            header_bytes,
            header_count,
            ws_frame_bytes,
            ws_message_bytes,
            events_per_request,
            connections_per_core,
            header_timeout_ms,
            body_timeout_ms,
            idle_timeout_ms,
            ws_idle_timeout_ms,
            requests_per_second_per_ip,
            requests_per_second_per_connection,
            dedup_window_secs,
            dedup_capacity,
        }
    }

    fn trusted_proxies(&mut self, raw: Vec<String>) -> Vec<IpNet> {
        let t = KeyPath::root().key("trusted_proxies");
        let mut nets = Vec::new();
        for (i, s) in raw.iter().enumerate() {
            match s.trim().parse::<IpNet>() {
                Ok(net) => nets.push(net),
                Err(e) => self.doc.report(
                    &t.index(i),
                    e.to_string(),
                    "write an IP address or a network, e.g. \"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"",
                ),
            }
        }
        nets
    }

    /// An https listener needs at least one domain with a certificate.
    fn https_needs_tls(&mut self, listeners: &[Listener], domains: &[Domain]) {
        let Some(i) = listeners.iter().position(|l| l.kind == ListenerKind::Https) else {
            return;
        };
        // A domain whose files were set but failed to load is reported already.
        if domains
            .iter()
            .any(|d| d.tls_cert.is_some() && d.tls_key.is_some())
        {
            return;
        }
        let hint =
            "give a [[domains]] entry tls_cert and tls_key, or use kind = \"http\" behind a load \
                    balancer that terminates TLS";
        let path = KeyPath::root().key("listeners").index(i).key("kind");
        self.doc.report(
            &path,
            "an https listener needs a [[domains]] entry with tls_cert and tls_key",
            hint,
        );
    }
}

type Rejection = (String, String);

/// A DNS host name, lowercased, without a trailing dot.
fn hostname(s: &str) -> Result<String, Rejection> {
    let host_only = "write the host name only, e.g. \"shop.example\"";
    if s.contains("://") || s.contains(['/', ':', '?', '#', '@']) {
        return Err((
            format!("`{s}` is not a host name (it has a scheme, path or port)"),
            host_only.to_string(),
        ));
    }
    let lower = s.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if !name.is_ascii() {
        let hint = "write internationalized names in their ASCII (punycode) form, xn--…";
        return Err((format!("`{s}` is not an ASCII host name"), hint.to_string()));
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        let hint = "a host name is dot-separated labels of letters, digits and inner hyphens (at most 63 each)";
        return Err((format!("`{s}` is not a valid host name"), hint.to_string()));
    }
    Ok(name.to_string())
}

/// A site domain for a pixel: a host name; subdomains match implicitly.
fn site_domain(s: &str) -> Result<String, Rejection> {
    if let Some(rest) = s.strip_prefix("*.") {
        let hint = format!("write \"{rest}\": a domain matches all its subdomains already");
        return Err((format!("`{s}`: wildcards are not needed"), hint));
    }
    hostname(s)
}

/// A web origin, normalized: lowercase `scheme://host[:port]` without the default port.
fn origin(s: &str) -> Result<String, Rejection> {
    let example = "an origin is scheme://host[:port], e.g. \"https://shop.example\"";
    let lower = s.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err((
            format!("`{s}` is not an origin (no scheme)"),
            example.to_string(),
        ));
    };
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => {
            return Err((
                format!("`{s}` has scheme `{scheme}`; origins are https or http"),
                example.to_string(),
            ))
        }
    };
    if let Some(cut) = rest.find(['/', '?', '#']) {
        let hint = format!("write \"{scheme}://{}\"", &rest[..cut]);
        return Err((
            format!("`{s}` has a path; an origin is only scheme://host[:port]"),
            hint,
        ));
    }
    let (host, port) = split_host_port(rest)
        .ok_or_else(|| (format!("`{s}` is not an origin"), example.to_string()))?;
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            (
                format!("`{s}` has an invalid port `{p}`"),
                example.to_string(),
            )
        })?,
    };
    let host = if host.starts_with('[') {
        host.to_string()
    } else {
        hostname(host).map_err(|(message, _)| (message, example.to_string()))?
    };
    Ok(if port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    })
}

/// Splits `host[:port]` or `[v6][:port]`; `None` if a bracketed address is not IPv6.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']')?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let host = &authority[..addr.len() + 2];
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    Some(match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

/// The Graph API base URL, without a trailing slash.
fn graph_url(s: &str) -> Result<String, Rejection> {
    let hint = "write the scheme and host, e.g. \"https://graph.facebook.com\" or \"http://127.0.0.1:8081\" (the simulator)";
    let lower = s.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| {
            (
                format!("`{s}` is not an http:// or https:// URL"),
                hint.to_string(),
            )
        })?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_ok = split_host_port(authority).is_some_and(|(h, _)| {
        !h.is_empty() && (h.starts_with('[') || h.parse::<IpAddr>().is_ok() || hostname(h).is_ok())
    });
    if !host_ok || s.contains(['?', '#', ' ']) {
        return Err((
            format!("`{s}` is not a base URL (scheme://host[:port][/path])"),
            hint.to_string(),
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// `vNN.N`, as the Graph API names its versions.
fn is_api_version(s: &str) -> bool {
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    s.strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| digits(major) && digits(minor))
}
