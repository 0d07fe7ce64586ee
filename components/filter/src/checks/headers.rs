//! Header sanity (RFC 5322 §3.6): the fields every message must or should carry. Small
//! scores: each is a hint, not a verdict.

use futures::future::BoxFuture;
use mail_parser::HeaderName;

use super::{Check, Outcome, Scan};

pub struct HeaderSanity;

impl Check for HeaderSanity {
    fn name(&self) -> &'static str {
        "headers"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let Some(message) = scan.message else {
                out.add("MIME_UNPARSABLE", 2.0, "Not a readable message", vec![]);
                return out;
            };
            let count = |name: &str| {
                message
                    .headers_raw()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .count()
            };
            // RFC 5322 §3.6: Date and From are required, Message-ID should be present.
            if count("Date") == 0 {
                out.add("MISSING_DATE", 1.0, "Date header is missing", vec![]);
            }
            if count("Message-ID") == 0 {
                out.add("MISSING_MID", 2.5, "Message-ID header is missing", vec![]);
            }
            if count("Subject") == 0 {
                out.add("MISSING_SUBJECT", 2.0, "Subject header is missing", vec![]);
            }
            match count("From") {
                0 => out.add("MISSING_FROM", 2.0, "From header is missing", vec![]),
                1 => {}
                _ => out.add("MULTIPLE_FROM", 8.0, "More than one From header", vec![]),
            }
            if count("From") > 0 && !from_is_valid(message) {
                let raw = message
                    .header_raw(HeaderName::From)
                    .map(|v| v.trim().chars().take(80).collect())
                    .unwrap_or_default();
                out.add(
                    "FROM_INVALID",
                    2.0,
                    "From header is not a valid address",
                    vec![raw],
                );
            }
            out
        })
    }
}

/// Every From address has a local part and a domain with a dot-free-or-dotted label set.
fn from_is_valid(message: &mail_parser::Message<'_>) -> bool {
    let Some(from) = message.from() else {
        return false;
    };
    let mut any = false;
    for addr in from.iter() {
        any = true;
        let Some(email) = addr.address() else {
            return false;
        };
        let Some((local, domain)) = email.rsplit_once('@') else {
            return false;
        };
        if local.is_empty()
            || domain.is_empty()
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains(char::is_whitespace)
        {
            return false;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture;
    use crate::protocol::Envelope;

    const GOOD: &str = "From: Alice <alice@example.org>\nTo: bob@example.test\nSubject: hi\nDate: Wed, 2 Dec 2026 10:00:00 +0000\nMessage-ID: <1@example.org>\n\nhello\n";

    #[test]
    fn fixture_cases() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (GOOD.to_string(), vec![]),
            (
                GOOD.replace("Date: Wed, 2 Dec 2026 10:00:00 +0000\n", ""),
                vec!["MISSING_DATE"],
            ),
            (
                GOOD.replace("Message-ID: <1@example.org>\n", ""),
                vec!["MISSING_MID"],
            ),
            (GOOD.replace("Subject: hi\n", ""), vec!["MISSING_SUBJECT"]),
            (
                GOOD.replace("From: Alice <alice@example.org>\n", ""),
                vec!["MISSING_FROM"],
            ),
            (
                GOOD.replace("From: Alice <alice@example.org>", "From: Alice <alice>"),
                vec!["FROM_INVALID"],
            ),
            (
                GOOD.replace("From: Alice <alice@example.org>", "From: not an address"),
                vec!["FROM_INVALID"],
            ),
            (
                format!("From: mallory@evil.test\n{GOOD}"),
                vec!["MULTIPLE_FROM"],
            ),
        ];
        for (raw, expected) in cases {
            let out = fixture::symbols(&HeaderSanity, &raw, &Envelope::default());
            assert_eq!(fixture::names(&out), expected, "{raw}");
        }
    }
}
