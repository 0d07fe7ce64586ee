//! What the MTA is told at the end of a message: a verdict turned into milter replies
//! (no I/O). Rspamd's proxy worker answers the same way: reject and soft reject as an SMTP
//! reply code, every other action as header changes on an accepted message.

use miltr_common::actions::{Continue, Replycode};
use miltr_common::modifications::headers::{ChangeHeader, InsertHeader};
use miltr_common::modifications::ModificationResponse;

use crate::engine::{Action, Verdict};

/// The reply to SMFIC_BODYEOB. `headers` are the message's header fields as the MTA sent
/// them (name, value), to find how many occurrences a removal must clear; `leading_space`:
/// SMFIP_HDR_LEADSPC was agreed, so the MTA takes added values verbatim (space included).
pub fn end_of_message(
    verdict: &Verdict,
    headers: &[(String, String)],
    leading_space: bool,
) -> ModificationResponse {
    let text = verdict.smtp_message.as_deref().unwrap_or("Message refused");
    match verdict.action {
        // RFC 3463 §3.8: 5.7.1 "delivery not authorized, message refused"; 4.7.1 its
        // temporary form, which greylisting uses.
        Action::Reject => refuse([5, 5, 0], [5, 7, 1], text),
        Action::SoftReject | Action::Greylist => refuse([4, 5, 1], [4, 7, 1], text),
        Action::NoAction | Action::AddHeader | Action::RewriteSubject => {
            let mut response = ModificationResponse::builder();
            for name in &verdict.remove_headers {
                let count = headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .count();
                // SMFIR_CHGHEADER with an empty value deletes the index-th occurrence (1-based);
                // from the last one down, so earlier indexes stay where they were.
                for index in (1..=count).rev() {
                    response.push(ChangeHeader::new(index as u32, name.as_bytes(), b""));
                }
            }
            // "rewrite subject": the first Subject is replaced (index 1), or one is added when
            // the message has none; the verdict's value is encoded already.
            if let Some(subject) = &verdict.subject {
                let value = milter_value(subject, leading_space);
                let has_subject = headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("Subject"));
                if has_subject {
                    response.push(ChangeHeader::new(1, b"Subject", value.as_bytes()));
                } else {
                    response.push(InsertHeader::new(
                        verdict.add_headers.len() as u32,
                        b"Subject",
                        value.as_bytes(),
                    ));
                }
            }
            // SMFIR_INSHEADER at 0, 1, 2, ...: on top of the message in the verdict's order,
            // where Authentication-Results belongs (RFC 8601 §5).
            for (index, (name, value)) in verdict.add_headers.iter().enumerate() {
                let value = milter_value(value, leading_space);
                response.push(InsertHeader::new(
                    index as u32,
                    name.as_bytes(),
                    value.as_bytes(),
                ));
            }
            response.build(Continue)
        }
    }
}

/// A header value as the milter protocol carries it: folded lines joined by a bare LF
/// (the MTA writes its own line ends; a CR would be doubled).
fn milter_value(value: &str, leading_space: bool) -> String {
    let value = value.replace("\r\n", "\n");
    if leading_space {
        format!(" {value}")
    } else {
        value
    }
}

/// `code` and `enhanced` digit by digit (miltr writes `550 5.7.1 text`).
fn refuse(code: [u8; 3], enhanced: [u16; 3], text: &str) -> ModificationResponse {
    // One line: a CR or LF from a check's text must not split the SMTP reply.
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    ModificationResponse::builder().build(Replycode::new(code, enhanced, &line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use miltr_common::actions::Action as MilterAction;
    use miltr_common::encoding::Writable;
    use miltr_common::modifications::ModificationAction;

    fn verdict(action: Action) -> Verdict {
        Verdict {
            action,
            score: 0.0,
            required_score: 15.0,
            symbols: Vec::new(),
            smtp_message: None,
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
            message_id: None,
            subject: None,
        }
    }

    #[test]
    fn reject_and_soft_reject_are_reply_codes() {
        let mut v = verdict(Action::Reject);
        v.smtp_message = Some("Gtube pattern\r\nX".into());
        let r = end_of_message(&v, &[], false);
        match r.final_action() {
            MilterAction::Replycode(code) => {
                assert_eq!(code.rcode().code(), [5, 5, 0]);
                assert_eq!(code.xcode().as_ref().map(|x| x.code()), Some([5, 7, 1]));
                assert_eq!(code.message(), "Gtube pattern  X");
                let mut wire = bytes::BytesMut::new();
                code.write(&mut wire);
                assert_eq!(&wire[..], b"550 5.7.1 Gtube pattern  X\0");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.modifications().is_empty());
        for action in [Action::SoftReject, Action::Greylist] {
            match end_of_message(&verdict(action), &[], false).final_action() {
                MilterAction::Replycode(code) => {
                    let mut wire = bytes::BytesMut::new();
                    code.write(&mut wire);
                    assert!(wire.starts_with(b"451 4.7.1 "), "{wire:?}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn accepted_messages_get_header_changes_in_order() {
        let mut v = verdict(Action::AddHeader);
        v.add_headers = vec![
            ("Authentication-Results".into(), "mx;\r\n\tspf=pass".into()),
            ("X-Spam".into(), "Yes".into()),
        ];
        v.remove_headers = vec!["Authentication-Results".into()];
        let headers = vec![
            (
                "authentication-results".to_string(),
                " mx; forged".to_string(),
            ),
            ("Subject".to_string(), " hi".to_string()),
            (
                "Authentication-Results".to_string(),
                " mx; forged too".to_string(),
            ),
        ];
        let r = end_of_message(&v, &headers, true);
        assert!(matches!(r.final_action(), MilterAction::Continue(_)));
        let mods = r.modifications();
        assert_eq!(mods.len(), 4);
        match (&mods[0], &mods[1]) {
            (ModificationAction::ChangeHeader(a), ModificationAction::ChangeHeader(b)) => {
                assert_eq!((a.index(), a.value().as_ref()), (2, ""));
                assert_eq!((b.index(), b.value().as_ref()), (1, ""));
            }
            other => panic!("{other:?}"),
        }
        match (&mods[2], &mods[3]) {
            (ModificationAction::InsertHeader(a), ModificationAction::InsertHeader(b)) => {
                assert_eq!(
                    (a.index(), a.name().as_ref()),
                    (0, "Authentication-Results")
                );
                assert_eq!(a.value(), " mx;\n\tspf=pass");
                assert_eq!((b.index(), b.name().as_ref()), (1, "X-Spam"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rewritten_subject_replaces_the_first_one_encoded() {
        let mut v = verdict(Action::RewriteSubject);
        v.subject = Some(postbay_mime::encode_text("*** SPAM *** Grüße"));
        let headers = vec![(
            "Subject".to_string(),
            " Gr=?utf-8?q?=C3=BC=C3=9Fe?=".to_string(),
        )];
        let r = end_of_message(&v, &headers, true);
        assert!(matches!(r.final_action(), MilterAction::Continue(_)));
        match r.modifications() {
            [ModificationAction::ChangeHeader(c)] => {
                assert_eq!((c.index(), c.name().as_ref()), (1, "Subject"));
                assert_eq!(
                    c.value(),
                    format!(" {}", postbay_mime::encode_text("*** SPAM *** Grüße"))
                );
                assert!(c.value().is_ascii());
            }
            other => panic!("{other:?}"),
        }
        // No Subject at all: one is added.
        match end_of_message(&v, &[], true).modifications() {
            [ModificationAction::InsertHeader(c)] => assert_eq!(c.name().as_ref(), "Subject"),
            other => panic!("{other:?}"),
        }
    }
}
