//! Any value for any `user_data` field: never a panic; a hash is always a valid CAPI value.
#![no_main]

use capig::event::normalize::{hash, is_hashed_value, UserField};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let field = UserField::ALL[selector as usize % UserField::ALL.len()];
    let Ok(value) = std::str::from_utf8(rest) else { return };
    let mut scratch = String::new();
    if let Ok(Some(h)) = hash(field, value, &mut scratch) {
        assert!(is_hashed_value(h.as_str()), "{field:?} produced {:?}", h.as_str());
    }
});
