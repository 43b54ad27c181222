//! Any body through the in-place parser and the transform: never a panic, and whatever is
//! accepted is valid JSON.
#![no_main]

use capig::event::policy::{DedupConfig, Policies};
use capig::event::{Context, Parser, Transformer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut body = data.to_vec();
    let mut t = Transformer::new(Policies::allow_all(DedupConfig::default()));
    let ctx = Context { now_ms: 1_700_000_000_000, user_agent: Some("fuzz"), client_ip: Some("::1"), ..Context::default() };
    let mut out = Vec::new();
    let _ = Parser::default().parse(&mut body, |root| {
        let mut one = |v| {
            out.clear();
            if t.transform(v, &ctx, &mut out).is_ok() {
                serde_json::from_slice::<serde_json::Value>(&out).expect("accepted output is JSON");
            }
        };
        match root.elements() {
            Some(events) => events.for_each(&mut one),
            None => one(root),
        }
    });
});
