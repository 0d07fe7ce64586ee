//! What a message submitted by a logged-in user gets before it is queued (RFC 6409 §8):
//! a `Date` and a `Message-ID` when the client left them out, and no `Bcc` field, whose
//! recipients are in the envelope and must not be shown to the others (RFC 5322 §3.6.3).
//! Also reads the `From:` addresses, which the sender rules check against the login.
//!
//! Pure functions on the message bytes, tested without a socket.

use crate::inbound::received::rfc5322_date;

/// The message after the fixes, and what the sender rules need from its header.
#[derive(Debug, PartialEq, Eq)]
pub struct Prepared {
    pub message: Vec<u8>,
    /// Every address in `From:` (RFC 5322 §3.6.2 allows several), lowercased.
    pub from: Vec<String>,
    /// `From:` fields in the header; exactly one is valid (RFC 5322 §3.6).
    pub from_fields: usize,
}

/// One header field: its name and the whole field (continuation lines and CRLF included).
struct Field<'a> {
    name: &'a [u8],
    raw: &'a [u8],
}

/// Splits the header section into fields; returns them and where the body starts (after the
/// blank line, or the end of the message if there is none).
fn fields(message: &[u8]) -> (Vec<Field<'_>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let rest = &message[pos..];
        if rest.starts_with(b"\r\n") {
            return (out, pos + 2);
        }
        // A field runs to the first line end not followed by white space (RFC 5322 §2.2.3).
        let mut end = pos;
        loop {
            match message[end..].iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    end += nl + 1;
                    if !matches!(message.get(end), Some(b' ' | b'\t')) {
                        break;
                    }
                }
                None => {
                    end = message.len();
                    break;
                }
            }
        }
        let raw = &message[pos..end];
        let name = raw
            .iter()
            .position(|&b| b == b':')
            .map_or(&raw[..0], |colon| trim(&raw[..colon]));
        out.push(Field { name, raw });
        pos = end;
    }
    (out, message.len())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(s), Some(e)) => &bytes[s..=e],
        _ => &bytes[..0],
    }
}

