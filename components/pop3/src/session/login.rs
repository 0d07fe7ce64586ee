//! The AUTHORIZATION state: CAPA, STLS, USER/PASS, AUTH PLAIN, and QUIT in either state.

use postbay_auth::LoginOutcome;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Ending, Line, Session, State, Step, TLS_HANDSHAKE_TIMEOUT};
use crate::command::Secret;
use crate::maildrop::Maildrop;
use crate::response::{write_lines, Code, Status};
use crate::sasl::{self, SaslError};

const PLAINTEXT_REFUSED: &str =
    "Plaintext authentication disallowed on non-secure connections: use STLS";

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// RFC 2449 §5. The list follows the connection's current abilities, so a client that
    /// re-issues CAPA after STLS (RFC 2595 §4 says it must) sees USER and SASL appear.
    pub(super) fn capa(&mut self) -> Option<Ending> {
        let mut lines: Vec<String> = [
            "CAPA",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ]
        .map(String::from)
        .into();
        if self.plaintext_auth_allowed() {
            lines.push("USER".into());
            lines.push(format!("SASL {}", sasl::MECHANISMS.join(" ")));
        }
        let authorization = matches!(self.state, State::Authorization { .. });
        if authorization && self.tls.is_some() && !self.wire.stream.is_tls() {
            lines.push("STLS".into());
        }
        lines.push("IMPLEMENTATION Postbay".into());
        self.reply(Status::ok("Capability list follows"));
        write_lines(self.wire.output_buffer(), lines);
        None
    }

    /// RFC 2595 §4: only before login, only once.
    pub(super) async fn stls(&mut self) -> Step {
        if self.wire.stream.is_tls() {
            return Ok(self.bad_command(Status::err("Command not permitted when TLS active")));
        }
        let Some(acceptor) = self.tls.clone() else {
            return Ok(self.bad_command(Status::err("STLS not available")));
        };
        self.reply(Status::ok("Begin TLS negotiation"));
        self.flush().await?;
        // Commands pipelined behind STLS arrived in plaintext and must not run as if they
        // came over TLS (CVE-2011-0411 class of injection).
        let injected = self.wire.discard_pending();
        if injected > 0 {
            tracing::warn!(peer = %self.peer, bytes = injected, "discarded plaintext pipelined after STLS");
        }
        let handshake =
            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.wire.stream.upgrade(&acceptor)).await;
        match handshake {
            Ok(Ok(())) => {
                // RFC 2595 §4: forget what the client said before TLS.
                self.state = State::Authorization { user: None };
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "STLS handshake failed");
                Ok(Some(Ending::TlsFailed))
            }
            Err(_) => Ok(Some(Ending::TlsFailed)),
        }
    }

    /// RFC 1939 §7. Always `+OK`, so USER does not reveal which mailboxes exist.
    pub(super) fn user(&mut self, name: String) -> Option<Ending> {
        if !self.plaintext_auth_allowed() {
            self.reply(Status::err_code(Code::Auth, PLAINTEXT_REFUSED));
            return None;
        }
        self.state = State::Authorization { user: Some(name) };
        self.reply(Status::ok("Send PASS"));
        None
    }

    pub(super) async fn pass(&mut self, password: Secret) -> Step {
        if !self.plaintext_auth_allowed() {
            self.reply(Status::err_code(Code::Auth, PLAINTEXT_REFUSED));
            return Ok(None);
        }
        let user = match &mut self.state {
            State::Authorization { user } => user.take(),
            State::Transaction { .. } => None,
        };
        let Some(user) = user else {
            return Ok(self.bad_command(Status::err("No user name given: send USER first")));
        };
        Ok(self.login(&user, password.expose(), "USER").await)
    }

    /// RFC 5034 §4, PLAIN only. Without a mechanism: the mechanism list, as RFC 1734-era
    /// clients expect.
    pub(super) async fn auth(
        &mut self,
        mechanism: Option<String>,
        initial_response: Option<Secret>,
    ) -> Step {
        let allowed = self.plaintext_auth_allowed();
        let Some(mechanism) = mechanism else {
            self.reply(Status::ok("Supported mechanisms follow"));
            let mechanisms = if allowed { sasl::MECHANISMS } else { &[] };
            write_lines(self.wire.output_buffer(), mechanisms);
            return Ok(None);
        };
        if !sasl::MECHANISMS.contains(&mechanism.as_str()) {
            self.reply(Status::err("Unsupported authentication mechanism"));
            return Ok(None);
        }
        if !allowed {
            self.reply(Status::err_code(Code::Auth, PLAINTEXT_REFUSED));
            return Ok(None);
        }
        let response = match initial_response {
            Some(initial) => initial.expose().to_vec(),
            None => {
                // An empty server challenge: "+" and a space (RFC 5034 §4).
                self.wire.queue(b"+ \r\n");
                match self.read_line(self.ctx.limits.max_sasl_line).await? {
                    Line::Complete(mut line) => {
                        strip_line_end(&mut line);
                        line
                    }
                    Line::TooLong => {
                        return Ok(self.auth_failed(Status::err("SASL response too long")))
                    }
                }
            }
        };
        let credentials = sasl::decode_response(&response).and_then(|m| sasl::parse_plain(&m));
        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(SaslError::Cancelled) => {
                self.reply(Status::err("Authentication cancelled"));
                return Ok(None);
            }
            Err(SaslError::AuthzidNotPermitted) => {
                tracing::info!(peer = %self.peer, "AUTH PLAIN asked to act as another user");
                return Ok(self.auth_failed(Status::err_code(
                    Code::Auth,
                    "Authorization identity not permitted",
                )));
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "bad AUTH PLAIN response");
                let text = match e {
                    SaslError::Base64 => "Invalid base64 in SASL response",
                    SaslError::TooLong { .. } => "SASL response too long",
                    _ => "Malformed PLAIN response",
                };
                return Ok(self.auth_failed(Status::err(text)));
            }
        };
        Ok(self
            .login(
                &credentials.authcid,
                credentials.password.expose(),
                "AUTH PLAIN",
            )
            .await)
    }

    /// Checks credentials with the shared authenticator (throttle, delays and hashing pool
    /// are its business); on success opens the maildrop and enters the TRANSACTION state.
    async fn login(&mut self, user: &str, password: &[u8], method: &'static str) -> Option<Ending> {
        let authenticator = self.ctx.authenticator.clone();
        match authenticator
            .check_password(self.peer.ip(), user, password)
            .await
        {
            LoginOutcome::Success(mailbox) => self.open_maildrop(mailbox, method).await,
            LoginOutcome::Failed => {
                tracing::debug!(peer = %self.peer, user, method, "login failed");
                self.auth_failed(Status::err_code(Code::Auth, "Authentication failed"))
            }
            LoginOutcome::Throttled { retry_after } => {
                tracing::debug!(peer = %self.peer, user, method, ?retry_after, "login throttled");
                self.auth_failed(Status::err_code(
                    Code::SysTemp,
                    "Too many failed logins from your address or for this user, try again later",
                ))
            }
            LoginOutcome::Unavailable => self.auth_failed(Status::err_code(
                Code::SysTemp,
                "Authentication temporarily unavailable, try again later",
            )),
        }
    }

    async fn open_maildrop(
        &mut self,
        mailbox: postbay_store::MailboxRow,
        method: &'static str,
    ) -> Option<Ending> {
        match Maildrop::open(&self.ctx.store, mailbox.id, &self.ctx.sizes).await {
            Ok(maildrop) => {
                let (count, size) = maildrop.stat();
                tracing::info!(peer = %self.peer, user = %mailbox.address, method, messages = count, "logged in");
                self.state = State::Transaction {
                    user: mailbox.address,
                    maildrop,
                };
                self.reply(Status::ok(format!(
                    "Logged in, maildrop has {count} messages ({size} octets)"
                )));
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, user = %mailbox.address, error = %e, "could not open maildrop");
                self.reply(Status::err_code(
                    Code::SysTemp,
                    "Unable to open maildrop, try again later",
                ));
            }
        }
        None
    }

    /// Answers a failed login; the last allowed failure also closes the connection.
    fn auth_failed(&mut self, mut status: Status) -> Option<Ending> {
        self.auth_failures += 1;
        if self.auth_failures >= self.ctx.limits.max_auth_failures {
            status
                .text
                .push_str("; too many failures, closing connection");
            self.reply(status);
            tracing::info!(peer = %self.peer, "closing after too many failed logins");
            return Some(Ending::TooManyAuthFailures);
        }
        self.reply(status);
        None
    }

    /// QUIT (RFC 1939 §4, §6): after login this is the UPDATE state, the only place
    /// deletions reach the store.
    pub(super) async fn quit(&mut self) -> Step {
        let host = self.ctx.hostname.clone();
        let status = match &self.state {
            State::Authorization { .. } => Status::ok(format!("{host} POP3 Postbay signing off")),
            State::Transaction { user, maildrop } => match maildrop.commit(&self.ctx.store).await {
                Ok(0) => Status::ok(format!("{host} POP3 Postbay signing off (maildrop empty)")),
                Ok(left) => Status::ok(format!(
                    "{host} POP3 Postbay signing off ({left} messages left)"
                )),
                Err(e) => {
                    tracing::error!(peer = %self.peer, user, error = %e, "UPDATE failed; deletions not applied");
                    Status::err_code(
                        Code::SysTemp,
                        "Some deleted messages not removed, try again later",
                    )
                }
            },
        };
        self.reply(status);
        Ok(Some(Ending::Quit))
    }
}

fn strip_line_end(line: &mut Vec<u8>) {
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
}
