//! Everything an SMTP/LMTP client controls, in one target: command lines, DATA content
//! (with the stuffing round trip as an oracle), and the header checks run on content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postbay_smtp::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::commands(data);
    fuzzing::data_round_trip(data);
    fuzzing::content_checks(data);
});
