//! The delivery side end to end: threads play the ingestion cores, the real spool on
//! disk, the real HTTP/2 sender, and `capig sim` on 127.0.0.1 as Meta.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use capig::config::{FsyncPolicy, Secret};
use capig::deliver::batch::BatchConfig;
use capig::deliver::deadletter::{DeadLetterConfig, DeadLetters, ListFilter, Reason};
use capig::deliver::handoff::SubmitError;
use capig::deliver::pipeline::{Delivery, DeliveryConfig, PixelRoute};
use capig::deliver::policy::{BackoffConfig, BreakerConfig, BreakerState};
use capig::deliver::schedule::SchedulerConfig;
use capig::deliver::sender::SenderConfig;
use capig::deliver::spool::SpoolConfig;
use capig::sim::{FaultConfig, LatencyMs, SimArgs, SimHandle};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use support::*;

const A: u64 = 1_111_111_111_111_111;
const B: u64 = 2_222_222_222_222_222;

fn routes(pixels: &[u64]) -> HashMap<u64, PixelRoute> {
    pixels
        .iter()
        .map(|&p| (p, PixelRoute { token: Some(Secret::new(format!("token-{p}"))), test_event_code: None }))
        .collect()
}

fn config(dir: &TempDir, sim: &SimHandle, pixels: &[u64]) -> DeliveryConfig {
    DeliveryConfig {
        spool_dir: dir.0.join("spool"),
        spool: SpoolConfig { fsync: FsyncPolicy::Interval, fsync_interval_ms: 5, max_bytes: 256 << 20, segment_bytes: 1 << 20 },
        dead_letters: DeadLetterConfig::default(),
        sender: SenderConfig {
            graph_url: sim.url(),
            api_version: "v26.0".into(),
            timeout: Duration::from_secs(5),
            concurrency: 4,
            extra_root_pem: None,
        },
        scheduler: SchedulerConfig {
            concurrency: 4,
            backoff: BackoffConfig { initial: Duration::from_millis(20), max: Duration::from_millis(200) },
            breaker: BreakerConfig { first_probe: Duration::from_secs(60), max_probe: Duration::from_secs(600) },
            seed: 42,
            batch_size: 1000,
            batch_bytes: 4 << 20,
            linger: Duration::from_millis(20),
        },
        cores: 1,
        handoff_batches: 64,
        memory_per_pixel: 64 << 20,
        routes: routes(pixels),
    }
}

fn batches(max_events: usize) -> BatchConfig {
    BatchConfig { max_events, max_bytes: 4 << 20, linger: Duration::from_millis(20) }
}

/// One metrics recorder for this test binary; tests use their own pixels, so their
/// counters do not mix.
fn snapshotter() -> &'static Snapshotter {
    static S: OnceLock<Snapshotter> = OnceLock::new();
    S.get_or_init(|| {
        let r = DebuggingRecorder::new();
        let s = r.snapshotter();
        r.install().expect("the only recorder of this binary");
        s
    })
}

/// The counter `name` summed over series whose labels include all of `labels`. A
/// snapshot drains the recorder's counters, so the totals are kept here.
fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    type Series = (String, Vec<(String, String)>, u64);
    static TOTALS: Mutex<Vec<Series>> = Mutex::new(Vec::new());
    let mut totals = TOTALS.lock().unwrap();
    for (k, _, _, v) in snapshotter().snapshot().into_vec() {
        let DebugValue::Counter(c) = v else { continue };
        let key = k.key();
        let labels: Vec<(String, String)> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
        match totals.iter_mut().find(|(n, l, _)| n == key.name() && *l == labels) {
            Some(t) => t.2 += c,
            None => totals.push((key.name().to_owned(), labels, c)),
        }
    }
    totals
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(lk, lv)| l.iter().any(|(k, v)| k == lk && v == lv)))
        .map(|t| t.2)
        .sum()
}

