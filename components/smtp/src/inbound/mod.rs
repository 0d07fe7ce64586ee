//! The SMTP server side: one conversation (RFC 5321): greeting, EHLO, one or more mail
//! transactions, QUIT, in one of two roles ([`Role`]): the MX on 25, which takes mail for
//! our domains from anyone, and submission on 587/465 (RFC 6409, RFC 8314), which takes
//! mail for anywhere from logged-in users only. Generic over the stream so tests can drive
//! it in memory; one file per verb group behind the dispatcher in [`Session::run`].

mod auth;
mod data;
mod ehlo;
mod envelope;
pub mod filter;
pub mod rate;
pub mod received;
pub mod sender;
pub mod submission;

use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::proto::reply::Reply;
use crate::proto::CommandReader;
use crate::ServerContext;
use postbay_net::wire::{MaybeTls, ReadError, Wire};

/// A recipient accepted at RCPT, with where it resolved to.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedRcpt {
    pub original: String,
    pub targets: Vec<postbay_store::Recipient>,
    /// RFC 3461 NOTIFY and ORCPT.
    pub notify: Option<crate::queue::dsn::Notify>,
    pub orcpt: Option<String>,
}

/// What a listener is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail for our domains from anyone. `auth` offers AUTH (after TLS) as well, for
    /// sites whose users must submit on 25; off by default.
    Mx { auth: bool },
    /// Ports 587 (STARTTLS) and 465 (implicit TLS): AUTH after TLS, then mail to anywhere.
    Submission,
}

impl Role {
    pub(crate) fn offers_auth(self) -> bool {
        matches!(self, Role::Submission | Role::Mx { auth: true })
    }

    /// The `role` label of postbay_messages_accepted_total.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            Role::Mx { .. } => "mx",
            Role::Submission => "submission",
        }
    }
}

/// The user a session has authenticated as, and what follows from it.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub rights: sender::SenderRights,
    pub limits: rate::SendLimits,
}

#[derive(Debug, Default)]
pub(crate) struct Transaction {
    pub mail_from: Option<String>,
    pub declared_size: usize,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub rcpts: Vec<AcceptedRcpt>,
    /// RFC 3461 RET and ENVID.
    pub ret: Option<crate::queue::dsn::Ret>,
    pub envid: Option<String>,
}

pub struct Session<S> {
    pub(crate) ctx: Arc<ServerContext>,
    pub(crate) wire: Wire<S>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) helo: Option<String>,
    pub(crate) esmtp: bool,
    pub(crate) tx: Transaction,
    pub(crate) role: Role,
    pub(crate) login: Option<Login>,
    /// AUTH attempts that failed in this session (bounded work per unauthenticated client).
    pub(crate) auth_failures: u32,
    errors: usize,
    /// Content of a BDAT transfer in progress.
    pub(crate) chunks: Option<crate::proto::Content>,
}

