//! Dead-letter store tests on a real temporary directory.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "capig-deadletter-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const HASHED_EM: &str = "309a0a5c3e211326ae75ca18196d301a9bdbd1a882a4d2569511033da23f0abd";

fn event(i: u64) -> String {
    format!(
        r#"{{"event_name":"Purchase","event_id":"ev-{i}","event_time":1700000000,"user_data":{{"em":["{HASHED_EM}"]}}}}"#
    )
}

fn meta(code: i64, subcode: Option<i64>) -> MetaError {
    MetaError {
        status: 400,
        code,
        subcode,
        message: "Invalid parameter".into(),
        fbtrace_id: Some("AbCdEf".into()),
    }
}

fn all(store: &DeadLetters) -> Listing {
    store
        .list(ListFilter {
            limit: 0,
            ..ListFilter::default()
        })
        .unwrap()
}

fn files(dir: &Path) -> Vec<u64> {
    scan(dir).unwrap().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn entries_round_trip() {
    let cases: &[(Reason, Option<MetaError>)] = &[
        (Reason::MetaRejected, Some(meta(100, Some(2804003)))),
        (Reason::MetaRejected, Some(meta(2, None))),
        (Reason::Expired, None),
    ];
    let dir = TempDir::new("round-trip");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    for (i, (reason, m)) in cases.iter().enumerate() {
        let ev = event(i as u64);
        store
            .append(&Entry {
                pixel: 42,
                event: ev.as_bytes(),
                reason: *reason,
                meta: m.as_ref(),
                time: 1_700_000_000 + i as u64,
            })
            .unwrap();
    }
    drop(store);
    let store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    let got = all(&store);
    assert_eq!(got.skipped, 0);
    assert_eq!(got.entries.len(), cases.len());
    for (i, (reason, m)) in cases.iter().enumerate() {
        let e = &got.entries[cases.len() - 1 - i];
        assert_eq!(e.time, 1_700_000_000 + i as u64);
        assert_eq!(e.pixel, 42);
        assert_eq!(e.reason, *reason);
        assert_eq!(e.code, m.as_ref().map(|m| m.code));
        assert_eq!(e.subcode, m.as_ref().and_then(|m| m.subcode));
        assert_eq!(e.message, m.as_ref().map(|m| m.message.clone()));
        assert_eq!(e.fbtrace_id, m.as_ref().and_then(|m| m.fbtrace_id.clone()));
        let want: serde_json::Value = serde_json::from_str(&event(i as u64)).unwrap();
        assert_eq!(e.event, want);
    }
    // The event bytes are stored verbatim.
    let text = fs::read_to_string(dir.0.join(file_name(1))).unwrap();
    assert!(text.contains(&event(0)));
}

#[test]
fn reason_labels_are_stable() {
    for (r, label) in [
        (Reason::MetaRejected, "meta_rejected"),
        (Reason::Expired, "expired"),
    ] {
        assert_eq!(r.as_str(), label);
        assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{label}\""));
    }
}

#[test]
fn listing_is_newest_first_with_pixel_filter_and_limit() {
    let dir = TempDir::new("filter");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    for i in 0..10u64 {
        let ev = event(i);
        let m = meta(100, None);
        store
            .append(&Entry {
                pixel: 1 + i % 2,
                event: ev.as_bytes(),
                reason: Reason::MetaRejected,
                meta: Some(&m),
                time: 100 + i,
            })
            .unwrap();
    }
    let cases: &[(Option<u64>, usize, &[u64])] = &[
        (None, 0, &[109, 108, 107, 106, 105, 104, 103, 102, 101, 100]),
        (None, 3, &[109, 108, 107]),
        (Some(1), 0, &[108, 106, 104, 102, 100]),
        (Some(2), 2, &[109, 107]),
        (Some(3), 0, &[]),
    ];
    for &(pixel, limit, want) in cases {
        let got = store
            .list(ListFilter {
                pixel,
                reason: None,
                limit,
            })
            .unwrap();
        let times: Vec<u64> = got.entries.iter().map(|e| e.time).collect();
        assert_eq!(times, want, "pixel {pixel:?} limit {limit}");
    }
}

#[test]
fn batches_are_split_into_entries() {
    let dir = TempDir::new("batch");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    let payload = format!("{},\n{} , {}", event(0), event(1), event(2));
    let n = store
        .append_batch(7, payload.as_bytes(), Reason::Expired, None, 5)
        .unwrap();
    assert_eq!(n, 3);
    let got = all(&store);
    let ids: Vec<&str> = got
        .entries
        .iter()
        .map(|e| e.event["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ev-2", "ev-1", "ev-0"]);
    assert!(got.entries.iter().all(|e| e.message.is_none()));
    assert!(matches!(
        store.append_batch(7, b"{\"a\":1},", Reason::Expired, None, 5),
        Err(DeadLetterError::Payload(_))
    ));
}

