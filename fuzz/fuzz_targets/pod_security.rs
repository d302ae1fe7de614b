#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff::fuzz_targets::pod_security(data));
