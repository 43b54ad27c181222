//! Any request body (JSON, form, multipart) through the simulator's decoding and Meta's
//! validation: never a panic, only Graph errors.
#![no_main]

use capig::sim::body::parse_request;
use capig::sim::validate::validate_events;
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 4] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "text/plain",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = TYPES[selector as usize % TYPES.len()];
    if let Ok(request) = parse_request(Some(content_type), Some("access_token=t"), body) {
        let _ = validate_events(request, 1_700_000_000);
    }
});
