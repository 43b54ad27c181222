//! Acknowledged means delivered, across `kill -9`: `capig send` (a real child process
//! with the real spool) takes browser events and prints `{"stored":…}` once they are
//! durable; it is killed with SIGKILL at random moments and restarted; after a final run
//! drains the spool, every event it ever acknowledged is at the simulator. Duplicates
//! (a batch Meta took just before the kill, sent again after the restart) carry the same
//! `event_id`, which Meta deduplicates; they are counted and must stay rare.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const PIXEL: &str = "4444444444444444";

fn write_config(dir: &TempDir, graph_url: &str) -> std::path::PathBuf {
    std::fs::write(dir.0.join("token"), "crash-test-token\n").unwrap();
    let path = dir.0.join("capig.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[listeners]]
addr = "127.0.0.1:0"
kind = "http"

[[pixels]]
id = "{PIXEL}"
access_token_file = "token"

[upstream]
graph_url = "{graph_url}"
batch_size = 50
linger_ms = 5
retry_initial_ms = 10
retry_max_ms = 200

[spool]
dir = "spool"
fsync = "interval"
fsync_interval_ms = 5
"#
        ),
    )
    .unwrap();
    path
}

fn spawn(config: &std::path::Path, wait_secs: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_capig"))
        .args(["send", "--config"])
        .arg(config)
        .args(["--client-ip", "2001:db8::9", "--user-agent", "Mozilla/5.0 (crash test)"])
        .args(["--wait-secs", &wait_secs.to_string()])
        .env("CAPIG_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start capig send")
}

/// Reads `{"stored":id}` lines into `stored` until the pipe closes.
fn collect(child: &mut Child, stored: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let v: serde_json::Value = serde_json::from_str(&line).expect("capig send prints JSON lines");
            if let Some(id) = v["stored"].as_str() {
                stored.lock().unwrap().push(id.to_owned());
            } else {
                panic!("an event was not stored: {line}");
            }
        }
    })
}

#[test]
fn every_acknowledged_event_reaches_meta_across_kill_9() {
    let dir = TempDir::new("crash");
    // Meta answers slowly at times, so batches are in flight when the kill comes.
    let sim = sim_with(capig::sim::SimArgs {
        latency_ms: Some(capig::sim::LatencyMs { min: 0, max: 30 }),
        seed: Some(9),
        ..capig::sim::SimArgs::default()
    });
    let config = write_config(&dir, &sim.url());
    let stored = Arc::new(Mutex::new(Vec::new()));
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = 0u64;
    for round in 0..6 {
        let mut child = spawn(&config, 60);
        let reader = collect(&mut child, stored.clone());
        let mut stdin = child.stdin.take().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let life = Duration::from_millis(150 + rng % 600);
        let start = Instant::now();
        while start.elapsed() < life {
            let mut chunk = String::new();
            for _ in 0..20 {
                chunk.push_str(&browser_event_of(PIXEL, &format!("k{next}")));
                chunk.push('\n');
                next += 1;
            }
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        drop(stdin);
        reader.join().unwrap();
        eprintln!("round {round}: killed after {life:?}, {} stored so far, {} sent", stored.lock().unwrap().len(), next);
    }
    // A last run with no new events drains what the killed runs left.
    let mut child = spawn(&config, 60);
    let reader = collect(&mut child, stored.clone());
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "the draining run ended with {status}");

    let stored = stored.lock().unwrap().clone();
    assert!(stored.len() > 1000, "only {} events were acknowledged", stored.len());
    let delivered = sim_ids(&sim, PIXEL.parse().unwrap());
    let mut count: HashMap<&str, u32> = HashMap::new();
    for id in &delivered {
        *count.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = stored.iter().filter(|id| !count.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged events never reached Meta, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    let unique: HashSet<&str> = delivered.iter().map(String::as_str).collect();
    let duplicates = delivered.len() - unique.len();
    eprintln!(
        "{} acknowledged, {} delivered ({} unique, {duplicates} duplicates), {} sent in all",
        stored.len(),
        delivered.len(),
        unique.len(),
        next
    );
    // A kill can duplicate at most what Meta had taken without the ack reaching the
    // ledger: the batches in flight (4 per pixel, 50 events each) and those answered
    // since the writer's last pass. Twice that per kill is a bound that does not depend
    // on how fast this machine is.
    let kills = 6;
    assert!(duplicates <= kills * 2 * 4 * 50, "{duplicates} duplicates for {kills} kills ({} events)", stored.len());
}
