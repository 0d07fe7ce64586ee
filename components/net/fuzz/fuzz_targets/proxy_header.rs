//! Fuzzes the sans-IO PROXY header parser: it must never panic, and its answers
//! must be self-consistent (no over-long consumption, NeedMore always asks for
//! at least one byte, a Done header re-parses identically on its own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postbay_net::proxy::{parse, Parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parse::NeedMore { at_least } => assert!(at_least >= 1),
        Parse::Done { consumed, .. } => {
            assert!(consumed <= data.len());
            assert_eq!(parse(&data[..consumed]), parse(data));
        }
        Parse::Invalid(_) => {}
    }
});
