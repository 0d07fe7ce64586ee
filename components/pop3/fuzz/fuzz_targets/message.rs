//! Fuzzes RETR/TOP encoding: unstuffing gives back exactly the size LIST announces, every
//! line ends in CRLF, and TOP is a prefix of RETR.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| postbay_pop3::fuzzing::message_encoding(data));
