//! Structurally valid requests through encode, frame, decode (`pilot_ipc::fuzzing::request_round_trip`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_ipc::fuzzing::request_round_trip(data));
