//! The trace header we prepend to every accepted message (RFC 5321 §4.4) and the date
//! format it needs (RFC 5322 §3.3).

use std::net::IpAddr;

/// What the Received header records about one transaction.
pub struct Trace<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub by_host: &'a str,
    /// `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA`, `SMTP`, `LMTP` (RFC 3848).
    pub protocol: &'a str,
    pub tls: Option<&'a str>,
    pub queue_id: &'a str,
    /// Only named when there is exactly one recipient, so the header does not leak Bcc.
    pub single_recipient: Option<&'a str>,
    pub timestamp: i64,
}

impl Trace<'_> {
    pub fn header(&self) -> Vec<u8> {
        let helo = sanitize(self.helo);
        let mut h = format!(
            "Received: from {helo} ([{}])\r\n\tby {}",
            self.client_ip, self.by_host
        );
        if let Some(tls) = self.tls {
            h.push_str(&format!(" ({})", sanitize(tls)));
        }
        h.push_str(&format!(" with {} id {}", self.protocol, self.queue_id));
        if let Some(rcpt) = self.single_recipient {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
        }
        h.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(self.timestamp)));
        h.into_bytes()
    }
}

/// The Authentication-Results of an authenticated submission (RFC 8601 §2.7.4, method
/// `auth`): the login that sent it, under our `authserv_id`, as Rspamd records submissions.
pub fn submission_auth_results(authserv_id: &str, login: &str, mail_from: &str) -> Vec<u8> {
    let mut h = format!(
        "Authentication-Results: {};\r\n\tauth=pass smtp.auth={}",
        sanitize(authserv_id),
        sanitize_value(login)
    );
    if !mail_from.is_empty() {
        h.push_str(&format!(" smtp.mailfrom={}", sanitize_value(mail_from)));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A property value (RFC 8601 §2.2 `pvalue`): no spaces, semicolons or control characters.
fn sanitize_value(s: &str) -> String {
    sanitize(s)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ';' && *c != '"')
        .collect()
}

/// Keeps client-supplied text from breaking the header: no control characters, no parens.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '(' && *c != ')')
        .take(255)
        .collect()
}

/// `Sat, 28 Nov 2026 22:51:32 +0000` for a Unix timestamp (UTC).
pub fn rfc5322_date(ts: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `2026-11-28` (UTC) for a Unix timestamp: the day of a TLS report (RFC 8460 §4.4).
pub fn iso_day(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submission_results_name_the_login() {
        let h = submission_auth_results("mx.example.test", "alice@example.test", "");
        assert_eq!(
            h,
            b"Authentication-Results: mx.example.test;\r\n\tauth=pass smtp.auth=alice@example.test\r\n"
        );
        let h = submission_auth_results("mx", "a b;c\r\n@x", "s@x");
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "Authentication-Results: mx;\r\n\tauth=pass smtp.auth=abc@x smtp.mailfrom=s@x\r\n"
        );
    }

    #[test]
    fn dates_match_known_values() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_906_292),
            "Sat, 28 Nov 2026 22:51:32 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn received_header_is_one_folded_header_without_injected_lines() {
        let h = Trace {
            helo: "evil\r\nX-Injected: 1",
            client_ip: "192.0.2.1".parse().unwrap(),
            by_host: "mx.example.test",
            protocol: "ESMTPS",
            tls: Some("TLS1.3 TLS13_AES_256_GCM_SHA384"),
            queue_id: "01ABC",
            single_recipient: Some("a@example.test"),
            timestamp: 0,
        }
        .header();
        let text = String::from_utf8(h).unwrap();
        assert!(text
            .starts_with("Received: from evilX-Injected: 1 ([192.0.2.1])\r\n\tby mx.example.test"));
        assert!(text.contains("with ESMTPS id 01ABC"));
        assert_eq!(
            text.matches("\r\n").count(),
            text.matches("\r\n\t").count() + 1
        );
    }
}
