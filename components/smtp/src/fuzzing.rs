//! Entry points for the cargo-fuzz targets in `fuzz/` (and the smoke test below), so the
//! fuzzers reach private parsing code through one small, stable surface.

use crate::proto::CommandReader;

/// SRS on a RCPT address: reversing never panics, and a forwarded address (whose domain
/// has no `=`) comes back as it was.
fn srs_round_trip(address: &str) {
    let srs = crate::outbound::srs::Srs::new(b"fuzzing-secret-0123", "fwd.test");
    if let Some((local, _)) = address.rsplit_once('@') {
        let _ = srs.reverse(local, 1_796_000_000);
    }
    let forwarded = srs.forward(address, 1_796_000_000);
    if let Some((local, domain)) = address.rsplit_once('@') {
        if !local.is_empty() && !domain.is_empty() && !domain.contains('=') {
            let back_local = forwarded
                .rsplit_once('@')
                .map(|(l, _)| l)
                .unwrap_or_default();
            assert_eq!(
                srs.reverse(back_local, 1_796_000_000).as_deref(),
                Ok(address),
                "SRS round trip of {address:?}"
            );
        }
    }
}

/// An MTA-STS TXT record and policy body from arbitrary bytes: parsing never panics, a
/// parsed policy keeps RFC 8461's bounds, and every MX name in the input is matched.
pub fn mta_sts(input: &[u8]) {
    use crate::outbound::mta_sts;
    let text = String::from_utf8_lossy(input);
    let first = text.lines().next().unwrap_or("");
    if let Some(id) = mta_sts::txt_id(first) {
        assert!(!id.is_empty() && id.len() <= 32, "TXT id {id:?}");
    }
    if let Ok(policy) = mta_sts::parse(&text, "fuzz", 0) {
        assert!(policy.max_age <= 31_557_600, "max_age above a year");
        assert!(policy.mode == mta_sts::Mode::None || !policy.mx.is_empty());
        for line in text.lines() {
            let _ = policy.mx_matches(line);
        }
    }
}

/// Feeds arbitrary bytes to Postbay's own command reader (smtp-proto's receiver behind the
/// line-length limit), in the pieces the first byte chooses (its low bit: SMTP or LMTP mode), and maps every error to a reply
/// as the session does; must never panic or stall.
pub fn commands(input: &[u8]) {
    let Some((&first, input)) = input.split_first() else {
        return;
    };
    let piece = usize::from(first).max(1);
    // An odd first byte reads as the LMTP server does (XTRACE taken off MAIL lines).
    let mut reader = if first % 2 == 1 {
        CommandReader::extracting_mail_param(crate::lmtp::XTRACE)
    } else {
        CommandReader::default()
    };
    let mut buffer = Vec::new();
    for chunk in input.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            let (consumed, parsed) = reader.step(&buffer);
            assert!(
                consumed <= buffer.len(),
                "reader consumed more than it was given"
            );
            buffer.drain(..consumed);
            assert!(
                consumed > 0 || parsed.is_none(),
                "a command or error without consuming input would loop forever"
            );
            match parsed {
                Some(Ok(smtp_proto::Request::Rcpt { to })) => {
                    let _ = crate::inbound::is_relay_trick_for_fuzzing(&to.address);
                    srs_round_trip(&to.address);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = crate::inbound::protocol_error_reply(&e).to_string();
                }
                None if consumed == 0 || buffer.is_empty() => break,
                None => {}
            }
            assert!(
                buffer.len() <= crate::proto::MAX_COMMAND_LINE + piece,
                "unparsed input grew past one line"
            );
        }
    }
}

/// Oracle: normalising, stuffing and decoding gives back the normalised content.
pub fn data_round_trip(input: &[u8]) {
    let _ = crate::proto::decode_data(input);
    let normal = crate::proto::normalize_bare_lf(input.to_vec());
    let wire = crate::proto::dot_stuff(&normal);
    let (decoded, used) = crate::proto::decode_data(&wire).expect("stuffed content terminates");
    assert_eq!(used, wire.len());
    let mut expected = normal;
    if !expected.is_empty() && !expected.ends_with(b"\r\n") {
        expected.extend_from_slice(b"\r\n");
    }
    assert_eq!(decoded, expected);
}

/// Header checks that run on every accepted message.
pub fn content_checks(input: &[u8]) {
    let _ = crate::inbound::count_received_for_fuzzing(input);
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
            super::mta_sts(s);
        }
        super::mta_sts(b"v=STSv1; id=1;\nversion: STSv1\nmode: enforce\nmx: *.x\nmax_age: 9\n");
    }
}
