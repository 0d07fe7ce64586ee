//! GTUBE, the Generic Test for Unsolicited Bulk Email (SpamAssassin's test string): a message
//! carrying it is rejected whatever its score, as Rspamd does, so an admin can test the whole
//! path with one message. Rspamd's `YJS*` variant asks for "add header" instead, and `ZJS*`
//! for "rewrite subject" (Rspamd 3.4's test patterns).

use futures::future::BoxFuture;

use super::{Check, Outcome, Scan};
use crate::engine::Action;

const PATTERN_TAIL: &[u8] = b"JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

pub struct Gtube;

/// Which variant the text carries: `X` rejects, `Y` adds a header, `Z` rewrites the subject.
fn find(text: &[u8]) -> Option<Action> {
    let mut best = None;
    let mut from = 0;
    while let Some(at) = find_bytes(&text[from..], PATTERN_TAIL) {
        let at = from + at;
        let action = match at.checked_sub(1).map(|i| text[i]) {
            Some(b'X') => Some(Action::Reject),
            Some(b'Y') => Some(Action::AddHeader),
            Some(b'Z') => Some(Action::RewriteSubject),
            _ => None,
        };
        best = best.max(action);
        from = at + PATTERN_TAIL.len();
    }
    best
}

fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Check for Gtube {
    fn name(&self) -> &'static str {
        "gtube"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut outcome = Outcome::default();
            // The body as sent (7bit, 8bit), then every decoded text part (base64, QP).
            let body_start = find_bytes(scan.raw, b"\r\n\r\n").map_or(0, |i| i + 4);
            let mut found = find(&scan.raw[body_start..]);
            if let Some(message) = scan.message {
                for i in 0..message.text_body_count() + message.html_body_count() {
                    let text = if i < message.text_body_count() {
                        message.body_text(i)
                    } else {
                        message.body_html(i - message.text_body_count())
                    };
                    if let Some(text) = text {
                        found = found.max(find(text.as_bytes()));
                    }
                }
            }
            match found {
                Some(Action::Reject) => {
                    outcome.add(
                        "GTUBE",
                        0.0,
                        "Generic Test for Unsolicited Bulk Email",
                        vec![],
                    );
                    outcome.force = Some((Action::Reject, "Gtube pattern".to_string()));
                }
                Some(Action::RewriteSubject) => {
                    outcome.add(
                        "GTUBE_REWRITE_SUBJECT",
                        0.0,
                        "GTUBE test string for the rewrite subject action",
                        vec![],
                    );
                    outcome.force = Some((Action::RewriteSubject, "Gtube pattern".to_string()));
                }
                Some(action) => {
                    outcome.add(
                        "GTUBE_ADD_HEADER",
                        0.0,
                        "GTUBE test string for the add header action",
                        vec![],
                    );
                    outcome.force = Some((action, "Gtube pattern".to_string()));
                }
                None => {}
            }
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture;
    use crate::protocol::Envelope;

    const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

    /// (message, expected forced action)
    fn cases() -> Vec<(String, Option<Action>)> {
        vec![
            (format!("Subject: t\n\n{GTUBE}\n"), Some(Action::Reject)),
            (
                format!("Subject: t\n\nY{}\n", &GTUBE[1..]),
                Some(Action::AddHeader),
            ),
            (
                format!("Subject: t\n\nZ{}\n", &GTUBE[1..]),
                Some(Action::RewriteSubject),
            ),
            // base64 text part: found after decoding.
            (
                "Subject: t\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nWEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1QtRU1BSUwqQy4zNFg=\n".to_string(),
                Some(Action::Reject),
            ),
            // In a header only: not the body.
            (format!("Subject: {GTUBE}\n\nhello\n"), None),
            ("Subject: t\n\nJS*C4JDBQADN1 only a part\n".to_string(), None),
        ]
    }

    #[test]
    fn fixture_cases() {
        for (raw, expected) in cases() {
            let out = fixture::symbols(&Gtube, &raw, &Envelope::default());
            assert_eq!(out.force.as_ref().map(|f| f.0), expected, "{raw}");
        }
    }
}
