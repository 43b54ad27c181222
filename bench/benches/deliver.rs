//! Criterion benches of the delivery side, each beside an ordinary baseline in the same
//! group so that one run gives the ratio:
//! - `batcher`: one serialized CAPI event (~420 bytes) appended to its pixel's open
//!   batch, batches closing at 1,000 events and their buffers recycled (capig), vs
//!   keeping each event as an owned `String` and joining them when the batch closes
//!   (ordinary);
//! - `spool_append`: one closed batch of 100 events (~42 KB) appended to the spool
//!   with group commit (`fsync = "interval"`, 10 ms) on a real file in the temp dir
//!   (capig: CRC'd record, segment bookkeeping), vs `write_all` of the same bytes to a
//!   plain file with the same 10 ms `fdatasync` cadence (the floor of any append log).
//!
//! Run: `cargo bench -p capig-bench --bench deliver`.

use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

use capig::config::FsyncPolicy;
use capig::deliver::batch::{BatchConfig, Batcher};
use capig::deliver::spool::{Spool, SpoolConfig};

fn capi_event(i: usize) -> String {
    format!(
        r#"{{"event_name":"Purchase","event_time":1700000000,"event_id":"evt-{i:08}","action_source":"website","event_source_url":"https://shop.example/checkout?step=3","user_data":{{"em":["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"],"ph":["f7d0e9a3b7c8d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"],"client_ip_address":"2001:db8::7","client_user_agent":"Mozilla/5.0 (X11; Linux x86_64)","fbp":"fb.1.1700000000000.123456789"}},"custom_data":{{"value":49.9,"currency":"EUR"}}}}"#
    )
}

fn batcher(c: &mut Criterion) {
    let events: Vec<String> = (0..1000).map(capi_event).collect();
    let mut g = c.benchmark_group("batcher");
    g.throughput(Throughput::Elements(1));
    let mut batcher = Batcher::new(BatchConfig { max_events: 1000, max_bytes: 4 << 20, linger: Duration::from_secs(1) });
    let mut closed = Vec::new();
    let now = Instant::now();
    let mut i = 0;
    g.bench_function("capig", |b| {
        b.iter(|| {
            let e = &events[i % 1000];
            i += 1;
            batcher.push(1, now, 1_700_000_000, e.as_bytes(), &mut closed);
            for batch in closed.drain(..) {
                black_box(batch.payload.len());
                batcher.recycle(batch.payload);
            }
        })
    });
    let mut open: Vec<String> = Vec::new();
    let mut j = 0;
    g.bench_function("ordinary", |b| {
        b.iter(|| {
            open.push(events[j % 1000].clone());
            j += 1;
            if open.len() == 1000 {
                let body = format!("{{\"data\":[{}]}}", open.join(","));
                black_box(body.len());
                open.clear();
            }
        })
    });
    g.finish();
}

fn spool_append(c: &mut Criterion) {
    let payload = (0..100).map(capi_event).collect::<Vec<_>>().join(",").into_bytes();
    let dir = std::env::temp_dir().join(format!("capig-bench-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut g = c.benchmark_group("spool_append");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    // Criterion calls each routine once per sample: the spool and the file are opened
    // once, outside, as a running gateway keeps them.
    let cfg = SpoolConfig { fsync: FsyncPolicy::Interval, fsync_interval_ms: 10, max_bytes: u64::MAX, segment_bytes: 64 << 20 };
    let mut spool = Spool::open(&dir.join("capig"), cfg).unwrap();
    g.bench_function("capig", |b| {
        b.iter(|| {
            let id = spool.append(1, 100, 1_700_000_000, &payload).unwrap();
            spool.commit(Instant::now()).unwrap();
            // Delivered at once: segments are deleted as they fill, so the disk stays small.
            spool.ack(id).unwrap();
        })
    });
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("plain.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut written = 0u64;
    let mut last_sync = Instant::now();
    g.bench_function("ordinary", |b| {
        b.iter(|| {
            file.write_all(&payload).unwrap();
            written += payload.len() as u64;
            if last_sync.elapsed() >= Duration::from_millis(10) {
                file.sync_data().unwrap();
                last_sync = Instant::now();
            }
            if written > 64 << 20 {
                file = std::fs::File::create(&path).unwrap();
                written = 0;
            }
        })
    });
    g.finish();
    drop(spool);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, batcher, spool_append);
criterion_main!(benches);
