use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::*;

/// Files the test configurations point at; the configurations are "read" from `t.toml`
/// there, so relative paths land there. The directory sits beside the test binary in the
/// build directory, and each file is written whole and renamed into place, so test runs
/// at the same time see complete files.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().unwrap().join("capig-config-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let files: &[(&str, &str, u32)] = &[
            ("good.token", "TOKEN-1-SECRETVALUE\n", 0o600),
            ("open.token", "TOKEN-2-SECRETVALUE", 0o644),
            ("empty.token", " \n", 0o600),
            ("two.token", "TOKEN-3-SECRETVALUE second\n", 0o600),
            ("keys", "# backends\n\nKEY-ONE\n  KEY-TWO  \n", 0o600),
            ("nokeys", "# nothing yet\n\n", 0o600),
            ("badkeys", "KEY-ONE\nKEY TWO\n", 0o600),
            (
                "site.crt",
                include_str!("../../examples/secrets/capig.shop.example.crt"),
                0o644,
            ),
            (
                "site.key",
                include_str!("../../examples/secrets/capig.shop.example.key"),
                0o600,
            ),
            ("other.key", &other_key, 0o600),
        ];
        for (name, content, mode) in files {
            let part = dir.join(format!("{name}.{}", std::process::id()));
            std::fs::write(&part, content).unwrap();
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(*mode)).unwrap();
            std::fs::rename(&part, dir.join(name)).unwrap();
        }
        dir
    })
}

/// The smallest valid configuration: one plain listener, one pixel.
const BASE: &str = r#"
[[listeners]]
addr = "127.0.0.1:0"
kind = "http"

[[pixels]]
id = "123"
access_token_file = "good.token"
"#;

const TLS_DOMAIN: &str = r#"
[[domains]]
name = "capig.shop.example"
tls_cert = "site.crt"
tls_key = "site.key"
"#;

/// Expected problems, in order: (key, text in the problem's line).
type Problems = &'static [(&'static str, &'static str)];

enum Expect {
    /// Loads, and the function's assertions hold.
    Ok(fn(&Config)),
    /// Fails with exactly these problems, in order: (key, text in the problem's line).
    Problems(Problems),
}

