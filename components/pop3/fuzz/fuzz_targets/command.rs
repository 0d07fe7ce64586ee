//! Fuzzes the POP3 command parser (and the SASL response decoder behind AUTH): no input may
//! panic, and every parsed command must re-parse identically from its canonical line.
//! Run with `cargo +nightly fuzz run command` in components/pop3.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| postbay_pop3::fuzzing::command_lines(data));
