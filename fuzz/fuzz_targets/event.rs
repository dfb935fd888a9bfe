//! Event names and data as `emit` checks them (`pilot_core::fuzzing::event`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_core::fuzzing::event(data));