fn check(toml: &str, overrides: &[&str], expected: Expect) {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let result = Config::from_toml(toml, &dir().join("t.toml"), &overrides);
    match (result, expected) {
        (Ok(config), Expect::Ok(assertions)) => {
            assertions(&config);
            let shown = format!(
                "{config:?}\n{}\n{}",
                config.summary(),
                config.notes.join("\n")
            );
            assert!(
                !shown.contains("SECRETVALUE"),
                "a token is printed:\n{shown}"
            );
            assert!(
                !shown.contains("KEY-ONE"),
                "an access key is printed:\n{shown}"
            );
        }
        (Ok(config), Expect::Problems(p)) => {
            panic!("expected {p:?}, got a config:\n{}", config.summary())
        }
        (Err(e), Expect::Ok(_)) => panic!("expected a config, got:\n{e}\nfor:\n{toml}"),
        (Err(e), Expect::Problems(expected)) => {
            let text = e.to_string();
            assert!(!text.contains("SECRETVALUE"), "a token is printed:\n{text}");
            assert!(
                !text.contains("KEY-ONE"),
                "an access key is printed:\n{text}"
            );
            let got: Vec<(&str, String)> = e
                .problems
                .iter()
                .map(|p| (p.key.as_str(), p.to_string()))
                .collect();
            assert_eq!(
                got.len(),
                expected.len(),
                "problems:\n{text}\nexpected {expected:?}"
            );
            for ((key, line), (want_key, want_text)) in got.iter().zip(expected) {
                assert_eq!(key, want_key, "problems:\n{text}");
                assert!(
                    line.contains(want_text),
                    "`{line}` does not contain `{want_text}`"
                );
                assert!(
                    e.problems.iter().all(|p| !p.hint.is_empty()),
                    "a problem without a hint:\n{text}"
                );
            }
        }
    }
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn defaults() {
    check(
        BASE,
        &[],
        Expect::Ok(|c| {
            assert_eq!(
                c.runtime,
                Runtime {
                    cores: 0,
                    log_level: LogLevel::Info
                }
            );
            assert_eq!(c.control.socket, Path::new("/run/capig/control.sock"));
            assert_eq!(c.control.socket_mode, 0o660);
            assert_eq!(
                c.listeners,
                [Listener {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    kind: ListenerKind::Http
                }]
            );
            assert!(c.domains.is_empty() && c.trusted_proxies.is_empty() && c.notes.is_empty());
            let u = &c.upstream;
            assert_eq!(
                u.events_url(123),
                "https://graph.facebook.com/v26.0/123/events"
            );
            assert_eq!(
                (u.batch_size, u.batch_bytes, u.linger_ms, u.timeout_ms),
                (1000, 4 << 20, 1000, 1500)
            );
            assert_eq!(
                (u.concurrency, u.retry_initial_ms, u.retry_max_ms),
                (4, 1000, 300_000)
            );
            assert_eq!(c.spool.dir, Path::new("/var/lib/capig/spool"));
            assert_eq!(
                (c.spool.fsync, c.spool.fsync_interval_ms, c.spool.max_bytes),
                (FsyncPolicy::Interval, 10, 10 << 30)
            );
            assert_eq!(c.limits, Limits::default());
            assert_eq!(
                (c.limits.dedup_window_secs, c.limits.dedup_capacity),
                (172_800, 100_000)
            );
            assert_eq!(
                (
                    c.limits.body_bytes,
                    c.limits.header_bytes,
                    c.limits.header_count
                ),
                (2 << 20, 16 << 10, 64)
            );
            let p = &c.pixels[0];
            assert_eq!((p.id, p.enabled), (123, true));
            assert_eq!(
                p.access_token_file.as_deref(),
                Some(dir().join("good.token").as_path())
            );
            assert_eq!(
                p.access_token.as_ref().map(Secret::expose),
                Some("TOKEN-1-SECRETVALUE")
            );
            assert!(
                p.access_keys.is_empty() && p.domains.is_empty() && p.blocked_events.is_empty()
            );
            assert!(
                c.pixel("123").is_some() && c.pixel("0123").is_some() && c.pixel("124").is_none()
            );
            assert_eq!(c.source, dir().join("t.toml"));
        }),
    );
}

#[test]
fn values() {
    // Every key set, in the forms the example documents.
    let toml = format!(
        r#"trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]
[runtime]
cores = 2
log_level = "debug"
[control]
socket = "run/ctl.sock"
socket_mode = 0o600
{BASE}
blocked_events = ["PageView"]
domains = ["Shop.Example", "blog.example."]
access_keys_file = "keys"
test_event_code = "TEST123"
[[pixels]]
id = 456
enabled = false
access_token_file = "open.token"
{TLS_DOMAIN}
origins = ["HTTPS://Shop.Example:443", "http://localhost:8080", "https://[::1]:8443"]
[upstream]
graph_url = "http://127.0.0.1:9000/"
api_version = "v25.0"
batch_size = 50
batch_bytes = "1.5 MiB"
linger_ms = 0
timeout_ms = 2000
concurrency = 8
retry_initial_ms = 50
retry_max_ms = 60000
[spool]
dir = "/tmp/spool"
fsync = "always"
fsync_interval_ms = 0
max_bytes = "512MB"
[limits]
body_bytes = 65536
header_bytes = "32k"
header_count = 100
ws_frame_bytes = "64 KiB"
ws_message_bytes = "1 MiB"
events_per_request = 10
connections_per_core = 1000
header_timeout_ms = 5000
body_timeout_ms = 6000
idle_timeout_ms = 7000
ws_idle_timeout_ms = 8000
dedup_window_secs = 0
dedup_capacity = 5
"#
    );
    check(
        &toml,
        &[],
        Expect::Ok(|c| {
            assert_eq!(
                c.runtime,
                Runtime {
                    cores: 2,
                    log_level: LogLevel::Debug
                }
            );
            assert_eq!(
                c.control,
                Control {
                    socket: dir().join("run/ctl.sock"),
                    socket_mode: 0o600
                }
            );
            let ip = |s: &str| s.parse::<IpAddr>().unwrap();
            let trusted = |s: &str| c.trusted_proxies.iter().any(|n| n.contains(ip(s)));
            assert!(
                trusted("10.200.3.4")
                    && trusted("192.0.2.7")
                    && trusted("2001:db8:1::9")
                    && trusted("::1")
            );
            assert!(
                trusted("::ffff:10.1.1.1"),
                "an IPv4-mapped peer matches the IPv4 network"
            );
            assert!(!trusted("11.0.0.1") && !trusted("192.0.2.8") && !trusted("2001:db9::1"));
            let p = &c.pixels[0];
            assert_eq!(p.blocked_events, ["PageView"]);
            assert_eq!(p.domains, ["shop.example", "blog.example"]);
            assert_eq!(p.test_event_code.as_deref(), Some("TEST123"));
            assert_eq!(p.access_keys.len(), 2);
            assert!(
                p.accepts_access_key("KEY-TWO")
                    && !p.accepts_access_key("KEY-TW")
                    && !p.accepts_access_key("")
            );
            assert!(
                p.policy().allows_host("www.shop.example")
                    && !p.policy().allows_host("evilshop.example")
            );
            assert!(p.policy().blocks_event("PageView") && !p.policy().blocks_event("Purchase"));
            assert_eq!((c.pixels[1].id, c.pixels[1].enabled), (456, false));
            // A readable secret file is allowed and noted.
            assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
            assert!(
                c.notes[0].contains("open.token") && c.notes[0].contains("0644"),
                "{:?}",
                c.notes
            );
            let d = &c.domains[0];
            assert_eq!(
                d.origins,
                [
                    "https://shop.example",
                    "http://localhost:8080",
                    "https://[::1]:8443"
                ]
            );
            assert!(
                d.allows_origin("https://shop.example")
                    && !d.allows_origin("https://shop.example.evil")
            );
            assert!(d.certified_key.is_some());
            let u = &c.upstream;
            assert_eq!(u.events_url(1), "http://127.0.0.1:9000/v25.0/1/events");
            assert_eq!(
                (u.batch_size, u.batch_bytes, u.linger_ms, u.timeout_ms),
                (50, 3 << 19, 0, 2000)
            );
            assert_eq!(
                (u.concurrency, u.retry_initial_ms, u.retry_max_ms),
                (8, 50, 60_000)
            );
            assert_eq!(
                c.spool,
                Spool {
                    dir: "/tmp/spool".into(),
                    fsync: FsyncPolicy::Always,
                    fsync_interval_ms: 0,
                    max_bytes: 512_000_000
                }
            );
            let l = &c.limits;
            assert_eq!(
                (l.body_bytes, l.header_bytes, l.header_count),
                (65536, 32 << 10, 100)
            );
            assert_eq!(
                (l.ws_frame_bytes, l.ws_message_bytes, l.events_per_request),
                (64 << 10, 1 << 20, 10)
            );
            assert_eq!(
                (
                    l.connections_per_core,
                    l.header_timeout_ms,
                    l.body_timeout_ms
                ),
                (1000, 5000, 6000)
            );
            assert_eq!((l.idle_timeout_ms, l.ws_idle_timeout_ms), (7000, 8000));
            assert_eq!(
                l.dedup(),
                crate::event::policy::DedupConfig {
                    window_secs: 0,
                    capacity: 5
                }
            );
            let summary = c.summary();
            for part in [
                "http 127.0.0.1:0",
                "capig.shop.example",
                "123 enabled, token loaded, 2 access key(s)",
                "456 disabled",
                "512 MB",
                "1536 KiB",
            ] {
                assert!(summary.contains(part), "`{part}` not in:\n{summary}");
            }
        }),
    );
}

#[test]
fn disabled_pixels_may_lack_their_secrets() {
    let toml = with("[[pixels]]\nid = \"456\"\nenabled = false\naccess_token_file = \"missing.token\"\naccess_keys_file = \"nokeys\"\n[[pixels]]\nid = \"789\"\nenabled = false\n");
    check(
        &toml,
        &[],
        Expect::Ok(|c| {
            assert!(c.pixels[1].access_token.is_none() && c.pixels[2].access_token.is_none());
            assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
            assert!(
                c.notes[0].contains("pixels[1] (pixel 456) is disabled")
                    && c.notes[0].contains("missing.token")
            );
            assert!(c.notes[1].contains("holds no access keys"));
            assert!(c.summary().contains("456 disabled, token not loaded"));
        }),
    );
}

#[test]
fn pixel_rules() {
    let pixel = |body: &str| {
        format!("[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"http\"\n[[pixels]]\n{body}\n")
    };
    let cases: &[(&str, Problems)] = &[
        ("id = \"abc\"\naccess_token_file = \"good.token\"", &[("pixels[0].id", "t.toml:5:1: pixels[0].id: `abc` is not a pixel id")]),
        ("id = -5\naccess_token_file = \"good.token\"", &[("pixels[0].id", "`-5` is not a pixel id")]),
        ("id = \"0\"\naccess_token_file = \"good.token\"", &[("pixels[0].id", "not all zero")]),
        ("access_token_file = \"good.token\"", &[("pixels[0].id", "t.toml:4:1: pixels[0].id: `id` is missing")]),
        ("id = 1", &[("pixels[0].access_token_file", "`access_token_file` is missing")]),
        ("id = 1\naccess_token_file = \"nothing.token\"", &[("pixels[0].access_token_file", "nothing.token`: No such file")]),
        ("id = 1\naccess_token_file = \"nothing.token\"", &[("pixels[0].access_token_file", "Events Manager")]),
        ("id = 1\naccess_token_file = \"nothing.token\"", &[("pixels[0].access_token_file", "mode 0600")]),
        ("id = 1\naccess_token_file = \"empty.token\"", &[("pixels[0].access_token_file", "empty.token` is empty")]),
        ("id = 1\naccess_token_file = \"two.token\"", &[("pixels[0].access_token_file", "more than one word")]),
        ("id = 1\naccess_token_file = \"\"", &[("pixels[0].access_token_file", "the path is empty")]),
        ("id = 1\naccess_token_file = \".\"", &[("pixels[0].access_token_file", "cannot read")]),
        ("id = 1\naccess_token_file = \"good.token\"\naccess_keys_file = \"nokeys\"", &[("pixels[0].access_keys_file", "holds no access keys")]),
        ("id = 1\naccess_token_file = \"good.token\"\naccess_keys_file = \"badkeys\"", &[("pixels[0].access_keys_file", "line 2 of")]),
        ("id = 1\naccess_token_file = \"good.token\"\naccess_keys_file = \"nokeys.txt\"", &[("pixels[0].access_keys_file", "cannot read")]),
        ("id = 1\naccess_token_file = \"good.token\"\ndomains = [\"https://shop.example\"]", &[("pixels[0].domains[0]", "host name only")]),
        ("id = 1\naccess_token_file = \"good.token\"\ndomains = [\"*.shop.example\"]", &[("pixels[0].domains[0]", "write \"shop.example\"")]),
        ("id = 1\naccess_token_file = \"good.token\"\ndomains = [\"bad_name.example\"]", &[("pixels[0].domains[0]", "not a valid host name")]),
        ("id = 1\naccess_token_file = \"good.token\"\ndomains = [\"bücher.example\"]", &[("pixels[0].domains[0]", "punycode")]),
        ("id = 1\naccess_token_file = \"good.token\"\nblocked_events = [\"\", \" Lead\"]", &[("pixels[0].blocked_events[0]", "not an event name"), ("pixels[0].blocked_events[1]", "not an event name")]),
        ("id = 1\naccess_token_file = \"good.token\"\ntest_event_code = \"TEST 1\"", &[("pixels[0].test_event_code", "empty or has spaces")]),
        ("id = 1\naccess_token_file = \"good.token\"\nenabled = \"yes\"", &[("pixels[0].enabled", "invalid type: string \"yes\", expected a boolean")]),
        ("id = 1\naccess_token_file = \"good.token\"\n[[pixels]]\nid = \"01\"\naccess_token_file = \"good.token\"", &[("pixels[1].id", "id `1` is already used by pixels[0]")]),
    ];
    for (body, problems) in cases {
        check(&pixel(body), &[], Expect::Problems(problems));
    }
    check("[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"http\"\n[pixels]\nid = 1\n", &[], Expect::Problems(&[("pixels", "t.toml:4:1: pixels: `pixels` must be an array of tables, not a table — write each entry as a [[pixels]] table")]));
    check(
        &with("[[pixels]]\nid = 2\naccess_token_file = \"good.token\"\n"),
        &[],
        Expect::Ok(|c| assert_eq!(c.pixels.len(), 2)),
    );
    check(
        "[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"http\"\n",
        &[],
        Expect::Ok(|c| assert!(c.pixels.is_empty())),
    );
}

#[test]
fn listener_and_domain_rules() {
    let cases: &[(&str, Problems)] = &[
        ("", &[("listeners", "t.toml:1:1: listeners: there are no [[listeners]]")]),
        ("[[listeners]]\naddr = \"localhost:80\"\nkind = \"http\"", &[("listeners[0].addr", "t.toml:2:1: listeners[0].addr: `localhost:80` is not an IP address and port")]),
        ("[[listeners]]\naddr = \"0.0.0.0\"\nkind = \"http\"", &[("listeners[0].addr", "e.g. \"0.0.0.0:443\"")]),
        ("[[listeners]]\nkind = \"http\"", &[("listeners[0].addr", "`addr` is missing")]),
        ("[[listeners]]\naddr = \"0.0.0.0:80\"", &[("listeners[0].kind", "`kind` is missing")]),
        ("[[listeners]]\naddr = \"0.0.0.0:80\"\nkind = \"htps\"", &[("listeners[0].kind", "`htps` is not one of: https, http, redirect — did you mean \"https\"?")]),
        ("[[listeners]]\naddr = \"0.0.0.0:80\"\nkind = \"http\"\n[[listeners]]\naddr = \"0.0.0.0:80\"\nkind = \"redirect\"", &[("listeners[1].addr", "t.toml:5:1: listeners[1].addr: addr `0.0.0.0:80` is already used by listeners[0]")]),
        ("[[listeners]]\naddr = \"0.0.0.0:443\"\nkind = \"https\"", &[("listeners[0].kind", "t.toml:3:1: listeners[0].kind: an https listener needs a [[domains]] entry with tls_cert and tls_key")]),
        ("[[listeners]]\naddr = \"0.0.0.0:443\"\nkind = \"https\"\n[[domains]]\nname = \"capig.shop.example\"", &[("listeners[0].kind", "kind = \"http\" behind a load balancer")]),
        ("listeners = 5", &[("listeners", "`listeners` must be an array of tables, not an integer")]),
        ("listeners = [5]", &[("listeners[0]", "`listeners[0]` must be a table, not an integer — write it as [[listeners]]")]),
    ];
    let pixel = "\n[[pixels]]\nid = 1\naccess_token_file = \"good.token\"\n";
    for (listeners, problems) in cases {
        check(
            &format!("{listeners}{pixel}"),
            &[],
            Expect::Problems(problems),
        );
    }
    let two_free_ports = "[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"http\"\n[[listeners]]\naddr = \"127.0.0.1:0\"\nkind = \"https\"\n";
    check(
        &format!("{two_free_ports}{TLS_DOMAIN}"),
        &[],
        Expect::Ok(|c| assert_eq!(c.listeners.len(), 2)),
    );

    let domain_cases: &[(&str, Problems)] = &[
        ("name = \"https://capig.shop.example\"", &[("domains[0].name", "is not a host name (it has a scheme, path or port)")]),
        ("origins = [\"shop.example\"]", &[("domains[0].name", "`name` is missing"), ("domains[0].origins[0]", "not an origin (no scheme)")]),
        ("name = \"a.example\"\norigins = [\"https://shop.example/\"]", &[("domains[0].origins[0]", "has a path; an origin is only scheme://host[:port] — write \"https://shop.example\"")]),
        ("name = \"a.example\"\norigins = [\"ftp://shop.example\"]", &[("domains[0].origins[0]", "origins are https or http")]),
        ("name = \"a.example\"\norigins = [\"https://shop.example:0\"]", &[("domains[0].origins[0]", "invalid port `0`")]),
        ("name = \"a.example\"\norigins = [\"https://[nope]\"]", &[("domains[0].origins[0]", "is not an origin")]),
        ("name = \"a.example\"\ntls_cert = \"site.crt\"", &[("domains[0].tls_key", "t.toml:9:1: domains[0].tls_key: `tls_key` is missing")]),
        ("name = \"a.example\"\ntls_key = \"site.key\"", &[("domains[0].tls_cert", "`tls_cert` is missing")]),
        ("name = \"a.example\"\ntls_cert = \"none.crt\"\ntls_key = \"site.key\"", &[("domains[0].tls_cert", "t.toml:11:1: domains[0].tls_cert: cannot read")]),
        ("name = \"a.example\"\ntls_cert = \"good.token\"\ntls_key = \"site.key\"", &[("domains[0].tls_cert", "holds no certificate")]),
        ("name = \"a.example\"\ntls_cert = \"site.crt\"\ntls_key = \"site.crt\"", &[("domains[0].tls_key", "holds no private key")]),
        ("name = \"a.example\"\ntls_cert = \"site.crt\"\ntls_key = \"other.key\"", &[("domains[0].tls_key", "does not belong to the certificate")]),
        ("name = \"a.example\"\n[[domains]]\nname = \"A.example.\"", &[("domains[1].name", "name `a.example` is already used by domains[0]")]),
    ];
    for (domain, problems) in domain_cases {
        check(
            &with(&format!("[[domains]]\n{domain}\n")),
            &[],
            Expect::Problems(problems),
        );
    }
}

#[test]
fn section_rules() {
    let cases: &[(&str, Problems)] = &[
        ("[runtime]\nlog_level = \"verbose\"", &[("runtime.log_level", "`verbose` is not one of: error, warn, info, debug, trace — use one of")]),
        ("[runtime]\ncores = -1", &[("runtime.cores", "t.toml:10:9: runtime.cores: invalid value: integer `-1`, expected a whole number (0 or more)")]),
        ("[control]\nsocket_mode = 0o1777", &[("control.socket_mode", "1023 is out of range: it must be from 0 to 511")]),
        ("[control]\nsocket = \"/run/capig/a-directory-name-long-enough-to-go-past-the-limit-of-unix-socket-paths/and-some-more/control.sock\"", &[("control.socket", "Unix sockets allow at most 107")]),
        ("[upstream]\nbatch_size = 0", &[("upstream.batch_size", "t.toml:10:1: upstream.batch_size: 0 is out of range: it must be from 1 to 1000 — Meta accepts at most 1,000 events per request")]),
        ("[upstream]\nbatch_size = 1001", &[("upstream.batch_size", "Meta accepts at most 1,000 events per request")]),
        ("[upstream]\nbatch_size = \"many\"", &[("upstream.batch_size", "t.toml:10:14: upstream.batch_size: invalid type: string \"many\", expected a whole number")]),
        ("[upstream]\napi_version = \"26.0\"", &[("upstream.api_version", "`26.0` is not a Graph API version — write it like \"v26.0\"")]),
        ("[upstream]\napi_version = \"v26\"", &[("upstream.api_version", "not a Graph API version")]),
        ("[upstream]\ngraph_url = \"ftp://graph.facebook.com\"", &[("upstream.graph_url", "not an http:// or https:// URL")]),
        ("[upstream]\ngraph_url = \"https://\"", &[("upstream.graph_url", "not a base URL")]),
        ("[upstream]\ngraph_url = \"https://graph.facebook.com?x=1\"", &[("upstream.graph_url", "not a base URL")]),
        ("[upstream]\ntimeout_ms = 10", &[("upstream.timeout_ms", "Meta advises 1500 ms")]),
        ("[upstream]\nconcurrency = 0", &[("upstream.concurrency", "from 1 to 64")]),
        ("[upstream]\nlinger_ms = 60001", &[("upstream.linger_ms", "from 0 to 60000")]),
        ("[upstream]\nretry_initial_ms = 5000\nretry_max_ms = 1000", &[("upstream.retry_max_ms", "1000 is out of range: it must be from 5000")]),
        ("[upstream]\nbatch_bytes = \"1 KiB\"", &[("upstream.batch_bytes", "1 KiB is out of range: it must be from 64 KiB to 64 MiB")]),
        ("[spool]\nfsync_interval_ms = 0", &[("spool.fsync_interval_ms", "an interval of 0 ms with fsync = \"interval\" — use fsync = \"always\"")]),
        ("[spool]\nfsync = \"sometimes\"", &[("spool.fsync", "`sometimes` is not one of: always, interval, never")]),
        ("[spool]\nfsync = \"Always\"", &[("spool.fsync", "did you mean \"always\"?")]),
        ("[spool]\nmax_bytes = \"10 GiBs\"", &[("spool.max_bytes", "`10 GiBs` has an unknown unit `GiBs` — write a number of bytes or a number with a unit")]),
        ("[spool]\nmax_bytes = \"ten\"", &[("spool.max_bytes", "`ten` is not a size")]),
        ("[spool]\nmax_bytes = \"1.5 B\"", &[("spool.max_bytes", "not a whole number of bytes")]),
        ("[spool]\nmax_bytes = \"99999999999 TB\"", &[("spool.max_bytes", "is too large")]),
        ("[spool]\nmax_bytes = -5", &[("spool.max_bytes", "a size cannot be negative")]),
        ("[spool]\nmax_bytes = \"-5 MB\"", &[("spool.max_bytes", "a size cannot be negative")]),
        ("[spool]\nmax_bytes = 1000", &[("spool.max_bytes", "1 KB is too small: it must be at least 1 MiB")]),
        ("[spool]\nmax_bytes = true", &[("spool.max_bytes", "expected an integer or a string")]),
        ("[spool]\ndir = \"\"", &[("spool.dir", "the path is empty")]),
        ("[limits]\nws_frame_bytes = \"1 MiB\"\nws_message_bytes = \"64 KiB\"", &[("limits.ws_message_bytes", "64 KiB is less than ws_frame_bytes (1 MiB)")]),
        ("[limits]\ndedup_window_secs = 700000", &[("limits.dedup_window_secs", "7 days old")]),
        ("[limits]\nevents_per_request = 1001", &[("limits.events_per_request", "from 1 to 1000")]),
        ("[limits]\nheader_count = 2", &[("limits.header_count", "from 8 to 1024")]),
        ("[limits]\nbody_bytes = \"100 MiB\"", &[("limits.body_bytes", "100 MiB is out of range")]),
        ("[limits]\nidle_timeout_ms = 10", &[("limits.idle_timeout_ms", "longer than its idle timeout")]),
    ];
    for (extra, problems) in cases {
        check(&with(extra), &[], Expect::Problems(problems));
    }
    let proxies: &[(&str, Problems)] = &[
        ("[\"10.0.0.1/8\"]", &[("trusted_proxies[0]", "t.toml:1:20: trusted_proxies[0]: `10.0.0.1/8` has bits set after the /8 prefix; the network is `10.0.0.0/8`")]),
        ("[\"300.1.1.1\"]", &[("trusted_proxies[0]", "`300.1.1.1` is not an IP address — write an IP address or a network")]),
        ("[\"10.0.0.0/8\", \"::/129\"]", &[("trusted_proxies[1]", "prefix `/129` is not a number from 0 to 128")]),
        ("[\"10.0.0.0/+8\"]", &[("trusted_proxies[0]", "prefix `/+8`")]),
        ("[\"fd00::1/8\"]", &[("trusted_proxies[0]", "the network is `fd00::/8`")]),
        ("\"10.0.0.0/8\"", &[("trusted_proxies", "invalid type: string \"10.0.0.0/8\", expected an array")]),
    ];
    for (value, problems) in proxies {
        check(
            &format!("trusted_proxies = {value}\n{BASE}"),
            &[],
            Expect::Problems(problems),
        );
    }
    check(
        &format!("trusted_proxies = [\"0.0.0.0/0\", \"::/0\"]\n{BASE}"),
        &[],
        Expect::Ok(|c| {
            assert!(c
                .trusted_proxies
                .iter()
                .any(|n| n.contains("203.0.113.9".parse().unwrap())));
            assert!(c
                .trusted_proxies
                .iter()
                .any(|n| n.contains("2001:db8::1".parse().unwrap())));
        }),
    );
    check(&format!("upstream = [1]\n{BASE}"), &[], Expect::Problems(&[("upstream", "t.toml:1:12: upstream: `upstream` must be a table, not an array — write it as [upstream]")]));
    // A key after a [[pixels]] table belongs to that pixel, as TOML says.
    check(
        &with("upstream = 1"),
        &[],
        Expect::Problems(&[(
            "pixels[0].upstream",
            "unknown key `upstream` in [[pixels]] number 1",
        )]),
    );
    check(
        "[[listeners]\n",
        &[],
        Expect::Problems(&[("", "t.toml:1:13: TOML syntax error")]),
    );
    check(
        &with("[upstream]\nbatch_size = 1\nbatch_size = 2\n"),
        &[],
        Expect::Problems(&[("", "t.toml:11:1: TOML syntax error")]),
    );
}

#[test]
fn unknown_keys() {
    let cases: &[(&str, Problems)] = &[
        ("\n[upstreem]\nx = 1", &[("upstreem", "t.toml:10:2: upstreem: unknown key `upstreem` at the top level — did you mean `upstream`?")]),
        ("\n[runtime]\nthreads = 4", &[("runtime.threads", "t.toml:11:1: runtime.threads: unknown key `threads` in [runtime] — the keys allowed here are: cores, log_level")]),
        ("\n[control]\npath = \"x\"", &[("control.path", "unknown key `path` in [control]")]),
        ("\n[upstream]\nbach_size = 5", &[("upstream.bach_size", "t.toml:11:1: upstream.bach_size: unknown key `bach_size` in [upstream] — did you mean `batch_size`?")]),
        ("\n[spool]\nfsync_interval = 5", &[("spool.fsync_interval", "did you mean `fsync_interval_ms`?")]),
        ("\n[limits]\nmax_body_bytes = 5", &[("limits.max_body_bytes", "did you mean `body_bytes`?")]),
        ("\n[[domains]]\nname = \"a.example\"\npem = \"x\"", &[("domains[0].pem", "unknown key `pem` in [[domains]] number 1 — the keys allowed here are: name, origins, tls_cert, tls_key")]),
        ("\n[[listeners]]\naddr = \"127.0.0.1:1\"\nkind = \"http\"\nport = 1", &[("listeners[1].port", "t.toml:13:1: listeners[1].port: unknown key `port` in [[listeners]] number 2")]),
        ("\n[upstream.retry]\nmax = 1", &[("upstream.retry", "unknown key `retry` in [upstream]")]),
    ];
    for (extra, problems) in cases {
        check(&with(extra), &[], Expect::Problems(problems));
    }
    check(
        &format!("threads = 4\n{BASE}access_token = \"TOKEN-1-SECRETVALUE\"\n"),
        &[],
        Expect::Problems(&[
            ("threads", "t.toml:1:1: threads: unknown key `threads` at the top level — the keys allowed here are: trusted_proxies, runtime"),
            ("pixels[0].access_token", "did you mean `access_token_file`?"),
        ]),
    );
}

#[test]
fn overrides() {
    check(
        BASE,
        &[
            "upstream.batch_size=10",
            "spool.dir=/tmp/x",
            "listeners.0.addr=127.0.0.1:9999",
            "pixels.0.enabled=false",
            "runtime.log_level=debug",
            "pixels.0.blocked_events=[\"A\", \"B\"]",
            "control.socket = \"/tmp/c.sock\"",
        ],
        Expect::Ok(|c| {
            assert_eq!(c.upstream.batch_size, 10);
            assert_eq!(c.spool.dir, Path::new("/tmp/x"));
            assert_eq!(c.listeners[0].addr, "127.0.0.1:9999".parse().unwrap());
            assert!(!c.pixels[0].enabled);
            assert_eq!(c.runtime.log_level, LogLevel::Debug);
            assert_eq!(c.pixels[0].blocked_events, ["A", "B"]);
            assert_eq!(c.control.socket, Path::new("/tmp/c.sock"));
        }),
    );
    // Appending array elements, and arrays created on the way.
    check(
        BASE,
        &[
            "listeners.1.addr=127.0.0.1:1",
            "listeners.1.kind=redirect",
            "trusted_proxies.0=10.0.0.0/8",
            "trusted_proxies.1=::1",
            "pixels.1={id = 5, enabled = false}",
            "pixels.0.domains.0=shop.example",
        ],
        Expect::Ok(|c| {
            assert_eq!(
                c.listeners[1],
                Listener {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    kind: ListenerKind::Redirect
                }
            );
            assert_eq!(c.trusted_proxies.len(), 2);
            assert_eq!((c.pixels[1].id, c.pixels[1].enabled), (5, false));
            assert_eq!(c.pixels[0].domains, ["shop.example"]);
        }),
    );
    check(
        "",
        &["listeners.0.addr=127.0.0.1:0", "listeners.0.kind=http"],
        Expect::Ok(|c| assert_eq!(c.listeners.len(), 1)),
    );
    // A relative path from the command line starts at the current directory.
    check(
        BASE,
        &["spool.dir=spool-here"],
        Expect::Ok(|c| {
            assert_eq!(
                c.spool.dir,
                std::env::current_dir().unwrap().join("spool-here")
            );
        }),
    );
    check(
        BASE,
        &["pixels.0.access_token_file=open.token"],
        Expect::Problems(&[(
            "pixels[0].access_token_file",
            "--set pixels.0.access_token_file: pixels[0].access_token_file: cannot read",
        )]),
    );
    let cases: &[(&[&str], Problems)] = &[
        (&["upstream.batch_size=0"], &[("upstream.batch_size", "--set upstream.batch_size: upstream.batch_size: 0 is out of range")]),
        (&["upstream.bach_size=1"], &[("upstream.bach_size", "--set upstream.bach_size: upstream.bach_size: unknown key `bach_size` in [upstream] — did you mean `batch_size`?")]),
        (&["upstream.batch_size=\"x\""], &[("upstream.batch_size", "--set upstream.batch_size: upstream.batch_size: invalid type: string \"x\"")]),
        (&["nonsense"], &[("", "--set nonsense: an override must look like key.path=value")]),
        (&["upstream..x=1"], &[("upstream..x", "--set upstream..x: upstream..x: `upstream..x` is not a key path")]),
        (&["listeners.0.kind.x=1"], &[("listeners[0].kind.x", "--set listeners.0.kind.x: listeners[0].kind.x: `listeners.0.kind` is a string, so nothing can be set inside it")]),
        (&["upstream.batch_size.x=1"], &[("upstream.batch_size", "--set upstream.batch_size.x: upstream.batch_size: invalid type: table, expected a whole number")]),
        (&["listeners.5.addr=127.0.0.1:1"], &[("listeners[5].addr", "`listeners` has 1 element(s): use an index from 0 to 1 (1 appends a new one)")]),
        (&["listeners.first.addr=127.0.0.1:1"], &[("listeners.first.addr", "`listeners` is an array: the next step must be an index (0 to 1), not `first`")]),
        (&["pixels.0=5"], &[("pixels[0]", "--set pixels.0: pixels[0]: `pixels[0]` must be a table, not an integer")]),
        (&["listeners.0.addr=localhost", "pixels.0.id=x"], &[("listeners[0].addr", "--set listeners.0.addr"), ("pixels[0].id", "--set pixels.0.id: pixels[0].id: `x` is not a pixel id")]),
    ];
    for (overrides, problems) in cases {
        check(BASE, overrides, Expect::Problems(problems));
    }
}

#[test]
fn every_problem_at_once() {
    let toml = r#"trusted_proxies = ["10.0.0.1/8"]
[runtime]
log_level = "loud"
[[listeners]]
addr = "nowhere"
kind = "http"
[[pixels]]
id = "12a"
access_token_file = "missing.token"
colour = "blue"
[upstream]
batch_size = "lots"
[spool]
fsync = "interval"
fsync_interval_ms = 0
"#;
    check(
        toml,
        &["limits.body_bytes=1 TB"],
        Expect::Problems(&[
            ("trusted_proxies[0]", "t.toml:1:"),
            ("runtime.log_level", "t.toml:3:1"),
            ("listeners[0].addr", "t.toml:5:1"),
            ("pixels[0].id", "t.toml:8:1"),
            ("pixels[0].access_token_file", "t.toml:9:1"),
            ("pixels[0].colour", "t.toml:10:1"),
            ("upstream.batch_size", "t.toml:12:14"),
            ("spool.fsync_interval_ms", "t.toml:15:1"),
            (
                "limits.body_bytes",
                "--set limits.body_bytes: limits.body_bytes: 1 TB is out of range",
            ),
        ]),
    );
}

#[test]
fn secrets_stay_secret() {
    check(
        &with("access_keys_file = \"keys\"\n"),
        &[],
        Expect::Ok(|c| {
            let token = c.pixels[0].access_token.clone().unwrap();
            assert_eq!(
                format!("{token:?} {token}"),
                "Secret([redacted]) [redacted]"
            );
            assert_eq!(token.expose(), "TOKEN-1-SECRETVALUE");
            assert!(
                token.matches(b"TOKEN-1-SECRETVALUE") && !token.matches(b"TOKEN-1-SECRETVALUF")
            );
            assert_eq!(
                format!("{:?}", c.pixels[0].access_keys),
                "[Secret([redacted]), Secret([redacted])]"
            );
        }),
    );
    // The token file's content is not repeated in any message, whatever is wrong with it.
    check(
        &with("[[pixels]]\nid = 9\naccess_token_file = \"two.token\"\n"),
        &[],
        Expect::Problems(&[("pixels[1].access_token_file", "two.token")]),
    );
    check(
        &with(
            "[[pixels]]\nid = 9\naccess_token_file = \"badkeys\"\naccess_keys_file = \"badkeys\"\n",
        ),
        &[],
        Expect::Problems(&[
            ("pixels[1].access_token_file", "more than one word"),
            ("pixels[1].access_keys_file", "line 2 of"),
        ]),
    );
}

#[test]
fn example_config() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/capig.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = Config::from_toml(&text, &path, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.listeners.iter().map(|l| l.kind).collect::<Vec<_>>(),
        [ListenerKind::Https, ListenerKind::Redirect]
    );
    assert_eq!(
        config.pixels.iter().map(|p| p.enabled).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(
        config.pixels[0].access_token.as_ref().map(Secret::expose),
        Some("EXAMPLE-NOT-A-REAL-TOKEN")
    );
    assert!(config.domains[0].certified_key.is_some());
    // The example sets every key to its default, except where it shows a feature.
    assert_eq!(config.upstream, Upstream::default());
    assert_eq!(config.spool, Spool::default());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.control, Control::default());
    assert_eq!(config.runtime, Runtime::default());
    // Every key of every table is in the example.
    for (table, fields) in [
        ("runtime", raw::fields_of::<raw::RawRuntime>()),
        ("control", raw::fields_of::<raw::RawControl>()),
        ("upstream", raw::fields_of::<raw::RawUpstream>()),
        ("spool", raw::fields_of::<raw::RawSpool>()),
        ("limits", raw::fields_of::<raw::RawLimits>()),
        ("listeners", raw::fields_of::<raw::RawListener>()),
        ("domains", raw::fields_of::<raw::RawDomain>()),
        ("pixels", raw::fields_of::<raw::RawPixel>()),
    ] {
        assert!(!fields.is_empty());
        for field in fields {
            assert!(
                text.contains(&format!("\n{field} = ")),
                "[{table}] {field} is not in the example"
            );
        }
    }
}
