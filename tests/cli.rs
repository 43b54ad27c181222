//! The `capig` command-line tools, run as real processes: `capig normalize` on Meta's
//! official examples, `capig transform` on the bundled sample and on hostile input.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const CAPIG: &str = env!("CARGO_BIN_EXE_capig");

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

fn capig(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(CAPIG)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capig");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("capig output");
    writer.join().unwrap();
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `capig normalize FIELD VALUE` prints the normalized value, then its SHA-256.
fn check_normalize(field: &str, value: &str, expected: Option<(&str, &str)>) {
    let run = capig(&["normalize", field, value], b"");
    match expected {
        Some((normalized, hash)) => {
            assert_eq!(run.status, 0, "{field} {value:?}: {}", run.stderr);
            assert_eq!(run.stdout, format!("{normalized}\n{hash}\n"), "{field} {value:?}");
        }
        None => {
            assert_eq!(run.status, 1, "{field} {value:?} should fail: {}", run.stdout);
            assert!(!run.stderr.is_empty());
            assert!(!run.stderr.contains(value.trim()) || value.trim().is_empty(), "the value must not be echoed: {}", run.stderr);
        }
    }
}

#[test]
fn normalize_prints_metas_official_examples() {
    let cases = [
        ("em", " John_Smith@gmail.com ", Some(("john_smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"))),
        ("ph", "(650)555-1212", Some(("16505551212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"))),
        ("fn", "Mary", Some(("mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"))),
        ("fn", "Valéry", Some(("valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"))),
        ("ln", "정", Some(("정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"))),
        ("db", "2/16/1997", Some(("19970216", "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c"))),
        ("country", "United States", Some(("us", "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"))),
        ("em", "not-an-email", None),
    ];
    for (field, value, expected) in cases {
        check_normalize(field, value, expected);
    }
}

#[test]
fn normalize_explains_unknown_fields() {
    let run = capig(&["normalize", "email", "a@b.co"], b"");
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("unknown field") && run.stderr.contains("external_id"), "{}", run.stderr);
}

fn transform(args: &[&str], input: &[u8]) -> (Vec<Value>, String) {
    let mut all = vec!["transform"];
    all.extend_from_slice(args);
    let run = capig(&all, input);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let lines = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (lines, run.stderr)
}

#[test]
fn transform_turns_the_bundled_sample_into_capi_events() {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/browser-events.jsonl")).unwrap();
    let (out, summary) = transform(&["--client-ip", "203.0.113.7", "--user-agent", "Mozilla/5.0 (test)"], &sample);
    let by_id = |id: &str| out.iter().find(|v| v["event_id"] == id || v["rejected"] == id).unwrap_or_else(|| panic!("{id} missing"));

    let pv = by_id("pv-7f3a1c");
    assert_eq!(pv["action_source"], "website");
    assert_eq!(pv["user_data"]["client_ip_address"], "203.0.113.7");
    assert_eq!(pv["user_data"]["client_user_agent"], "Mozilla/5.0 (test)");
    assert_eq!(pv["user_data"]["fbp"], "fb.1.1596403881668.1116446470");
    let fbc = pv["user_data"]["fbc"].as_str().unwrap();
    assert!(fbc.starts_with("fb.1.") && fbc.ends_with(".IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB"), "{fbc}");

    let purchase = by_id("order-A1042");
    assert_eq!(purchase["user_data"]["em"], "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f");
    assert_eq!(purchase["user_data"]["ph"], "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176");
    assert_eq!(purchase["custom_data"]["value"], 142.52);
    assert_eq!(purchase["custom_data"]["currency"], "USD");
    for key in ["fn", "ln", "db", "ge", "ct", "st", "zp", "country", "external_id"] {
        let h = purchase["user_data"][key].as_str().unwrap_or_else(|| panic!("{key} missing"));
        assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{key}: {h}");
    }
    // No clear-text personal data anywhere in the output.
    let text = serde_json::to_string(&out).unwrap();
    for pii in ["John_Smith", "john_smith", "Smith", "650", "Menlo", "94025", "MARY@", "customer-8841"] {
        assert!(!text.contains(pii), "{pii} leaked");
    }

    // The array line gives two events, the second with LDU and a passed-through hash.
    let reg = by_id("reg-88aa");
    assert_eq!(reg["user_data"]["em"], "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f");
    assert_eq!(reg["data_processing_options"], serde_json::json!(["LDU"]));
    assert_eq!(reg["data_processing_options_state"], 1000);

    let reasons: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|v| Some((v.get("rejected")?.as_str().unwrap_or("-"), v["reason"].as_str()?)))
        .collect();
    assert_eq!(
        reasons,
        [("order-A1042", "duplicate"), ("order-A0001", "event_too_old"), ("order-A1043", "invalid_custom_data"), ("-", "invalid_json")]
    );
    let search = by_id("s-1");
    assert!(search["user_data"].get("em").is_none() && search["user_data"].get("fbp").is_none());
    assert!(summary.contains("7 forwarded, 4 rejected"), "{summary}");
    assert!(summary.contains("invalid_em 1") && summary.contains("malformed_fbp 1"), "{summary}");
}

