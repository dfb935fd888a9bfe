//! A request parsed from an arbitrary frame body (`pilot_ipc::fuzzing::request`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_ipc::fuzzing::request(data));
