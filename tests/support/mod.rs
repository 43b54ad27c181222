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
