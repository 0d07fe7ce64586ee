//! What a recipient domain controls in outbound TLS policy: its MTA-STS TXT record and
//! policy body (RFC 8461), and the MX names matched against the policy's patterns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postbay_smtp::fuzzing;

fuzz_target!(|data: &[u8]| {
    fuzzing::mta_sts(data);
});