/// Pushes `n` events for `pixel` with ids `{prefix}{i}` and returns the ids.
fn push_events(core: &mut Core, pixel: u64, prefix: &str, n: usize) -> Vec<String> {
    let t = unix_now() - 30;
    (0..n)
        .map(|i| {
            let id = format!("{prefix}{i}");
            core.push(pixel, &id, &capi_event(&id, t), t);
            id
        })
        .collect()
}

/// Delivery for `pixel` with a 64 KiB spool of 16 KiB segments, Meta answering every
/// request with a transient error (code 2) until the test clears the faults.
fn small_spool_meta_down(dir: &TempDir, sim: &SimHandle, pixel: u64) -> (Delivery, Vec<capig::deliver::handoff::CoreLink>) {
    sim.set_faults(faults(&["2=1"])).unwrap();
    let mut cfg = config(dir, sim, &[pixel]);
    cfg.spool.max_bytes = 64 << 10;
    cfg.spool.segment_bytes = 16 << 10;
    Delivery::start(cfg).unwrap()
}

/// Pushes events `{prefix}{n}` for `pixel`, settling every `every` of them, until the
/// spool refuses one; panics with `what` after `limit` events.
fn fill_until_refused(core: &mut Core, pixel: u64, prefix: &str, every: usize, limit: usize, what: &str) {
    let mut n = 0;
    while core.refused.is_empty() {
        assert!(n < limit, "{what}");
        let id = format!("{prefix}{n}");
        let t = unix_now() - 1;
        core.push(pixel, &id, &capi_event(&id, t), t);
        n += 1;
        if n % every == 0 {
            core.settle(Duration::from_secs(10));
        }
    }
    core.settle(Duration::from_secs(10));
}

fn lane(d: &Delivery, pixel: u64) -> Option<capig::deliver::schedule::LaneStatus> {
    d.status().lanes.into_iter().find(|l| l.pixel == pixel)
}

