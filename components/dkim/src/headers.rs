//! Which header fields a signature covers (RFC 6376 section 5.4).
//!
//! Three groups:
//! - [`ALWAYS_OVERSIGN`]: what a reader sees as the message's author, audience, topic and
//!   time. Every instance is signed plus one more `h=` entry than there are instances, so
//!   one can neither be added later nor, when the author left it out, inserted afterwards
//!   (the extra entry signs "no further field", section 5.4.2).
//! - [`OVERSIGN_IF_PRESENT`]: fields RFC 5322 section 3.6 and RFC 2045 allow once. When
//!   present they are oversigned too, because a second copy makes verifier and mail reader
//!   disagree about which one counts (section 8.15); when absent they stay unsigned, so a
//!   mailing list may still add its `List-Id` or `List-Unsubscribe` without breaking us.
//! - [`SIGN_IF_PRESENT`]: fields that may repeat or that intermediaries legitimately add
//!   (`Resent-*`, list fields other than the above); signed when present, nothing more.
//!
//! Not signed: trace and transport fields (`Received`, `Return-Path`, `Delivered-To`),
//! other DKIM/ARC signatures and `Authentication-Results`, which hops add or rewrite by
//! design (section 5.4.1 advises against signing them).

/// Signed with one extra `h=` entry even when absent.
pub const ALWAYS_OVERSIGN: &[&str] = &["From", "To", "Cc", "Subject", "Date", "Reply-To"];

/// Single-instance fields: signed and oversigned when present.
pub const OVERSIGN_IF_PRESENT: &[&str] = &[
    "Sender",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "List-Id",
    // RFC 8058 section 4: one-click unsubscribe requires both to be signed.
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Signed when present.
pub const SIGN_IF_PRESENT: &[&str] = &[
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "List-Help",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Autocrypt",
    "OpenPGP",
];

/// The `h=` request for one message: each listed field that is present once, each
/// oversigned field once more. mail-auth signs every instance of a requested name and adds
/// a "no such field" entry for each request it cannot match, which turns the second
/// request into the oversigning entry.
pub fn signed_header_list(message: &[u8]) -> Vec<&'static str> {
    let present = header_names(message);
    let has = |name: &str| {
        present
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut out = Vec::new();
    for &name in ALWAYS_OVERSIGN {
        if has(name) {
            out.push(name);
        }
        out.push(name);
    }
    for &name in OVERSIGN_IF_PRESENT {
        if has(name) {
            out.push(name);
            out.push(name);
        }
    }
    for &name in SIGN_IF_PRESENT {
        if has(name) {
            out.push(name);
        }
    }
    out
}

/// Whether the header section has a `From` field (RFC 6376 section 5.4: it must be signed).
pub fn has_from(message: &[u8]) -> bool {
    header_names(message)
        .iter()
        .any(|name| name.eq_ignore_ascii_case(b"From"))
}

/// Names of the header fields, in order, as mail-auth matches them: the bytes before the
/// colon. Continuation lines (starting with WSP, RFC 5322 section 2.2.3) are skipped; the
/// section ends at the first empty line.
fn header_names(message: &[u8]) -> Vec<&[u8]> {
    let mut names = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            names.push(&line[..colon]);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversigns_present_and_absent_fields_as_listed() {
        let message = b"From: a@example.com\r\nTo: b@example.org,\r\n c@example.org\r\n\
            Subject: hi\r\nMessage-ID: <1@example.com>\r\nList-Post: <mailto:l@example.com>\r\n\
            Received: from x\r\n\r\nFrom: not a header\r\n";
        let list = signed_header_list(message);
        assert_eq!(
            list,
            [
                "From",
                "From",
                "To",
                "To",
                "Cc",
                "Subject",
                "Subject",
                "Date",
                "Reply-To",
                "Message-ID",
                "Message-ID",
                "List-Post"
            ]
        );
    }

    #[test]
    fn finds_from_only_in_the_header_section() {
        assert!(has_from(b"Subject: x\r\nfrom: a@b\r\n\r\nbody"));
        assert!(!has_from(
            b"Subject: x\r\n From: folded\r\n\r\nFrom: in body\r\n"
        ));
        assert!(!has_from(b""));
    }
}
