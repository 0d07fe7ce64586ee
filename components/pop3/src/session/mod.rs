//! One POP3 conversation (RFC 1939): greeting, the AUTHORIZATION state ([`login`]), the
//! TRANSACTION state ([`transaction`]) and, on QUIT, the UPDATE state. Generic over the
//! stream so tests can drive it in memory.
//!
//! Commands are handled in the order they arrive and replies are flushed only when no
//! further complete command is buffered, which is all RFC 2449 §6.6 PIPELINING asks.

mod login;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postbay_net::wire::{MaybeTls, ReadError, Wire};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::command::{parse_command, Command, ParseError};
use crate::maildrop::Maildrop;
use crate::response::Status;
use crate::Pop3Context;

/// How long a TLS handshake (STLS or implicit) may take.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the farewell may take to reach a client before the socket is dropped anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Session<S> {
    ctx: Arc<Pop3Context>,
    wire: Wire<S>,
    peer: SocketAddr,
    /// For STLS; `None` when TLS is not configured or already active (implicit TLS).
    tls: Option<TlsAcceptor>,
    state: State,
    auth_failures: u32,
    bad_commands: u32,
}

enum State {
    /// RFC 1939 §4; `user` holds the name from USER until PASS.
    Authorization { user: Option<String> },
    /// RFC 1939 §5.
    Transaction { user: String, maildrop: Maildrop },
}

/// Why a session ended, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Quit,
    ClientGone,
    /// RFC 1939 §3 autologout: deletions are not applied.
    Timeout,
    TooManyAuthFailures,
    TooManyBadCommands,
    TlsFailed,
}

/// A command line as read, or the fact that it outgrew the limit.
enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// `Ok(None)`: carry on; `Ok(Some(_))`: end the session.
type Step = Result<Option<Ending>, ReadError>;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(
        ctx: Arc<Pop3Context>,
        stream: MaybeTls<S>,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
    ) -> Session<S> {
        Session {
            ctx,
            wire: Wire::new(stream),
            peer,
            tls,
            state: State::Authorization { user: None },
            auth_failures: 0,
            bad_commands: 0,
        }
    }

    pub async fn run(mut self) -> Ending {
        let greeting = format!("{} POP3 Postbay ready", self.ctx.hostname);
        self.reply(Status::ok(greeting));
        let ending = loop {
            let step = match self.read_line(self.ctx.limits.max_command_line).await {
                Ok(Line::Complete(line)) => match parse_command(&line) {
                    Ok(command) => self.dispatch(command).await,
                    Err(e) => Ok(self.bad_command(parse_error_status(&e))),
                },
                Ok(Line::TooLong) => Ok(self.bad_command(Status::err("Command line too long"))),
                Err(e) => Err(e),
            };
            match step {
                Ok(None) => {}
                Ok(Some(ending)) => break ending,
                Err(e) => break self.on_read_error(e),
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.wire.shutdown()).await;
        tracing::debug!(peer = %self.peer, ?ending, "pop3 session ended");
        ending
    }

    async fn dispatch(&mut self, command: Command) -> Step {
        let logged_in = matches!(self.state, State::Transaction { .. });
        match command {
            Command::Capa => Ok(self.capa()),
            Command::Quit => self.quit().await,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Stls
                if logged_in =>
            {
                Ok(self.bad_command(Status::err("Already logged in")))
            }
            Command::User(name) => Ok(self.user(name)),
            Command::Pass(password) => self.pass(password).await,
            Command::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Command::Stls => self.stls().await,
            _ if !logged_in => Ok(self.bad_command(Status::err(
                "Not logged in: authenticate with USER/PASS or AUTH first",
            ))),
            other => self.transaction(other).await,
        }
    }

    fn reply(&mut self, status: Status) {
        status.write_to(self.wire.output_buffer());
    }

    /// Answers a command that should not have been sent; too many of them end the session.
    fn bad_command(&mut self, status: Status) -> Option<Ending> {
        self.bad_commands += 1;
        self.reply(status);
        if self.bad_commands >= self.ctx.limits.max_bad_commands {
            tracing::info!(peer = %self.peer, "closing after too many bad commands");
            return Some(Ending::TooManyBadCommands);
        }
        None
    }

    fn on_read_error(&mut self, e: ReadError) -> Ending {
        match e {
            ReadError::Timeout(_) => {
                self.reply(Status::err("Autologout: idle for too long"));
                Ending::Timeout
            }
            ReadError::Closed | ReadError::Io(_) => Ending::ClientGone,
        }
    }

    /// Sends queued replies; a client that stops reading counts as idle.
    async fn flush(&mut self) -> Result<(), ReadError> {
        let timeout = self.ctx.limits.idle_timeout;
        match tokio::time::timeout(timeout, self.wire.flush()).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ReadError::Timeout(timeout)),
        }
    }

    /// Reads one line (terminator included) of at most `max` octets. A longer line is
    /// consumed to its end and reported as [`Line::TooLong`], so the session stays in step.
    async fn read_line(&mut self, max: usize) -> Result<Line, ReadError> {
        let mut overflow = false;
        loop {
            let pending = self.wire.pending();
            if let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line = (!overflow && end < max).then(|| pending[..=end].to_vec());
                self.wire.consume(end + 1);
                return Ok(line.map_or(Line::TooLong, Line::Complete));
            }
            if pending.len() >= max {
                overflow = true;
                let n = pending.len();
                self.wire.consume(n);
            }
            self.flush().await?;
            self.wire.fill(self.ctx.limits.idle_timeout).await?;
        }
    }

    /// Whether a password may be sent on this connection (see [`crate::PlaintextAuth`]).
    fn plaintext_auth_allowed(&self) -> bool {
        use crate::PlaintextAuth::*;
        self.wire.stream.is_tls()
            || match self.ctx.plaintext_auth {
                Always => true,
                LoopbackOnly => self.peer.ip().to_canonical().is_loopback(),
                Never => false,
            }
    }

    fn maildrop_mut(&mut self) -> Option<&mut Maildrop> {
        match &mut self.state {
            State::Transaction { maildrop, .. } => Some(maildrop),
            State::Authorization { .. } => None,
        }
    }
}

fn parse_error_status(e: &ParseError) -> Status {
    match e {
        ParseError::Empty | ParseError::Unknown => Status::err("Unknown command"),
        ParseError::Unsupported(what) => Status::err(format!("{what} is not supported")),
        other => Status::err(format!("Syntax error: {other}")),
    }
}