#[test]
fn batches_of_at_most_1000_from_two_cores_reach_the_simulator() {
    const P: u64 = 3_000_000_000_000_008;
    snapshotter();
    let dir = TempDir::new("two-cores");
    let sim = sim();
    let (delivery, links) = Delivery::start(DeliveryConfig { cores: 2, ..config(&dir, &sim, &[P]) }).unwrap();
    let threads: Vec<_> = links
        .into_iter()
        .enumerate()
        .map(|(c, link)| {
            std::thread::spawn(move || {
                let mut core = Core::new(link, batches(1000));
                let ids = push_events(&mut core, P, &format!("c{c}-"), 2500);
                core.settle(Duration::from_secs(20));
                assert!(core.refused.is_empty(), "{:?}", core.refused.first());
                assert_eq!(core.acked.len(), 2500);
                ids
            })
        })
        .collect();
    let mut sent: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    wait_for(Duration::from_secs(30), "5,000 events at the simulator", || sim.stats().events_received >= 5000);
    wait_for(Duration::from_secs(10), "an empty spool", || delivery.pending_records() == 0);
    let mut got = sim_ids(&sim, P);
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every event exactly once");
    let stats = sim.stats();
    // 5,000 events in requests of ≤ 1,000 (the simulator refuses more, as Meta does),
    // composed across the cores' batches.
    assert!(stats.requests_accepted >= 5, "{stats:?}");
    assert_eq!(stats.requests_rejected, 0, "{stats:?}");
    assert_eq!(counter("capig_events_forwarded_total", &[("pixel", &P.to_string())]), 5000);
    assert_eq!(counter("capig_spool_events_total", &[("pixel", &P.to_string())]), 5000);
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn retryable_errors_are_retried_until_meta_takes_the_batch() {
    snapshotter();
    let pixel = 3_000_000_000_000_001;
    for code in ["1", "2", "4", "17", "341", "613"] {
        let dir = TempDir::new("retry");
        let sim = sim();
        sim.set_faults(faults(&[&format!("{code}=1@{pixel}")])).unwrap();
        let (delivery, mut links) = Delivery::start(config(&dir, &sim, &[pixel])).unwrap();
        let mut core = Core::new(links.remove(0), batches(10));
        push_events(&mut core, pixel, "r", 25);
        core.settle(Duration::from_secs(10));
        assert_eq!(core.acked.len(), 25, "acknowledged once durable, before Meta took them");
        wait_for(Duration::from_secs(10), "retries", || sim.stats().by_error_code.get(code).copied().unwrap_or(0) >= 6);
        assert_eq!(sim.stats().events_received, 0);
        assert_eq!(delivery.pending_records(), 3, "code {code}: the batches wait in the spool");
        sim.set_faults(FaultConfig::default()).unwrap();
        wait_for(Duration::from_secs(10), "delivery after the fault", || sim.stats().events_received == 25);
        wait_for(Duration::from_secs(5), "an empty spool", || delivery.pending_records() == 0);
        assert!(counter("capig_delivery_retries_total", &[("pixel", &pixel.to_string()), ("code", code)]) >= 6);
        delivery.shutdown(Duration::from_secs(5));
    }
}

#[test]
fn a_broken_token_opens_the_breaker_probes_and_resumes_when_fixed() {
    let pixel = 3_000_000_000_000_002;
    let dir = TempDir::new("breaker");
    let sim = sim();
    sim.set_faults(faults(&[&format!("190=1@{pixel}")])).unwrap();
    let mut cfg = config(&dir, &sim, &[pixel]);
    cfg.scheduler.breaker = BreakerConfig { first_probe: Duration::from_millis(300), max_probe: Duration::from_millis(300) };
    let (delivery, mut links) = Delivery::start(cfg).unwrap();
    let mut core = Core::new(links.remove(0), batches(10));
    push_events(&mut core, pixel, "b", 40);
    core.settle(Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "the breaker to open", || {
        lane(&delivery, pixel).is_some_and(|l| l.breaker == BreakerState::Open)
    });
    let l = lane(&delivery, pixel).unwrap();
    assert_eq!(l.breaker_error.as_ref().map(|e| e.code), Some(190));
    // Open: one probe per interval, not a request per batch.
    let before = sim.stats().requests;
    std::thread::sleep(Duration::from_millis(1000));
    let probes = sim.stats().requests - before;
    assert!((1..=5).contains(&probes), "{probes} requests in 1 s with the breaker open");
    assert_eq!(delivery.pending_records(), 4, "the events stay in the spool");
    // The token works again at Meta: the next probe succeeds and the pixel resumes.
    sim.set_faults(FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(5), "delivery after the probe", || sim.stats().events_received == 40);
    assert_eq!(lane(&delivery, pixel).unwrap().breaker, BreakerState::Closed);

    // Broken again, then a reload with a new token resumes at once (no probe wait).
    sim.set_faults(faults(&[&format!("190=1@{pixel}")])).unwrap();
    let mut cfg_routes = routes(&[pixel]);
    push_events(&mut core, pixel, "c", 10);
    core.settle(Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "the breaker to open again", || {
        lane(&delivery, pixel).is_some_and(|l| l.breaker == BreakerState::Open)
    });
    sim.set_faults(FaultConfig::default()).unwrap();
    cfg_routes.get_mut(&pixel).unwrap().token = Some(Secret::new("a-new-token"));
    let t = Instant::now();
    delivery.set_routes(cfg_routes);
    wait_for(Duration::from_secs(5), "delivery after the reload", || sim.stats().events_received == 50);
    assert!(t.elapsed() < Duration::from_millis(250), "resumed in {:?}", t.elapsed());
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn a_broken_token_on_one_pixel_leaves_another_pixels_delivery_rate_unchanged() {
    // Every request takes 15 ms at "Meta"; pixel B's 60 batches need ~15 rounds at 4 in
    // flight. Measure B's delivery time with A healthy, then with A's token broken and
    // A holding a backlog, in the same run.
    let sim = sim_with(SimArgs { latency_ms: Some(LatencyMs { min: 15, max: 15 }), ..SimArgs::default() });
    let run = |broken: bool| -> Duration {
        sim.reset();
        sim.set_faults(if broken { faults(&[&format!("190=1@{A}")]) } else { FaultConfig::default() }).unwrap();
        let dir = TempDir::new("fair");
        let mut cfg = config(&dir, &sim, &[A, B]);
        cfg.scheduler.breaker = BreakerConfig { first_probe: Duration::from_millis(50), max_probe: Duration::from_millis(50) };
        let (delivery, mut links) = Delivery::start(cfg).unwrap();
        let mut core = Core::new(links.remove(0), batches(10));
        push_events(&mut core, A, "a", 600);
        let start = Instant::now();
        push_events(&mut core, B, "b", 600);
        core.settle(Duration::from_secs(10));
        wait_for(Duration::from_secs(30), "B's events", || sim_ids(&sim, B).len() == 600);
        let took = start.elapsed();
        if broken {
            assert!(sim_ids(&sim, A).is_empty());
            assert!(delivery.pending_records() >= 60, "A's batches wait in the spool");
        }
        delivery.shutdown(Duration::from_secs(2));
        took
    };
    let healthy = [run(false), run(false)];
    let broken = [run(true), run(true)];
    let (h, b) = (healthy.iter().min().unwrap(), broken.iter().min().unwrap());
    let ratio = b.as_secs_f64() / h.as_secs_f64();
    eprintln!("pixel B delivery: A healthy {healthy:?}, A broken {broken:?}, ratio {ratio:.2}");
    assert!(ratio < 1.5, "B took {ratio:.2}× as long while A's token was broken");
}

#[test]
fn an_invalid_event_is_isolated_and_every_other_event_is_delivered() {
    let pixel = 3_000_000_000_000_003;
    let dir = TempDir::new("bisect");
    let sim = sim();
    let (delivery, mut links) = Delivery::start(config(&dir, &sim, &[pixel])).unwrap();
    let mut core = Core::new(links.remove(0), batches(100));
    let t = unix_now() - 10;
    for i in 0..100 {
        let id = format!("v{i}");
        let ev = if i == 37 { invalid_event(&id, t) } else { capi_event(&id, t) };
        core.push(pixel, &id, &ev, t);
    }
    core.settle(Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "99 events", || sim.stats().events_received == 99);
    wait_for(Duration::from_secs(5), "an empty spool", || delivery.pending_records() == 0);
    let got: HashSet<String> = sim_ids(&sim, pixel).into_iter().collect();
    assert!(!got.contains("v37") && got.len() == 99);
    delivery.shutdown(Duration::from_secs(5));
    let dead = DeadLetters::open(&dir.0.join("spool/deadletters"), DeadLetterConfig::default()).unwrap();
    let listing = dead.list(ListFilter::default()).unwrap();
    assert_eq!(listing.entries.len(), 1, "{listing:?}");
    let e = &listing.entries[0];
    assert_eq!((e.pixel, e.reason, e.code), (pixel, Reason::MetaRejected, Some(100)));
    assert_eq!(e.event["event_id"], "v37");
    assert!(e.fbtrace_id.is_some() && e.message.as_deref().is_some_and(|m| !m.is_empty()), "{e:?}");
}

#[test]
fn events_that_would_pass_the_7_day_limit_are_dead_lettered_not_sent() {
    let pixel = 3_000_000_000_000_004;
    let dir = TempDir::new("expired");
    let sim = sim();
    let (delivery, mut links) = Delivery::start(config(&dir, &sim, &[pixel])).unwrap();
    let mut core = Core::new(links.remove(0), batches(10));
    let stale = unix_now() - 7 * 86_400 + 120;
    let fresh = unix_now() - 5;
    core.push(pixel, "old", &capi_event("old", stale), stale);
    core.push(pixel, "new", &capi_event("new", fresh), fresh);
    core.settle(Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "an empty spool", || delivery.pending_records() == 0);
    assert_eq!(sim_ids(&sim, pixel), ["new"]);
    assert_eq!(sim.stats().requests_rejected, 0, "the stale event never reached Meta");
    delivery.shutdown(Duration::from_secs(5));
    let dead = DeadLetters::open(&dir.0.join("spool/deadletters"), DeadLetterConfig::default()).unwrap();
    let entries = dead.list(ListFilter::default()).unwrap().entries;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].reason, entries[0].event["event_id"].as_str()), (Reason::Expired, Some("old")));
}

