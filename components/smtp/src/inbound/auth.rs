//! AUTH (RFC 4954) with PLAIN (RFC 4616), LOGIN and SCRAM-SHA-256 (RFC 5802, RFC 7677),
//! through the one login module every protocol shares (postbay-auth: throttle, delay,
//! bounded hashing, cache). Offered only after TLS (RFC 8314 §3.3), never on the MX unless
//! a setting asks for it.

use base64::Engine;
use postbay_auth::sasl::{self, LoginExchange, LoginStep, SaslError};
use postbay_auth::{LoginOutcome, ScramOutcome, ScramStart};
use postbay_net::wire::ReadError;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, AUTH_SCRAM_SHA_256};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Ending, Login, Session};
use crate::proto::reply::Reply;

/// The mechanisms we offer, as the EHLO keyword lists them.
pub(super) const MECHANISMS: &str = "PLAIN LOGIN SCRAM-SHA-256";

/// RFC 4954 §4: an AUTH response line may be 12288 octets.
const MAX_RESPONSE_LINE: usize = 12_288;

/// Failed AUTH attempts after which the session is closed (the throttle also counts them
/// across sessions); bounds the work one unauthenticated connection can cause.
const MAX_AUTH_FAILURES: u32 = 3;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How one AUTH exchange ended, before it is turned into a reply.
enum Verdict {
    Success(Box<postbay_store::MailboxRow>),
    Failed,
    Cancelled,
    Malformed(&'static str),
    Throttled,
    Unavailable,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn auth(
        &mut self,
        mechanism: u64,
        initial: String,
    ) -> Result<Option<Ending>, ReadError> {
        if !self.role.offers_auth() {
            self.reply(Reply::new(
                503,
                "5.5.1",
                "AUTH is only available on the submission ports",
            ));
            return Ok(None);
        }
        if !self.wire.stream.is_tls() {
            self.reply(Reply::new(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first",
            ));
            return Ok(None);
        }
        if self.helo.is_none() || !self.esmtp {
            self.reply(Reply::bad_sequence("Send EHLO first"));
            return Ok(None);
        }
        if self.login.is_some() {
            self.reply(Reply::bad_sequence("Already authenticated"));
            return Ok(None);
        }
        if self.tx.mail_from.is_some() {
            self.reply(Reply::bad_sequence(
                "AUTH not allowed during a mail transaction",
            ));
            return Ok(None);
        }
        // smtp-proto gives the initial response as sent; RFC 4954 §4: `=` is an empty one.
        let initial = (!initial.is_empty()).then_some(initial);
        let verdict = match mechanism {
            AUTH_PLAIN => self.auth_plain(initial).await?,
            AUTH_LOGIN => self.auth_login(initial).await?,
            AUTH_SCRAM_SHA_256 => self.auth_scram(initial).await?,
            _ => {
                self.reply(Reply::new(504, "5.5.4", "Unrecognized authentication type"));
                return Ok(None);
            }
        };
        Ok(self.conclude(verdict).await)
    }

    async fn conclude(&mut self, verdict: Verdict) -> Option<Ending> {
        match verdict {
            Verdict::Success(mailbox) => {
                match self.login_for(&mailbox).await {
                    Ok(login) => {
                        tracing::info!(peer = %self.peer, user = mailbox.address, "authenticated");
                        self.login = Some(login);
                        self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, user = mailbox.address, "sender addresses could not be read");
                        self.reply(Reply::new(454, "4.7.0", "Temporary authentication failure"));
                    }
                }
                None
            }
            Verdict::Cancelled => {
                self.reply(Reply::new(501, "5.0.0", "Authentication cancelled"));
                None
            }
            Verdict::Malformed(why) => {
                self.reply(Reply::new(501, "5.5.2", why));
                self.auth_failed()
            }
            Verdict::Failed => {
                self.reply(
                    Reply::new(535, "5.7.8", "Authentication credentials invalid")
                        .because("auth_failed"),
                );
                self.auth_failed()
            }
            Verdict::Throttled => {
                self.reply(Reply::new(
                    421,
                    "4.7.0",
                    "Too many failed authentications, closing connection",
                ));
                Some(Ending::TooManyErrors)
            }
            Verdict::Unavailable => {
                self.reply(Reply::new(454, "4.7.0", "Temporary authentication failure"));
                None
            }
        }
    }

