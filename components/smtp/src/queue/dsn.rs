//! Delivery status notifications (RFC 3464) and the DSN extension's parameters (RFC 3461).
//! When a message accepted with 250 cannot be delivered to some recipient, its sender gets a
//! report instead of silence; with NOTIFY the sender may also ask to hear of success and of
//! delays, or of nothing. Reports go out with the null reverse path, so a report is never
//! answered by another (RFC 5321 §4.5.5).

use serde::{Deserialize, Serialize};

use crate::inbound::received::rfc5322_date;

/// RFC 3461 §4.1 NOTIFY: which outcomes the sender wants to hear of (all false: NEVER).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notify {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub failure: bool,
    #[serde(default)]
    pub delay: bool,
}

impl Notify {
    /// From smtp-proto's RCPT flags; `None` when the client gave no NOTIFY.
    pub fn from_flags(flags: u64) -> Option<Notify> {
        use smtp_proto::{
            RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
        };
        let any = RCPT_NOTIFY_DELAY | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_NEVER | RCPT_NOTIFY_SUCCESS;
        (flags & any != 0).then_some(Notify {
            success: flags & RCPT_NOTIFY_SUCCESS != 0,
            failure: flags & RCPT_NOTIFY_FAILURE != 0,
            delay: flags & RCPT_NOTIFY_DELAY != 0,
        })
    }

    /// The parameter's value as sent to the next hop.
    pub fn keyword(&self) -> String {
        let mut parts = Vec::new();
        for (on, name) in [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ] {
            if on {
                parts.push(name);
            }
        }
        if parts.is_empty() {
            "NEVER".into()
        } else {
            parts.join(",")
        }
    }
}

/// Whether a recipient's sender hears of `action` ("failed", "delayed", "delivered",
/// "relayed"). Without NOTIFY: failures and delays (RFC 3461 §4.1 leaves the default to
/// the MTA; Postfix does the same).
pub fn wanted(notify: Option<Notify>, action: &str) -> bool {
    let n = notify.unwrap_or(Notify {
        success: false,
        failure: true,
        delay: true,
    });
    match action {
        "failed" => n.failure,
        "delayed" => n.delay,
        _ => n.success,
    }
}

/// RFC 3461 §4.3 RET.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

impl Ret {
    pub fn from_flags(flags: u64) -> Option<Ret> {
        if flags & smtp_proto::MAIL_RET_FULL != 0 {
            Some(Ret::Full)
        } else if flags & smtp_proto::MAIL_RET_HDRS != 0 {
            Some(Ret::Hdrs)
        } else {
            None
        }
    }
}

/// xtext (RFC 3461 §4): `+XX` for `+`, `=`, and anything outside `!`..`~`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// What a report says happened to one recipient.
pub struct Entry<'a> {
    /// The address the sender used (RCPT TO).
    pub recipient: &'a str,
    /// ORCPT's address, when the client gave one.
    pub orcpt: Option<&'a str>,
    /// `failed`, `delayed`, `delivered` or `relayed` (RFC 3464 §2.3.3).
    pub action: &'static str,
    pub code: u16,
    pub text: &'a str,
    /// The remote server that gave the answer (`host[ip]`); `None` when the answer is ours
    /// (null MX, lifetime expired) or a local mailbox's.
    pub remote_mta: Option<&'a str>,
}

/// The message a report is about.
pub struct About<'a> {
    pub queue_id: &'a str,
    pub sender: &'a str,
    pub arrival: i64,
    pub envid: Option<&'a str>,
    /// Return the whole message (RET=FULL, failures only) rather than its header section.
    pub full: bool,
    pub original: &'a [u8],
}

/// Builds the report for one kind of outcome (every entry has the same action).
pub fn report(hostname: &str, about: &About<'_>, now: i64, entries: &[Entry<'_>]) -> Vec<u8> {
    let queue_id = about.queue_id;
    let action = entries.first().map(|e| e.action).unwrap_or("failed");
    let (subject, intro, suffix) = match action {
        "failed" => (
            "Undelivered Mail Returned to Sender",
            "Your message could not be delivered to one or more recipients. \
             It has been removed from the queue.",
            "bounce",
        ),
        "delayed" => (
            "Delayed Mail (still being retried)",
            "Your message could not be delivered yet to one or more recipients. \
             Delivery is being retried; you will hear again only if it fails for good.",
            "delay",
        ),
        _ => (
            "Successful Mail Delivery Report",
            "Your message was delivered to the recipients below (delivered: into the \
             mailbox; relayed: to a server that does not report further).",
            "success",
        ),
    };
    let boundary = format!("{queue_id}/{hostname}/{suffix}");
    let mut text = format!("This is the mail system at host {hostname}.\r\n\r\n{intro}\r\n\r\n");
    for e in entries {
        text.push_str(&format!(
            "<{}>: {} {} {}\r\n",
            e.recipient,
            e.action,
            e.code,
            sanitize(e.text)
        ));
    }
    let mut status = String::new();
    if let Some(envid) = about.envid {
        // RFC 3464 §2.2.1: ENVID as the client gave it, in xtext.
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", xtext(envid)));
    }
    status.push_str(&format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Postbay-Queue-ID: {queue_id}\r\nArrival-Date: {}\r\n",
        rfc5322_date(about.arrival)
    ));
    for e in entries {
        status.push_str("\r\n");
        if let Some(orcpt) = e.orcpt {
            // RFC 3464 §2.3.1.
            status.push_str(&format!(
                "Original-Recipient: rfc822; {}\r\n",
                sanitize(orcpt.trim())
            ));
        }
        status.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\nAction: {}\r\nStatus: {}\r\n",
            e.recipient,
            e.action,
            enhanced_status(e.code, e.text),
        ));
        // RFC 3464 §2.3.5: the MTA that gave the answer; §2.3.6: its own words.
        if let Some(mta) = e.remote_mta {
            let host = mta.split('[').next().unwrap_or(mta);
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", sanitize(host)));
        }
        status.push_str(&format!(
            "Diagnostic-Code: smtp; {} {}\r\n",
            e.code,
            sanitize(e.text)
        ));
    }
    let original = about.original;
    let full = about.full && action == "failed";
    let returned: &[u8] = if full {
        original
    } else {
        let end = find(original, b"\r\n\r\n")
            .map(|p| p + 2)
            .unwrap_or(original.len());
        &original[..end]
    };
    let returned_type = if full {
        "message/rfc822"
    } else {
        "text/rfc822-headers"
    };
    let mut out = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {}\r\n\
         Message-ID: <{queue_id}.{suffix}.{now}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\r\n{status}\r\n\
         --{boundary}\r\n\
         Content-Type: {returned_type}\r\n\r\n",
        rfc5322_date(now),
        sender = about.sender,
    )
    .into_bytes();
    out.extend_from_slice(returned);
    if !returned.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// The enhanced code from a reply text like `5.2.2 Mailbox full`, else a generic one.
