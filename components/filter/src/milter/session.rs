//! One MTA connection's milter conversation: collects the envelope (connect, HELO, MAIL,
//! RCPT, and the MTA's macros) and the message (header fields, body chunks), scans it at the
//! end of the message and answers with [`super::reply::end_of_message`]. Framing and
//! decoding are miltr's; nothing here does I/O.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use miltr_common::actions::{Action as MilterAction, Continue};
use miltr_common::commands::{Body, Connect, Header, Helo, Macro, Mail, Recipient};
use miltr_common::modifications::ModificationResponse;
use miltr_common::optneg::{OptNeg, Protocol};
use miltr_server::{Error as ServerError, Milter};

use crate::protocol::Envelope;
use crate::server::Filter;

/// A failure inside the conversation; it ends the connection (the MTA then applies its
/// `milter_default_action`).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the MTA speaks milter protocol version {0}; version 6 is needed")]
    Version(u32),
}

/// The state of one connection: connection facts persist, message facts reset after each
/// message and on SMFIC_ABORT.
pub struct Session {
    filter: Arc<Filter>,
    ip: Option<IpAddr>,
    hostname: Option<String>,
    helo: Option<String>,
    mta_name: Option<String>,
    /// The MTA sends header values with their leading space (SMFIP_HDR_LEADSPC agreed).
    leading_space: bool,
    message: Message,
}

#[derive(Default)]
struct Message {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    user: Option<String>,
    queue_id: Option<String>,
    headers: Vec<(String, String)>,
    raw: Vec<u8>,
    /// The message outgrew `max_message_size`: it passes unscanned (as Rspamd skips it).
    too_large: bool,
}

impl Session {
    pub fn new(filter: Arc<Filter>) -> Session {
        Session {
            filter,
            ip: None,
            hostname: None,
            helo: None,
            mta_name: None,
            leading_space: false,
            message: Message::default(),
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.message.too_large {
            return;
        }
        if self.message.raw.len() + bytes.len() > self.filter.limits.max_message_size {
            self.message.too_large = true;
            self.message.raw = Vec::new();
            return;
        }
        self.message.raw.extend_from_slice(bytes);
    }

    fn envelope(&self) -> Envelope {
        Envelope {
            ip: self.ip,
            helo: self.helo.clone(),
            hostname: self.hostname.clone(),
            mail_from: self.message.mail_from.clone(),
            rcpt_to: self.message.rcpt_to.clone(),
            deliver_to: None,
            user: self.message.user.clone(),
            queue_id: self.message.queue_id.clone(),
            settings_id: None,
            mta_name: self.mta_name.clone(),
            pass_all: false,
        }
    }
}

/// `<a@b>` → `a@b` (Postfix sends MAIL and RCPT arguments with their brackets).
fn address(raw: &str) -> String {
    let raw = raw.trim();
    raw.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(raw)
        .to_string()
}

/// The client address of SMFIC_CONNECT; Postfix and Sendmail may write IPv6 as `IPv6:...`.
fn client_ip(connect: &Connect) -> Option<IpAddr> {
    let text = connect.address();
    let text = text.trim();
    let text = text.strip_prefix("IPv6:").unwrap_or(text);
    text.trim_matches(|c| c == '[' || c == ']').parse().ok()
}

/// Folded lines arrive joined by a bare LF (libmilter's convention); the message is CRLF.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

#[async_trait]
impl Milter for Session {
    type Error = SessionError;

    async fn option_negotiation(
        &mut self,
        theirs: OptNeg,
    ) -> Result<OptNeg, ServerError<Self::Error>> {
        if theirs.version < 6 {
            return Err(ServerError::Impl {
                source: SessionError::Version(theirs.version),
            });
        }
        // Every stage, each with a reply (miltr answers each command); header values with
        // their leading space when the MTA can, so DKIM's "simple" canonicalization holds.
        let mut ours = OptNeg {
            version: 6,
            ..OptNeg::default()
        };
        ours.capabilities &= theirs.capabilities;
        ours.protocol = theirs.protocol & Protocol::SMFIP_HDR_LEADSPC;
        self.leading_space = ours.protocol.contains(Protocol::SMFIP_HDR_LEADSPC);
        Ok(ours)
    }

    async fn macro_(&mut self, macro_: Macro) -> Result<(), Self::Error> {
        for (name, value) in macro_.macros() {
            let name = String::from_utf8_lossy(name);
            let value = String::from_utf8_lossy(value).trim().to_string();
            if value.is_empty() {
                continue;
            }
            match name.trim_matches(|c| c == '{' || c == '}') {
                "i" => self.message.queue_id = Some(value),
                "j" => self.mta_name = Some(value),
                "auth_authen" => self.message.user = Some(value),
                _ => {}
            }
        }
        Ok(())
    }