    fn auth_failed(&mut self) -> Option<Ending> {
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many failed authentications, closing connection",
            ));
            return Some(Ending::TooManyErrors);
        }
        None
    }

    /// What the session may do as `mailbox`: its sender addresses and sending limits.
    async fn login_for(
        &self,
        mailbox: &postbay_store::MailboxRow,
    ) -> Result<Login, postbay_store::Error> {
        let others = self.ctx.store.sender_addresses(mailbox).await?;
        let defaults = self.ctx.config.send_limits;
        let limits = super::rate::SendLimits {
            messages_per_hour: mailbox
                .sending
                .max_messages_per_hour
                .unwrap_or(defaults.messages_per_hour),
            recipients_per_hour: mailbox
                .sending
                .max_recipients_per_hour
                .unwrap_or(defaults.recipients_per_hour),
        };
        Ok(Login {
            rights: super::sender::SenderRights::new(&mailbox.address, others),
            limits,
        })
    }

    async fn password_verdict(&self, username: &str, password: &[u8]) -> Verdict {
        match self
            .ctx
            .auth
            .check_password(self.peer.ip(), username, password)
            .await
        {
            LoginOutcome::Success(mailbox) => Verdict::Success(Box::new(mailbox)),
            LoginOutcome::Failed => Verdict::Failed,
            LoginOutcome::Throttled { .. } => Verdict::Throttled,
            LoginOutcome::Unavailable => Verdict::Unavailable,
        }
    }

    async fn auth_plain(&mut self, initial: Option<String>) -> Result<Verdict, ReadError> {
        let response = match initial {
            Some(line) => line.into_bytes(),
            None => match self.challenge(b"").await? {
                Some(line) => line,
                None => return Ok(Verdict::Malformed("Response line too long")),
            },
        };
        let message = match sasl::decode_response(&response) {
            Ok(m) => m,
            Err(e) => return Ok(sasl_verdict(e)),
        };
        match sasl::parse_plain(&message) {
            Ok(creds) => Ok(self
                .password_verdict(&creds.authcid, creds.password.expose())
                .await),
            Err(SaslError::AuthzidNotPermitted) => Ok(Verdict::Failed),
            Err(e) => Ok(sasl_verdict(e)),
        }
    }

    async fn auth_login(&mut self, initial: Option<String>) -> Result<Verdict, ReadError> {
        let mut exchange = LoginExchange::new();
        let mut pending = initial.map(String::into_bytes);
        loop {
            let line = match pending.take() {
                Some(line) => line,
                None => match self.challenge(exchange.challenge()).await? {
                    Some(line) => line,
                    None => return Ok(Verdict::Malformed("Response line too long")),
                },
            };
            let response = match sasl::decode_response(&line) {
                Ok(r) => r,
                Err(e) => return Ok(sasl_verdict(e)),
            };
            match exchange.step(&response) {
                Ok(LoginStep::Continue(next)) => exchange = next,
                Ok(LoginStep::Done { username, password }) => {
                    return Ok(self.password_verdict(&username, password.expose()).await)
                }
                Err(e) => return Ok(sasl_verdict(e)),
            }
        }
    }

    async fn auth_scram(&mut self, initial: Option<String>) -> Result<Verdict, ReadError> {
        let first = match initial {
            Some(line) => line.into_bytes(),
            None => match self.challenge(b"").await? {
                Some(line) => line,
                None => return Ok(Verdict::Malformed("Response line too long")),
            },
        };
        let first = match sasl::decode_response(&first) {
            Ok(f) => f,
            Err(e) => return Ok(sasl_verdict(e)),
        };
        let ip = self.peer.ip();
        let (exchange, server_first) = match self.ctx.auth.scram_start(ip, &first).await {
            ScramStart::Challenge {
                exchange,
                server_first,
            } => (exchange, server_first),
            ScramStart::Malformed(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "bad SCRAM client-first message");
                return Ok(Verdict::Malformed("Invalid SCRAM message"));
            }
            ScramStart::Throttled { .. } => return Ok(Verdict::Throttled),
            ScramStart::Unavailable => return Ok(Verdict::Unavailable),
        };
        let Some(line) = self.challenge(server_first.as_bytes()).await? else {
            return Ok(Verdict::Malformed("Response line too long"));
        };
        let client_final = match sasl::decode_response(&line) {
            Ok(f) => f,
            Err(e) => return Ok(sasl_verdict(e)),
        };
        match self
            .ctx
            .auth
            .scram_finish(ip, exchange, &client_final)
            .await
        {
            ScramOutcome::Success {
                mailbox,
                server_final,
            } => {
                // RFC 5802 §5 / RFC 4954 §4: the server's final message travels as one more
                // challenge; the client answers it with an empty line before 235.
                let Some(ack) = self.challenge(server_final.as_bytes()).await? else {
                    return Ok(Verdict::Malformed("Response line too long"));
                };
                if ack == b"*" {
                    return Ok(Verdict::Cancelled);
                }
                Ok(Verdict::Success(Box::new(mailbox)))
            }
            ScramOutcome::Failed(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "SCRAM authentication failed");
                Ok(Verdict::Failed)
            }
        }
    }

    /// Sends `334 <base64 challenge>` and reads the client's response line (CRLF removed);
    /// `None` if the line is over the limit (it is read to its end and dropped).
    async fn challenge(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let text = B64.encode(challenge);
        self.wire.queue(format!("334 {text}\r\n").as_bytes());
        crate::proto::read_line(
            &mut self.wire,
            MAX_RESPONSE_LINE,
            self.ctx.config.command_timeout,
        )
        .await
    }
}

fn sasl_verdict(e: SaslError) -> Verdict {
    match e {
        SaslError::Cancelled => Verdict::Cancelled,
        _ => Verdict::Malformed("Invalid authentication response"),
    }
}
