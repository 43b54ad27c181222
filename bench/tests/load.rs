//! `capig-load` against a real gateway (in process) delivering to the CAPI simulator:
//! each mode gets every request acknowledged, and what was acknowledged reaches Meta.

use std::time::{Duration, Instant};

use capig::sim::{SimArgs, Simulator};
use capig_bench::load::{run, LoadConfig, Mode};

mod support;
use support::{Gateway, ACCESS_KEY};

#[test]
fn every_mode_is_acknowledged_and_delivered() {
    let sim = Simulator::start(SimArgs { listen: "127.0.0.1:0".into(), ..SimArgs::default() }).unwrap();
    let gw = Gateway::start("load-test", &sim.url());
    let addr = gw.addr;

    let mut acked = 0;
    for (mode, k) in [(Mode::Http, 1), (Mode::Http, 10), (Mode::Ws, 10), (Mode::ServerApi, 20)] {
        let cfg = LoadConfig {
            target: addr,
            mode,
            connections: 2,
            events_per_request: k,
            duration: Duration::from_millis(700),
            access_key: ACCESS_KEY.into(),
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
    gw.stop();
}
