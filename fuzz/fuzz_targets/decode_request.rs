//! libFuzzer target: arbitrary bytes as a request frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agentlog_fuzz::decode_one(data));