#[test]
fn transform_survives_hostile_input() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"pixel_id\":\"1\",\"event_name\":\"\xff\xfe\"}\n");
    input.extend_from_slice(format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000)).as_bytes());
    input.extend_from_slice(b"{\"a\":NaN}\n");
    input.extend_from_slice(format!("{{\"pixel_id\":\"1\",\"event_name\":\"{}\"}}\n", "x".repeat(1 << 20)).as_bytes());
    input.extend_from_slice(b"\n   \n42\nnull\n[1,\"x\",{}]\n");
    let (out, _) = transform(&["--user-agent", "UA"], &input);
    let reasons: Vec<&str> = out.iter().map(|v| v["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["invalid_json", "invalid_json", "invalid_json", "field_too_long", "not_an_object", "not_an_object", "not_an_object", "not_an_object", "missing_field"]
    );
    assert!(out[0]["message"].as_str().unwrap().contains("UTF-8"));
    assert!(out[1]["message"].as_str().unwrap().contains("nested deeper"));
}

#[test]
fn transform_applies_the_pixel_option() {
    let line = br#"{"event_name":"Lead","event_source_url":"https://shop.example/"}"#;
    let (out, _) = transform(&["--pixel", "42", "--user-agent", "UA"], line);
    assert_eq!(out[0]["event_name"], "Lead");
    let run = capig(&["transform", "--pixel", "4x2"], line);
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("--pixel"), "{}", run.stderr);
}

#[test]
fn transform_with_a_config_applies_the_pixel_policy() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/capig.toml");
    let config: toml::Table = std::fs::read_to_string(example).unwrap().parse().unwrap();
    let pixels = config["pixels"].as_array().unwrap();
    let enabled = pixels.iter().find(|p| p.get("enabled").and_then(|e| e.as_bool()) != Some(false)).unwrap();
    let disabled = pixels.iter().find(|p| p.get("enabled").and_then(|e| e.as_bool()) == Some(false)).unwrap();
    let id = enabled["id"].as_str().unwrap();
    let domain = enabled["domains"].as_array().unwrap()[0].as_str().unwrap();
    let blocked = enabled["blocked_events"].as_array().unwrap()[0].as_str().unwrap();
    let event = |pixel: &str, name: &str, host: &str, n: u32| {
        format!(r#"{{"pixel_id":"{pixel}","event_name":"{name}","event_id":"p{n}","event_source_url":"https://{host}/"}}"#)
    };
    let input = [
        event(id, "AddToCart", domain, 1),
        event(id, "AddToCart", &format!("www.{domain}"), 2),
        event(id, "AddToCart", "elsewhere.example", 3),
        event(disabled["id"].as_str().unwrap(), "AddToCart", domain, 4),
        event("999", "AddToCart", domain, 5),
        event(id, blocked, domain, 6),
    ]
    .join("\n");
    let (out, _) = transform(&["--config", example, "--user-agent", "UA"], input.as_bytes());
    let got: Vec<&str> = out.iter().map(|v| v.get("reason").and_then(Value::as_str).unwrap_or("ok")).collect();
    assert_eq!(got, ["ok", "ok", "domain_not_allowed", "pixel_disabled", "unknown_pixel", "event_blocked"]);
}

#[test]
fn deadletters_list_shows_what_meta_refused() {
    use capig::deliver::deadletter::{DeadLetterConfig, DeadLetters, Reason};
    use capig::deliver::policy::MetaError;

    let spool = std::env::temp_dir().join(format!("capig-cli-deadletters-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let mut store = DeadLetters::open(&spool.join("deadletters"), DeadLetterConfig::default()).unwrap();
    let meta = MetaError {
        status: 400,
        code: 100,
        subcode: Some(2804003),
        message: "Invalid parameter".into(),
        fbtrace_id: Some("AbCdEf".into()),
    };
    let payload = br#"{"event_name":"Purchase","event_id":"ev-5","event_time":1700000000},{"event_name":"Lead","event_id":"ev-6","event_time":1700000001}"#;
    assert_eq!(store.append_batch(1234567890123456, payload, Reason::MetaRejected, Some(&meta), 1_700_000_100).unwrap(), 2);
    drop(store);

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/capig.toml");
    let set = format!("spool.dir={}", spool.display());
    let run = capig(&["deadletters", "list", "--config", example, "--set", &set], b"");
    assert_eq!(run.status, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].contains("meta_rejected") && lines[0].contains("100/2804003") && lines[0].contains("AbCdEf"), "{}", lines[0]);
    assert!(lines.iter().any(|l| l.contains("ev-5")) && lines.iter().any(|l| l.contains("ev-6")));

    let run = capig(&["deadletters", "list", "--config", example, "--set", &set, "--json", "--pixel", "42"], b"");
    assert_eq!((run.status, run.stdout.as_str()), (0, ""), "another pixel has none");
    let _ = std::fs::remove_dir_all(&spool);
}
