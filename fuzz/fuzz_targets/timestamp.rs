//! `captured_at` in every format any SDK might send.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(ms) = sightline_core::timefmt::parse_timestamp_ms(s) {
            let _ = sightline_core::timefmt::format_ms(ms);
        }
    }
});
