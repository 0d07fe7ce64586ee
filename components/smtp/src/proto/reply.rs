//! SMTP replies: code, enhanced status code (RFC 3463) and text. The text a client sees stays
//! generic; details go to the logs.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
    /// Why a refusal was given, as a fixed word for the reply metric (`relay_denied`,
    /// `unknown_user`, ...); empty for replies that need no reason.
    pub reason: &'static str,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced,
            text: text.into(),
            reason: "",
        }
    }

    /// Names why this reply refuses, for `postbay_smtp_replies{reason}`.
    pub fn because(mut self, reason: &'static str) -> Reply {
        self.reason = reason;
        self
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// Appends the wire form (`CODE ENH TEXT\r\n`) to `out`. Every reply of the SMTP and
    /// LMTP servers passes here (or [`multiline`]), which is where they are counted.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        postbay_telemetry::smtp_reply(self.code, self.reason);
        out.extend_from_slice(self.to_string().as_bytes());
    }

    // Common replies, named after what they mean.
    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0", "OK")
    }
    pub fn bad_sequence(text: &str) -> Reply {
        Reply::new(503, "5.5.1", text)
    }
    pub fn syntax(text: &str) -> Reply {
        Reply::new(501, "5.5.4", text)
    }
    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Line too long")
    }
    pub fn unknown_command() -> Reply {
        Reply::new(500, "5.5.1", "Command unrecognized")
    }
    pub fn temporary_failure() -> Reply {
        Reply::new(451, "4.3.0", "Temporary local problem, try again later")
    }
    pub fn too_big() -> Reply {
        Reply::new(552, "5.3.4", "Message size exceeds fixed limit").because("too_big")
    }
    pub fn timeout() -> Reply {
        Reply::new(421, "4.4.2", "Timeout exceeded, closing connection").because("timeout")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.enhanced.is_empty() {
            write!(f, "{} {}\r\n", self.code, self.text)
        } else {
            write!(f, "{} {} {}\r\n", self.code, self.enhanced, self.text)
        }
    }
}

/// A multi-line reply such as the EHLO capability list.
pub fn multiline(code: u16, lines: &[String], out: &mut Vec<u8>) {
    postbay_telemetry::smtp_reply(code, "");
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        out.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
}

/// Queues a reply on a connection's output buffer.
pub trait QueueReply {
    fn queue_reply(&mut self, reply: &Reply);
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> QueueReply
    for postbay_net::wire::Wire<S>
{
    fn queue_reply(&mut self, reply: &Reply) {
        reply.write_to(self.output_buffer());
    }
}
