//! Any configuration text: never a panic, only located problems.
#![no_main]

use std::path::Path;

use capig::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::from_toml(text, Path::new("/nonexistent/fuzz.toml"), &[]) {
        assert!(!e.problems.is_empty());
    }
});
