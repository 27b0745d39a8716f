//! Fuzzes the stack-trace parser: any UTF-8 text must parse without panicking, and every
//! frame must satisfy the documented invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::stacktrace::{is_library_frame, parse, MAX_FRAMES};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let frames = parse(s);
        assert!(frames.len() <= MAX_FRAMES);
        for f in &frames {
            assert!(!f.file.is_empty() && f.line > 0, "{f:?}");
            let _ = is_library_frame(f);
        }
    }
});