    async fn connect(&mut self, connect: Connect) -> Result<MilterAction, Self::Error> {
        self.ip = client_ip(&connect);
        let name = connect.hostname();
        // Postfix names a client without reverse DNS `unknown`, Sendmail `[1.2.3.4]`.
        self.hostname = Some(if name.starts_with('[') || name.is_empty() {
            "unknown".to_string()
        } else {
            name.into_owned()
        });
        Ok(Continue.into())
    }

    async fn helo(&mut self, helo: Helo) -> Result<MilterAction, Self::Error> {
        self.helo = Some(helo.helo().trim().to_string());
        Ok(Continue.into())
    }

    async fn mail(&mut self, mail: Mail) -> Result<MilterAction, Self::Error> {
        // A new transaction: what an earlier one left (no SMFIC_ABORT after RSET) is gone,
        // but the macros of this MAIL stage arrived before it and stay.
        let kept = (self.message.user.take(), self.message.queue_id.take());
        self.message = Message {
            user: kept.0,
            queue_id: kept.1,
            ..Message::default()
        };
        self.message.mail_from = Some(address(&mail.sender()));
        Ok(Continue.into())
    }

    async fn rcpt(&mut self, recipient: Recipient) -> Result<MilterAction, Self::Error> {
        // Bounded by the MTA's own recipient limit; Envelope::from_headers has the same cap.
        if self.message.rcpt_to.len() < 1000 {
            self.message.rcpt_to.push(address(&recipient.recipient()));
        }
        Ok(Continue.into())
    }

    async fn header(&mut self, header: Header) -> Result<MilterAction, Self::Error> {
        let (name, value) = (header.name().into_owned(), header.value().into_owned());
        let line = if self.leading_space {
            format!("{name}:{}\r\n", crlf(&value))
        } else {
            format!("{name}: {}\r\n", crlf(&value))
        };
        self.append(line.as_bytes());
        if self.message.headers.len() < self.filter.limits.max_headers {
            self.message.headers.push((name, value));
        }
        Ok(Continue.into())
    }

    async fn end_of_header(&mut self) -> Result<MilterAction, Self::Error> {
        self.append(b"\r\n");
        Ok(Continue.into())
    }

    async fn body(&mut self, body: Body) -> Result<MilterAction, Self::Error> {
        self.append(body.as_bytes());
        Ok(Continue.into())
    }

    async fn end_of_body(&mut self) -> Result<ModificationResponse, Self::Error> {
        let message = std::mem::take(&mut self.message);
        let envelope = Envelope {
            mail_from: message.mail_from.clone(),
            rcpt_to: message.rcpt_to.clone(),
            user: message.user.clone(),
            queue_id: message.queue_id.clone(),
            ..self.envelope()
        };
        let queue_id = envelope.queue_id.as_deref().unwrap_or("-").to_string();
        if message.too_large {
            tracing::info!(
                queue_id,
                max = self.filter.limits.max_message_size,
                "milter: message over the size limit passes unscanned"
            );
            return Ok(ModificationResponse::empty_continue());
        }
        let started = Instant::now();
        let span = tracing::info_span!(
            target: postbay_telemetry::traces::TARGET,
            "filter.milter",
            otel.kind = "server",
            queue_id = envelope.queue_id.as_deref(),
        );
        let verdict =
            tracing::Instrument::instrument(self.filter.engine.scan(&message.raw, &envelope), span)
                .await;
        postbay_telemetry::filter_scan(verdict.action.as_str(), started.elapsed());
        tracing::info!(
            queue_id,
            ip = ?envelope.ip,
            action = verdict.action.as_str(),
            score = verdict.score,
            symbols = %verdict.symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
            "milter: scanned"
        );
        Ok(super::reply::end_of_message(
            &verdict,
            &message.headers,
            self.leading_space,
        ))
    }

    async fn abort(&mut self) -> Result<(), Self::Error> {
        self.message = Message::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miltr_common::commands::Family;

    #[test]
    fn addresses_and_client_ips() {
        assert_eq!(address("<a@example.org>"), "a@example.org");
        assert_eq!(address("<>"), "");
        assert_eq!(address(" b@example.org "), "b@example.org");
        let v4 = Connect::new(b"mx.example.org", Family::Inet, Some(25), b"192.0.2.7");
        assert_eq!(client_ip(&v4), "192.0.2.7".parse().ok());
        let v6 = Connect::new(b"unknown", Family::Inet6, Some(25), b"IPv6:2001:db8::1");
        assert_eq!(client_ip(&v6), "2001:db8::1".parse().ok());
        let unix = Connect::new(b"localhost", Family::Unix, None, b"/run/x.sock");
        assert_eq!(client_ip(&unix), None);
    }

    #[test]
    fn folded_values_become_crlf() {
        assert_eq!(crlf("a\n\tb"), "a\r\n\tb");
        assert_eq!(crlf("a\r\n\tb"), "a\r\n\tb");
    }
}
