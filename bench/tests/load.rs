//! `capig-load` against a real gateway (in process) delivering to the CAPI simulator:
//! each mode gets every request acknowledged, and what was acknowledged reaches Meta.

use std::time::{Duration, Instant};

use capig::config::{Config, ListenerKind};
use capig::ingest::{ServeOptions, Server};
use capig::sim::{SimArgs, Simulator};
use capig_bench::load::{run, LoadConfig, Mode};

const PIXEL: &str = "1234567890123456";

#[test]
fn every_mode_is_acknowledged_and_delivered() {
    let dir = std::env::temp_dir().join(format!("capig-load-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "t\n").unwrap();
    std::fs::write(dir.join("keys"), "load-key\n").unwrap();
    let sim = Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() }).unwrap();
    let text = format!(
        r#"
[[listeners]]
addr = "127.0.0.1:0"
kind = "http"

[[domains]]
name = "capig.shop.example"
origins = ["https://www.shop.example"]

[[pixels]]
id = "{PIXEL}"
access_token_file = "token"
access_keys_file = "keys"

[upstream]
graph_url = "{}"

[spool]
dir = "spool"

[limits]
requests_per_second_per_ip = 0
requests_per_second_per_connection = 0
"#,
        sim.url()
    );
    let config = Config::from_toml(&text, &dir.join("capig.toml"), &[]).unwrap();
    let server = Server::start(config, ServeOptions::default()).unwrap();
    let addr = server.listening().iter().find(|(k, _)| *k == ListenerKind::Http).unwrap().1;

    let mut acked = 0;
    for (mode, k) in [(Mode::Http, 1), (Mode::Http, 10), (Mode::Ws, 10), (Mode::ServerApi, 20)] {
        let cfg = LoadConfig {
            target: addr,
            mode,
            connections: 2,
            events_per_request: k,
            duration: Duration::from_millis(700),
            access_key: "load-key".into(),
            ..LoadConfig::default()
        };
        let s = run(&cfg).unwrap();
        eprintln!("{}", serde_json::to_string(&s).unwrap());
        assert!(s.events_acked > 0, "{mode:?}: {s:?}");
        assert_eq!(s.errors, 0, "{mode:?}: {:?}", s.error_statuses);
        assert_eq!(s.events_acked, s.events_sent, "{mode:?}");
        assert!(s.latency_us.p50 > 0 && s.latency_us.p99 >= s.latency_us.p50);
        acked += s.events_acked;
    }
    let start = Instant::now();
    while sim.stats().events_received < acked {
        assert!(start.elapsed() < Duration::from_secs(30), "{} of {acked} delivered", sim.stats().events_received);
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}
