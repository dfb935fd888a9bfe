//! config.json from arbitrary file contents (`pilot_core::fuzzing::config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_core::fuzzing::config(data));
