//! The webhook URL policy on arbitrary text (`pilot_core::fuzzing::webhook_url`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_core::fuzzing::webhook_url(data));
