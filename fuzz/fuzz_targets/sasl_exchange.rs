//! libFuzzer target: a sequence of length-prefixed request frames through one
//! connection's SASL state machine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = agentlog_fuzz::sasl_exchange(data);
});