#[test]
fn after_an_outage_everything_is_delivered_in_order_per_pixel() {
    let dir = TempDir::new("outage");
    let sim = sim();
    sim.set_faults(faults(&["2=1"])).unwrap();
    let mut cfg = config(&dir, &sim, &[A, B]);
    cfg.scheduler.concurrency = 1;
    let (delivery, mut links) = Delivery::start(cfg).unwrap();
    let mut core = Core::new(links.remove(0), batches(7));
    let mut sent: HashMap<u64, Vec<String>> = HashMap::new();
    let start = Instant::now();
    let mut i = 0;
    // Events keep coming during a 1.5 s outage.
    while start.elapsed() < Duration::from_millis(1500) {
        for p in [A, B] {
            let id = format!("o{i}");
            let t = unix_now() - 1;
            core.push(p, &id, &capi_event(&id, t), t);
            sent.entry(p).or_default().push(id);
        }
        i += 1;
        core.tick();
        std::thread::sleep(Duration::from_millis(3));
    }
    core.settle(Duration::from_secs(10));
    assert_eq!(core.acked.len(), sent.values().map(Vec::len).sum::<usize>());
    assert_eq!(sim.stats().events_received, 0);
    sim.set_faults(FaultConfig::default()).unwrap();
    for p in [A, B] {
        wait_for(Duration::from_secs(20), "the backlog", || sim_ids(&sim, p).len() >= sent[&p].len());
        assert_eq!(sim_ids(&sim, p), sent[&p], "pixel {p}: every event once, in order");
    }
    let week_ago = unix_now() - 7 * 86_400;
    assert!(sim.events(None).iter().all(|e| e.event["event_time"].as_u64().unwrap() > week_ago));
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn a_full_spool_refuses_new_events_keeps_old_ones_and_delivers_them_later() {
    let pixel = 3_000_000_000_000_005;
    let dir = TempDir::new("full");
    let sim = sim();
    let (delivery, mut links) = small_spool_meta_down(&dir, &sim, pixel);
    let mut core = Core::new(links.remove(0), batches(5));
    fill_until_refused(&mut core, pixel, "f", 5, 10_000, "the spool never filled");
    let (_, err) = &core.refused[0];
    assert!(matches!(err, SubmitError::Full { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("spool is full") && msg.contains("retry later"), "{msg}");
    // While full, new events are refused up front, and the stored ones stay.
    let refused_before = core.refused.len();
    push_events(&mut core, pixel, "late", 3);
    assert_eq!(core.refused.len(), refused_before + 3);
    let acked = core.acked.clone();
    assert!(acked.len() >= 100, "{} acknowledged before the spool filled", acked.len());
    assert_eq!(delivery.pending_events() as usize, acked.len());

    sim.set_faults(FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(20), "the stored events", || sim_ids(&sim, pixel).len() >= acked.len());
    let mut got = sim_ids(&sim, pixel);
    got.sort();
    let mut want = acked.clone();
    want.sort();
    assert_eq!(got, want, "every stored event once");
    wait_for(Duration::from_secs(5), "room in the spool", || !delivery.status().spool_full);
    push_events(&mut core, pixel, "after", 5);
    core.settle(Duration::from_secs(10));
    assert_eq!(core.refused.len(), refused_before + 3, "taken again once there is room");
    wait_for(Duration::from_secs(10), "the new events", || sim_ids(&sim, pixel).len() == acked.len() + 5);
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn a_full_hand_off_overflows_to_the_cores_spool_and_loses_nothing() {
    snapshotter();
    let pixel = 3_000_000_000_000_006;
    let dir = TempDir::new("overflow");
    let sim = sim();
    let mut cfg = config(&dir, &sim, &[pixel]);
    cfg.handoff_batches = 1;
    cfg.spool.fsync = FsyncPolicy::Always;
    let (delivery, mut links) = Delivery::start(cfg).unwrap();
    let mut core = Core::new(links.remove(0), batches(1));
    // One event per batch, handed over faster than the writer fsyncs each one.
    let ids = push_events(&mut core, pixel, "x", 300);
    assert!(core.link.overflowed() > 0, "the hand-off never filled");
    let start = Instant::now();
    while core.unanswered() > 0 || sim_ids(&sim, pixel).len() < 300 {
        assert!(start.elapsed() < Duration::from_secs(30), "stuck: {} unanswered", core.unanswered());
        core.tick();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(core.acked.len(), 300);
    let mut got = sim_ids(&sim, pixel);
    got.sort();
    got.dedup();
    let mut want = ids;
    want.sort();
    assert_eq!(got, want);
    assert!(counter("capig_handoff_overflow_batches_total", &[]) > 0);
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn a_restart_delivers_what_the_last_run_left_in_the_spool_even_beyond_memory() {
    snapshotter();
    let pixel = 3_000_000_000_000_007;
    let dir = TempDir::new("restart");
    let sim = sim();
    sim.set_faults(faults(&["2=1"])).unwrap();
    let mut cfg = config(&dir, &sim, &[pixel]);
    // 4 KiB per pixel in memory: most of the backlog has to be read back from disk.
    cfg.memory_per_pixel = 4 << 10;
    cfg.scheduler.concurrency = 1;
    let (delivery, mut links) = Delivery::start(cfg.clone()).unwrap();
    let mut core = Core::new(links.remove(0), batches(5));
    let ids = push_events(&mut core, pixel, "s", 400);
    core.settle(Duration::from_secs(10));
    drop(core);
    delivery.shutdown(Duration::from_secs(1));

    sim.set_faults(FaultConfig::default()).unwrap();
    let (delivery, links) = Delivery::start(cfg).unwrap();
    drop(links);
    wait_for(Duration::from_secs(20), "the previous run's events", || sim_ids(&sim, pixel).len() >= 400);
    assert_eq!(sim_ids(&sim, pixel), ids, "once each, in order");
    wait_for(Duration::from_secs(5), "an empty spool", || delivery.pending_records() == 0);
    assert!(counter("capig_spool_spilled_total", &[("pixel", &pixel.to_string())]) > 0);
    delivery.shutdown(Duration::from_secs(5));
}

#[test]
fn a_really_full_disk_refuses_new_events_and_keeps_the_stored_ones() {
    let pixel = 3_000_000_000_000_009;
    let dir = TempDir::new("tmpfs");
    let Some(disk) = Tmpfs::mount(&dir, 1 << 20) else {
        return;
    };
    let mnt = disk.mnt.clone();
    let sim = sim();
    sim.set_faults(faults(&["2=1"])).unwrap();
    let mut cfg = config(&dir, &sim, &[pixel]);
    cfg.spool_dir = mnt.join("spool");
    cfg.spool.max_bytes = 1 << 30; // far above the disk: the disk fills first
    cfg.spool.segment_bytes = 256 << 10;
    let (delivery, mut links) = Delivery::start(cfg).unwrap();
    let mut core = Core::new(links.remove(0), batches(10));
    fill_until_refused(&mut core, pixel, "d", 10, 20_000, "the disk never filled");
    let (_, err) = &core.refused[0];
    assert!(matches!(err, SubmitError::Full { .. }), "a full disk is a full spool: {err:?}");
    let acked = core.acked.clone();
    assert!(acked.len() > 500, "{} stored before the disk filled", acked.len());

    sim.set_faults(FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(30), "the stored events", || {
        let got: HashSet<String> = sim_ids(&sim, pixel).into_iter().collect();
        acked.iter().all(|id| got.contains(id))
    });
    wait_for(Duration::from_secs(10), "room again", || !delivery.status().spool_full);
    let refused = core.refused.len();
    push_events(&mut core, pixel, "again", 10);
    core.settle(Duration::from_secs(10));
    assert_eq!(core.refused.len(), refused, "taken again once the disk has room");
    delivery.shutdown(Duration::from_secs(5));
}

/// An ingestion core's state (`CoreState`) over the real spool, filled while Meta is
/// down: a resend that finds its event still in flight waits for that generation, and
/// is refused with it; once refused, the event leaves no trace, and its next resend is
/// taken, not called a duplicate.
#[test]
fn a_resend_is_called_taken_only_once_its_original_is_stored() {
    use capig::event::policy::{DedupConfig, Policies};
    use capig::event::Context;
    use capig::ingest::core::{BodyShape, CoreState, Ingested};

    let pixel = 3_000_000_000_000_011u64;
    let dir = TempDir::new("core-resend");
    let sim = sim();
    let (delivery, mut links) = small_spool_meta_down(&dir, &sim, pixel);
    let mut state = CoreState::new(Policies::allow_all(DedupConfig::default()), batches(1000), links.remove(0));
    let ctx = Context { now_ms: unix_now() * 1000, client_ip: Some("203.0.113.9"), user_agent: Some("Mozilla/5.0 (core test)"), ..Context::default() };
    let event = |id: &str| browser_event_of(&pixel.to_string(), id);
    let (mut ids, mut rejected) = (Vec::new(), Vec::new());
    let mut ingest = |state: &mut CoreState, body: &str| -> Ingested {
        ids.clear();
        rejected.clear();
        let mut body = body.as_bytes().to_vec();
        state.ingest(&mut body, BodyShape::Browser, &ctx, Instant::now(), 1000, &|_| false, &mut ids, &mut rejected).unwrap()
    };
    let settle = |state: &mut CoreState, g| {
        state.close_generation();
        let start = Instant::now();
        loop {
            state.poll();
            if let Some(r) = state.result(g) {
                return r;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "generation {g} never answered");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // Fill the spool with stored generations until one is refused.
    let mut n = 0;
    let refused_id = loop {
        assert!(n < 10_000, "the spool never filled");
        let id = format!("fill{n}");
        n += 1;
        let got = ingest(&mut state, &event(&id));
        if got.added == 0 {
            panic!("refused before the spool: {got:?}");
        }
        let g = state.open_generation();
        // A browser resends the same event before the answer (its socket closed): it
        // is a duplicate, and its answer waits for the original's generation.
        let resend = ingest(&mut state, &event(&id));
        assert_eq!((resend.added, resend.duplicates), (0, 1));
        let w = state.wait_for(&resend).expect("the original is in flight");
        assert!(w.from <= g && g <= w.to, "{w:?} covers generation {g}");
        match settle(&mut state, g) {
            Ok(()) => continue,
            Err(e) => {
                assert!(matches!(e, SubmitError::Full { .. }), "{e:?}");
                // So the resend's answer is the refusal too, not "taken".
                assert!((w.from..=w.to).any(|g| state.result(g).is_some_and(|r| r.is_err())));
                break id;
            }
        }
    };
    // Meta comes back; the spool drains.
    sim.set_faults(FaultConfig::default()).unwrap();
    wait_for(Duration::from_secs(20), "room in the spool", || {
        state.poll();
        !delivery.status().spool_full && state.refusing().is_none()
    });
    let again = ingest(&mut state, &event(&refused_id));
    assert_eq!((again.added, again.duplicates), (1, 0), "the refused event is taken when sent again");
    let g = state.open_generation();
    settle(&mut state, g).unwrap();
    assert_each_once(&sim, pixel, (0..n).map(|i| format!("fill{i}")).collect(), Duration::from_secs(20));
    delivery.shutdown(Duration::from_secs(5));
}