/// Applies the submission fixes. `id` makes the Message-ID unique (the queue id), `hostname`
/// is its right-hand side, `now` the Date.
pub fn prepare(message: &[u8], hostname: &str, id: &str, now: i64) -> Prepared {
    let (header, body_start) = fields(message);
    let is = |f: &Field<'_>, name: &str| f.name.eq_ignore_ascii_case(name.as_bytes());
    // A Date or Message-ID with nothing in it is as good as none: replaced, not kept.
    let empty = |f: &Field<'_>| trim(&f.raw[f.name.len()..]) == b":";
    let useless = |f: &Field<'_>| (is(f, "Date") || is(f, "Message-ID")) && empty(f);
    let has_date = header.iter().any(|f| is(f, "Date") && !empty(f));
    let has_message_id = header.iter().any(|f| is(f, "Message-ID") && !empty(f));
    let from_fields = header.iter().filter(|f| is(f, "From")).count();

    let mut out = Vec::with_capacity(message.len() + 128);
    for field in header.iter().filter(|f| !is(f, "Bcc") && !useless(f)) {
        out.extend_from_slice(field.raw);
        if !field.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if !has_date {
        out.extend_from_slice(format!("Date: {}\r\n", rfc5322_date(now)).as_bytes());
    }
    if !has_message_id {
        out.extend_from_slice(format!("Message-ID: <{id}@{hostname}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if body_start < message.len() {
        out.extend_from_slice(&message[body_start..]);
    }

    let from = header_from(&out);
    Prepared {
        message: out,
        from,
        from_fields,
    }
}

/// The addresses of every `From:` field, as mail-parser reads them (groups, comments,
/// encoded display names and all). All fields count: a second one is refused anyway, but
/// its addresses must never escape the check.
fn header_from(message: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(message) else {
        return Vec::new();
    };
    parsed
        .headers()
        .iter()
        .filter(|h| h.name == mail_parser::HeaderName::From)
        .filter_map(|h| h.value.as_address())
        .flat_map(|from| {
            from.iter()
                .filter_map(|a| a.address())
                .map(str::to_lowercase)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_633_600; // Tue, 2 Dec 2025 00:00:00 +0000

    fn text(p: &Prepared) -> String {
        String::from_utf8(p.message.clone()).unwrap()
    }

    #[test]
    fn missing_date_and_message_id_are_added() {
        let p = prepare(
            b"From: Alice <alice@example.test>\r\nSubject: hi\r\n\r\nbody\r\n",
            "mx.example.test",
            "01ABC",
            NOW,
        );
        assert_eq!(
            text(&p),
            "From: Alice <alice@example.test>\r\nSubject: hi\r\n\
             Date: Tue, 2 Dec 2025 00:00:00 +0000\r\n\
             Message-ID: <01ABC@mx.example.test>\r\n\r\nbody\r\n"
        );
        assert_eq!(p.from, ["alice@example.test"]);
        assert_eq!(p.from_fields, 1);
    }

    #[test]
    fn present_date_and_message_id_are_kept_and_bcc_goes_with_its_folded_lines() {
        let input = b"Date: Mon, 1 Dec 2025 10:00:00 +0100\r\nmessage-id: <x@y>\r\n\
                      From: alice@example.test\r\nBcc: secret@example.test,\r\n hidden@example.test\r\n\
                      To: bob@example.test\r\n\r\nBcc: in the body stays\r\n";
        let p = prepare(input, "h", "id", NOW);
        assert_eq!(
            text(&p),
            "Date: Mon, 1 Dec 2025 10:00:00 +0100\r\nmessage-id: <x@y>\r\n\
             From: alice@example.test\r\nTo: bob@example.test\r\n\r\nBcc: in the body stays\r\n"
        );
    }

    #[test]
    fn empty_date_and_message_id_are_replaced() {
        let p = prepare(
            b"From: a@example.test\r\nDate:\r\nMessage-ID: \r\n\r\nx\r\n",
            "h",
            "id",
            NOW,
        );
        assert_eq!(
            text(&p),
            "From: a@example.test\r\nDate: Tue, 2 Dec 2025 00:00:00 +0000\r\n\
             Message-ID: <id@h>\r\n\r\nx\r\n"
        );
    }

    #[test]
    fn from_addresses_are_read_like_a_mail_reader_would() {
        let cases: &[(&[u8], &[&str], usize)] = &[
            (
                b"From: \"Doe, J\" <J.Doe@Example.Test>\r\n\r\n",
                &["j.doe@example.test"],
                1,
            ),
            (
                b"From: =?utf-8?q?Al=C3=AFce?= <alice@example.test>\r\n\r\n",
                &["alice@example.test"],
                1,
            ),
            (
                b"From: a@example.test, b@example.test\r\n\r\n",
                &["a@example.test", "b@example.test"],
                1,
            ),
            (
                b"From: (comment) alice@example.test\r\n\r\n",
                &["alice@example.test"],
                1,
            ),
            (
                b"From: alice@example.test\r\nFrom: mallory@evil.test\r\n\r\n",
                &["alice@example.test", "mallory@evil.test"],
                2,
            ),
            (b"Subject: no from\r\n\r\n", &[], 0),
            (b"From: undisclosed:;\r\n\r\n", &[], 1),
        ];
        for (input, want, fields) in cases {
            let p = prepare(input, "h", "id", NOW);
            assert_eq!(&p.from, want, "{}", String::from_utf8_lossy(input));
            assert_eq!(p.from_fields, *fields, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_message_without_body_or_final_line_end_gets_a_well_formed_header() {
        let p = prepare(b"From: alice@example.test", "h", "id", NOW);
        assert!(text(&p).starts_with("From: alice@example.test\r\nDate: "));
        assert!(text(&p).ends_with(">\r\n\r\n"));
        assert_eq!(p.from, ["alice@example.test"]);
    }
}
