//! Arbitrary bytes in arbitrary chunks through the IPC frame codec (`pilot_ipc::fuzzing::frames`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pilot_ipc::fuzzing::frames(data));
