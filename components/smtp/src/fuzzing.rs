//! Entry points for the cargo-fuzz targets in `fuzz/` (and the smoke test below), so the
//! fuzzers reach private parsing code through one small, stable surface.

use smtp_proto::request::receiver::RequestReceiver;

/// Feeds arbitrary bytes to the command receiver and maps every error to a reply, as the
/// session does; must never panic.
pub fn commands(input: &[u8]) {
    let mut receiver = RequestReceiver::default();
    let mut iter = input.iter();
    loop {
        let before = iter.len();
        match receiver.ingest(&mut iter) {
            Ok(request) => {
                if let smtp_proto::Request::Rcpt { to } = request {
                    let _ = crate::session::is_relay_trick_for_fuzzing(&to.address);
                }
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
            Err(e) => {
                let _ = crate::session::protocol_error_reply(&e).to_string();
            }
        }
        if iter.len() == before || iter.len() == 0 {
            break;
        }
    }
}

/// Oracle: normalising, stuffing and decoding gives back the normalised content.
pub fn data_round_trip(input: &[u8]) {
    let _ = crate::receive::decode_data(input);
    let normal = crate::receive::normalize_bare_lf(input.to_vec());
    let wire = crate::lmtp_client::dot_stuff(&normal);
    let (decoded, used) = crate::receive::decode_data(&wire).expect("stuffed content terminates");
    assert_eq!(used, wire.len());
    let mut expected = normal;
    if !expected.is_empty() && !expected.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(decoded, expected);
}

/// Header checks that run on every accepted message.
pub fn content_checks(input: &[u8]) {
    let _ = crate::session::count_received_for_fuzzing(input);
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_entry_points_survive_a_sample_corpus() {
        let samples: &[&[u8]] = &[
            b"EHLO x\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<\"q@r\"@s>\r\nDATA\r\n",
            b"RCPT TO:<@a,@b:c@d>\r\nBDAT 5 LAST\r\nhello",
            b"\r\n.\r\n\n.\n\r.\r..\r\n",
            b"Received: a\r\nreceived: b\r\n\r\nReceived: not a header\r\n",
            &[0xff, 0x00, b'\n', b'.', b'\r'],
        ];
        for s in samples {
            super::commands(s);
            super::data_round_trip(s);
            super::content_checks(s);
        }
    }
}
