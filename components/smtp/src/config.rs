//! Settings of an SMTP server; every limit is a named, configurable value.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Our name in the greeting, EHLO reply and Received headers.
    pub hostname: String,
    /// Largest message accepted (SIZE, RFC 1870).
    pub max_message_size: usize,
    /// Recipients per transaction; more get 452 4.5.3 (RFC 5321 §4.5.3.1.8 asks for 100).
    pub max_recipients: usize,
    /// Bad commands tolerated before the connection is closed with 421.
    pub max_errors: usize,
    /// Wait for a command (RFC 5321 §4.5.3.2.7 suggests 5 minutes).
    pub command_timeout: Duration,
    /// Wait for more content during DATA/BDAT (§4.5.3.2.6 suggests 3 minutes per block).
    pub data_timeout: Duration,
    /// What a logged-in user may send per hour unless their Mailbox says otherwise.
    pub send_limits: crate::inbound::rate::SendLimits,
    /// The spam filter MX mail is scanned by before its 250 (Rspamd's protocol); none: off.
    pub filter: Option<crate::inbound::filter::FilterSettings>,
    /// SRS: RCPT to one of our SRS addresses (a bounce of forwarded mail) goes back to the
    /// original sender; none: SRS off.
    pub srs: Option<crate::outbound::srs::Srs>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".into(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            send_limits: crate::inbound::rate::SendLimits {
                messages_per_hour: 500,
                recipients_per_hour: 2000,
            },
            filter: None,
            srs: None,
        }
    }
}

impl SmtpConfig {
    /// The domain `<postmaster>` (without a domain) refers to: our host name minus its first
    /// label, or the host name itself when it has only one label.
    pub fn postmaster_domain(&self) -> &str {
        match self.hostname.split_once('.') {
            Some((_, rest)) if rest.contains('.') || !rest.is_empty() => rest,
            _ => &self.hostname,
        }
    }
}
