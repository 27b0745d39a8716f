//! Every SDK body the capture, auto-register, check-in and poll endpoints parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_core::wire::{parse_poll_events, AutoRegisterRequest, CaptureRequest, CheckinRequest};

fuzz_target!(|data: &[u8]| {
    let _ = CaptureRequest::parse(data);
    let _ = AutoRegisterRequest::parse(data);
    let _ = CheckinRequest::parse(data);
    let _ = parse_poll_events(data);
});