/// Why a session ended, for logs and tests.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Quit,
    ClientGone,
    Timeout,
    TooManyErrors,
    TlsFailed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        ctx: Arc<ServerContext>,
        stream: MaybeTls<S>,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        role: Role,
    ) -> Session<S> {
        Session {
            ctx,
            wire: Wire::new(stream),
            peer,
            tls,
            helo: None,
            esmtp: false,
            tx: Transaction::default(),
            role,
            login: None,
            auth_failures: 0,
            errors: 0,
            chunks: None,
        }
    }

    pub async fn run(mut self) -> Ending {
        // The greeting carries no enhanced code (RFC 2034 §3 applies after EHLO).
        self.wire
            .queue(format!("220 {} ESMTP Postbay\r\n", self.ctx.config.hostname).as_bytes());
        let mut reader = CommandReader::default();
        let ending = loop {
            let command = match reader
                .next(&mut self.wire, self.ctx.config.command_timeout)
                .await
            {
                Ok(command) => command,
                Err(e) => break self.on_read_error(e).await,
            };
            let request = match command {
                Ok(request) => request,
                Err(e) => {
                    let reply = protocol_error_reply(&e);
                    if let Some(ending) = self.count_error(reply).await {
                        break ending;
                    }
                    continue;
                }
            };
            match self.dispatch(request).await {
                Ok(None) => {}
                Ok(Some(ending)) => break ending,
                Err(e) => break self.on_read_error(e).await,
            }
        };
        self.wire.shutdown().await;
        tracing::debug!(peer = %self.peer, ?ending, "smtp session ended");
        ending
    }

    async fn dispatch(&mut self, request: Request<String>) -> Result<Option<Ending>, ReadError> {
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => self.reply(Reply::unknown_command()),
            Request::StartTls => return self.starttls().await,
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => return self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(chunk_size, is_last).await,
            Request::Rset => {
                self.tx = Transaction::default();
                self.reply(Reply::ok());
            }
            Request::Noop { .. } => self.reply(Reply::ok()),
            Request::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Ok(Some(Ending::Quit));
            }
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Expn { .. } => self.reply(Reply::new(502, "5.5.1", "EXPN not available")),
            Request::Help { .. } => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, initial_response).await,
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.reply(Reply::new(502, "5.5.1", "Command not implemented"))
            }
        }
        Ok(None)
    }

    pub(crate) fn reply(&mut self, reply: Reply) {
        if !reply.is_positive() {
            tracing::debug!(peer = %self.peer, code = reply.code, text = reply.text, "reply");
        }
        reply.write_to(self.wire.output_buffer());
    }

    /// Sends an error reply; after too many the client is cut off (421).
    async fn count_error(&mut self, reply: Reply) -> Option<Ending> {
        self.errors += 1;
        self.reply(reply);
        if self.errors >= self.ctx.config.max_errors {
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many errors, closing connection",
            ));
            return Some(Ending::TooManyErrors);
        }
        None
    }

    async fn on_read_error(&mut self, e: ReadError) -> Ending {
        match e {
            ReadError::Timeout(_) => {
                self.reply(Reply::timeout());
                let _ = self.wire.flush().await;
                Ending::Timeout
            }
            ReadError::Closed | ReadError::Io(_) => Ending::ClientGone,
        }
    }

    async fn starttls(&mut self) -> Result<Option<Ending>, ReadError> {
        let Some(acceptor) = self.tls.clone() else {
            self.reply(Reply::new(502, "5.5.1", "STARTTLS not available"));
            return Ok(None);
        };
        if self.wire.stream.is_tls() {
            self.reply(Reply::bad_sequence("Already using TLS"));
            return Ok(None);
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.wire.flush().await?;
        let injected = self.wire.discard_pending();
        if injected > 0 {
            tracing::warn!(peer = %self.peer, bytes = injected, "discarded plaintext pipelined after STARTTLS");
        }
        let handshake = tokio::time::timeout(
            self.ctx.config.command_timeout,
            self.wire.stream.upgrade(&acceptor),
        )
        .await;
        match handshake {
            Ok(Ok(())) => {
                // RFC 3207 §4.2: forget everything learned before TLS.
                self.helo = None;
                self.esmtp = false;
                self.tx = Transaction::default();
                self.login = None;
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed");
                Ok(Some(Ending::TlsFailed))
            }
            Err(_) => Ok(Some(Ending::Timeout)),
        }
    }
}

pub(crate) fn is_relay_trick_for_fuzzing(address: &str) -> bool {
    envelope::is_relay_trick(address)
}

pub(crate) fn count_received_for_fuzzing(message: &[u8]) -> usize {
    data::count_received(message)
}

/// The reply for input smtp-proto could not accept.
pub(crate) fn protocol_error_reply(e: &smtp_proto::Error) -> Reply {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => Reply::unknown_command(),
        E::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        E::InvalidRecipientAddress => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        E::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        E::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        E::UnsupportedParameter { .. } => Reply::new(555, "5.5.4", "Unsupported parameter"),
        E::ResponseTooLong => Reply::line_too_long(),
        E::NeedsMoreData { .. } | E::InvalidResponse { .. } => Reply::syntax("Syntax error"),
    }
}