fn enhanced_status(code: u16, text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    let parts: Vec<&str> = first.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        first.to_string()
    } else {
        format!("{}.0.0", code / 100)
    }
}

fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about<'a>(original: &'a [u8], full: bool, envid: Option<&'a str>) -> About<'a> {
        About {
            queue_id: "Q1",
            sender: "a@b",
            arrival: 0,
            envid,
            full,
            original,
        }
    }

    fn failed<'a>(recipient: &'a str, code: u16, text: &'a str) -> Entry<'a> {
        Entry {
            recipient,
            orcpt: None,
            action: "failed",
            code,
            text,
            remote_mta: None,
        }
    }

    #[test]
    fn bounce_names_each_failure_and_quotes_the_headers() {
        let original = b"Subject: hello\r\nFrom: a@b\r\n\r\nsecret body\r\n";
        let entries = [failed(
            "full@example.test",
            552,
            "5.2.2 <full@example.test> Mailbox is full",
        )];
        let msg = String::from_utf8(report(
            "mx.example.test",
            &about(original, false, None),
            60,
            &entries,
        ))
        .unwrap();
        assert!(msg.contains("To: <a@b>\r\n"));
        assert!(msg.contains(
            "Final-Recipient: rfc822; full@example.test\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        ));
        assert!(msg
            .contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nFrom: a@b\r\n"));
        assert!(!msg.contains("secret body"), "only headers are returned");
        assert!(msg.ends_with("--Q1/mx.example.test/bounce--\r\n"));
        assert_eq!(enhanced_status(550, "User unknown"), "5.0.0");
        assert!(!msg.contains("Remote-MTA") && !msg.contains("Original-Envelope-Id"));
    }

    #[test]
    fn remote_failures_name_the_remote_mta() {
        let mut e = failed("nobody@remote.test", 550, "5.1.1 no such user");
        e.remote_mta = Some("mx.remote.test[192.0.2.7]");
        let msg =
            String::from_utf8(report("mx", &about(b"S: x\r\n\r\n", false, None), 0, &[e])).unwrap();
        assert!(msg.contains(
            "Status: 5.1.1\r\nRemote-MTA: dns; mx.remote.test\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        ), "{msg}");
    }

    #[test]
    fn ret_full_envid_and_orcpt_per_rfc_3461() {
        let original = b"Subject: hello\r\n\r\nthe body\r\n";
        let mut e = failed("x@remote.test", 550, "5.1.1 no");
        e.orcpt = Some("list+x@example.test");
        let msg = String::from_utf8(report(
            "mx",
            &about(original, true, Some("ab=c+d")),
            0,
            &[e],
        ))
        .unwrap();
        assert!(
            msg.contains("Original-Envelope-Id: ab+3Dc+2Bd\r\n"),
            "{msg}"
        );
        assert!(msg.contains(
            "Original-Recipient: rfc822; list+x@example.test\r\nFinal-Recipient: rfc822; x@remote.test\r\n"
        ));
        assert!(msg
            .contains("Content-Type: message/rfc822\r\n\r\nSubject: hello\r\n\r\nthe body\r\n--"));
        // Success reports never return the body, whatever RET says (RFC 3461 §4.3).
        let ok = Entry {
            action: "delivered",
            code: 250,
            text: "2.0.0 Ok",
            ..failed("y@example.test", 250, "")
        };
        let msg = String::from_utf8(report("mx", &about(original, true, None), 0, &[ok])).unwrap();
        assert!(msg.contains("Subject: Successful Mail Delivery Report"));
        assert!(msg.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        assert!(!msg.contains("the body"));
    }

    #[test]
    fn notify_keywords_and_defaults() {
        use smtp_proto::{RCPT_NOTIFY_DELAY, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS};
        assert_eq!(Notify::from_flags(0), None);
        let never = Notify::from_flags(RCPT_NOTIFY_NEVER).unwrap();
        assert_eq!(never.keyword(), "NEVER");
        let n = Notify::from_flags(RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_DELAY).unwrap();
        assert_eq!(n.keyword(), "SUCCESS,DELAY");
        assert!(wanted(None, "failed") && wanted(None, "delayed") && !wanted(None, "delivered"));
        assert!(!wanted(Some(never), "failed"));
        assert!(wanted(Some(n), "relayed") && !wanted(Some(n), "failed"));
        assert_eq!(xtext("a b+c=é"), "a+20b+2Bc+3D+C3+A9");
    }
}