#[test]
fn files_rotate_and_the_bound_evicts_the_oldest() {
    let dir = TempDir::new("bound");
    let line_len = {
        let mut v = Vec::new();
        let ev = event(0);
        encode(
            &Entry {
                pixel: 1,
                event: ev.as_bytes(),
                reason: Reason::Expired,
                meta: None,
                time: 10,
            },
            &mut v,
        )
        .unwrap();
        v.len() as u64
    };
    // Two lines per file, at most three files.
    let cfg = DeadLetterConfig {
        file_bytes: 2 * line_len,
        max_bytes: 6 * line_len,
    };
    let mut store = DeadLetters::open(&dir.0, cfg).unwrap();
    for i in 0..10u64 {
        let ev = event(i);
        store
            .append(&Entry {
                pixel: 1,
                event: ev.as_bytes(),
                reason: Reason::Expired,
                meta: None,
                time: 10 + i % 10,
            })
            .unwrap();
    }
    assert_eq!(files(&dir.0), [3, 4, 5]);
    let stats = store.stats();
    assert_eq!(stats.files, 3);
    assert_eq!(stats.bytes, 6 * line_len);
    assert_eq!(stats.appended, 10);
    assert_eq!(stats.evicted_files, 2);
    assert_eq!(stats.evicted_entries, 4);
    let times: Vec<u64> = all(&store).entries.iter().map(|e| e.time).collect();
    assert_eq!(times, [19, 18, 17, 16, 15, 14]);
    // An entry that cannot fit a file is refused.
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(3 * line_len as usize));
    assert!(matches!(
        store.append(&Entry {
            pixel: 1,
            event: big.as_bytes(),
            reason: Reason::Expired,
            meta: None,
            time: 1,
        }),
        Err(DeadLetterError::TooLarge { .. })
    ));
}

#[test]
fn a_torn_last_line_is_skipped_counted_and_not_appended_to() {
    let dir = TempDir::new("torn");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    for i in 0..3u64 {
        let ev = event(i);
        store
            .append(&Entry {
                pixel: 1,
                event: ev.as_bytes(),
                reason: Reason::Expired,
                meta: None,
                time: i,
            })
            .unwrap();
    }
    drop(store);
    // A crash mid-write: cut the last line in half.
    let path = dir.0.join(file_name(1));
    let len = fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 40).unwrap();
    drop(f);
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    let got = all(&store);
    assert_eq!(got.skipped, 1);
    assert_eq!(got.entries.len(), 2);
    let ev = event(9);
    store
        .append(&Entry {
            pixel: 1,
            event: ev.as_bytes(),
            reason: Reason::Expired,
            meta: None,
            time: 9,
        })
        .unwrap();
    assert_eq!(files(&dir.0), [1, 2]);
    let got = all(&store);
    assert_eq!(got.skipped, 1);
    let times: Vec<u64> = got.entries.iter().map(|e| e.time).collect();
    assert_eq!(times, [9, 1, 0]);
    let report = list_report(&dir.0, None, 0, false).unwrap();
    assert!(report.contains("1 unreadable line(s) skipped"), "{report}");
}

/// The invariant "no clear-text personal data in the dead-letter store": the store writes
/// only what it is given (a hashed event) and Meta's message, never payload text.
#[test]
fn the_store_writes_only_hashed_events_and_never_payload_in_messages() {
    let dir = TempDir::new("pii");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    let hashed = format!(
        r#"{{"event_name":"Lead","event_id":"abc","user_data":{{"em":["{HASHED_EM}"],"ph":["{HASHED_EM}"]}}}}"#
    );
    let m = meta(100, None);
    store
        .append_batch(1, hashed.as_bytes(), Reason::MetaRejected, Some(&m), 0)
        .unwrap();
    store
        .append_batch(1, hashed.as_bytes(), Reason::Expired, None, 0)
        .unwrap();
    let text = fs::read_to_string(dir.0.join(file_name(1))).unwrap();
    assert!(!text.contains('@'));
    // No string value that looks like a phone number (hex hashes contain letters).
    fn phone_like(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => {
                let d = s.trim_start_matches('+');
                d.len() >= 7
                    && d.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'-' || b == b' ')
            }
            serde_json::Value::Array(a) => a.iter().any(phone_like),
            serde_json::Value::Object(o) => o.values().any(phone_like),
            _ => false,
        }
    }
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(!phone_like(&v), "a phone-like value in {line}");
    }
    assert!(text.contains(&hashed), "the event is stored verbatim");
    for e in all(&store).entries {
        if let Some(msg) = &e.message {
            assert_eq!(msg, &m.message);
            assert!(!msg.contains(HASHED_EM));
        }
    }
}

#[test]
fn report_formats() {
    let dir = TempDir::new("report");
    let mut store = DeadLetters::open(&dir.0, DeadLetterConfig::default()).unwrap();
    let m = meta(100, Some(2804003));
    let ev = event(5);
    store
        .append(&Entry {
            pixel: 42,
            event: ev.as_bytes(),
            reason: Reason::MetaRejected,
            meta: Some(&m),
            time: 1_700_000_000,
        })
        .unwrap();
    let human = list_report(&dir.0, Some(42), 10, false).unwrap();
    assert_eq!(
        human,
        "2023-11-14T22:13:20Z  42  meta_rejected  100/2804003  AbCdEf  Purchase ev-5  Invalid parameter\n"
    );
    let json = list_report(&dir.0, None, 10, true).unwrap();
    let back: StoredEntry = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(back.pixel, 42);
    assert_eq!(list_report(&dir.0, Some(1), 10, false).unwrap(), "");
    assert_eq!(
        list_report(&dir.0.join("missing"), None, 10, true).unwrap(),
        ""
    );
}
