//! Delivery status notifications (RFC 3464): when a message accepted with 250 cannot be
//! delivered to some recipient, its sender gets a bounce instead of silence. Bounces go
//! out with the null reverse path, so a bounce is never bounced (RFC 5321 §4.5.5).

use crate::inbound::received::rfc5322_date;

/// One recipient that failed for good, with the server's answer.
pub struct Failure<'a> {
    pub recipient: &'a str,
    pub code: u16,
    pub text: &'a str,
    /// The remote server that gave the answer (`host[ip]`); `None` when the answer is ours
    /// (null MX, lifetime expired) or a local mailbox's.
    pub remote_mta: Option<&'a str>,
}

/// Builds the bounce message for `original` (its header section is quoted back).
pub fn bounce(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    arrival: i64,
    now: i64,
    failures: &[Failure<'_>],
    original: &[u8],
) -> Vec<u8> {
    let boundary = format!("{queue_id}/{hostname}");
    let mut text = format!(
        "This is the mail system at host {hostname}.\r\n\r\n\
         Your message could not be delivered to one or more recipients. \
         It has been removed from the queue.\r\n\r\n"
    );
    for f in failures {
        text.push_str(&format!(
            "<{}>: {} {}\r\n",
            f.recipient,
            f.code,
            sanitize(f.text)
        ));
    }
    let mut status = format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Postbay-Queue-ID: {queue_id}\r\nArrival-Date: {}\r\n",
        rfc5322_date(arrival)
    );
    for f in failures {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.recipient,
            enhanced_status(f.code, f.text),
        ));
        // RFC 3464 §2.3.5: the MTA that gave the answer; §2.3.6: its own words.
        if let Some(mta) = f.remote_mta {
            let host = mta.split('[').next().unwrap_or(mta);
            status.push_str(&format!("Remote-MTA: dns; {}\r\n", sanitize(host)));
        }
        status.push_str(&format!(
            "Diagnostic-Code: smtp; {} {}\r\n",
            f.code,
            sanitize(f.text)
        ));
    }
    let headers_end = find(original, b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(original.len());
    let mut out = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {}\r\n\
         Message-ID: <{queue_id}.bounce@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\r\n{status}\r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\r\n",
        rfc5322_date(now)
    )
    .into_bytes();
    out.extend_from_slice(&original[..headers_end]);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
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

    #[test]
    fn bounce_names_each_failure_and_quotes_the_headers() {
        let original = b"Subject: hello\r\nFrom: a@b\r\n\r\nsecret body\r\n";
        let failures = [Failure {
            recipient: "full@example.test",
            code: 552,
            text: "5.2.2 <full@example.test> Mailbox is full",
            remote_mta: None,
        }];
        let msg = String::from_utf8(bounce(
            "mx.example.test",
            "Q1",
            "a@b",
            0,
            60,
            &failures,
            original,
        ))
        .unwrap();
        assert!(msg.contains("To: <a@b>\r\n"));
        assert!(msg.contains(
            "Final-Recipient: rfc822; full@example.test\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        ));
        assert!(msg.contains("Subject: hello\r\nFrom: a@b\r\n"));
        assert!(!msg.contains("secret body"), "only headers are returned");
        assert!(msg.ends_with("--Q1/mx.example.test--\r\n"));
        assert_eq!(enhanced_status(550, "User unknown"), "5.0.0");
        assert!(!msg.contains("Remote-MTA"));
    }

    #[test]
    fn remote_failures_name_the_remote_mta() {
        let failures = [Failure {
            recipient: "nobody@remote.test",
            code: 550,
            text: "5.1.1 no such user",
            remote_mta: Some("mx.remote.test[192.0.2.7]"),
        }];
        let msg =
            String::from_utf8(bounce("mx", "Q2", "a@b", 0, 0, &failures, b"S: x\r\n\r\n")).unwrap();
        assert!(msg.contains(
            "Status: 5.1.1\r\nRemote-MTA: dns; mx.remote.test\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        ), "{msg}");
    }
}
