//! The milter listener (Sendmail's milter protocol, version 6, as Postfix speaks it with
//! `smtpd_milters = inet:host:port`): the same engine as the HTTP protocol, so the classic
//! stack's Postfix can use `postbay filter` where it used Rspamd's proxy worker (port 11332).
//!
//! - `session`: the conversation's state, one per MTA connection;
//! - `reply`: a verdict as milter replies.
//!
//! Framing and command decoding are the miltr crates'. Limits: connections at once (shared
//! semaphore size `max_connections`), message size (larger ones pass unscanned), and an idle
//! timeout between the MTA's commands.

pub mod reply;
pub mod session;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::server::Filter;

/// Largest milter packet accepted: a body chunk is at most 65,535 octets (libmilter's
/// MILTER_CHUNK_SIZE) plus its command byte; header packets are far smaller.
const MAX_PACKET: usize = 1 << 17;

/// Accepts MTA connections until the task is dropped. `idle` bounds the silence between two
/// commands; it must outlast the MTA's own SMTP timeouts (Postfix's smtpd_timeout, 300 s),
/// since a milter connection lives as long as the SMTP session it filters.
pub async fn serve(listener: TcpListener, filter: Arc<Filter>, idle: Duration) {
    let max = filter.limits.max_connections;
    crate::server::accept_each(listener, max, "milter", move |stream, peer| {
        let filter = filter.clone();
        async move {
            let mut session = session::Session::new(filter);
            let mut server = miltr_server::Server::new(&mut session, false, MAX_PACKET);
            match server.handle_connection(Idle::new(stream, idle)).await {
                Ok(()) => tracing::debug!(%peer, "milter connection closed"),
                Err(error) if timed_out(&error) => {
                    tracing::info!(%peer, "milter connection idle too long; closed")
                }
                Err(error) => tracing::info!(%peer, %error, "milter connection ended"),
            }
        }
    })
    .await
}

/// The reads of [`Idle`] timed out (miltr's codec wraps I/O errors in its own).
fn timed_out(error: &miltr_server::Error<session::SessionError>) -> bool {
    let io = match error {
        miltr_server::Error::Io(io) => io,
        miltr_server::Error::Codec(miltr_common::ProtocolError::CodecError(io)) => io,
        _ => return false,
    };
    io.kind() == io::ErrorKind::TimedOut
}

/// A TCP stream for miltr (futures' I/O traits) whose reads fail with `TimedOut` once `idle`
/// passes without a byte from the MTA.
struct Idle {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(stream: TcpStream, idle: Duration) -> Idle {
        Idle {
            stream,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl futures::io::AsyncRead for Idle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut this.stream).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let next = Instant::now() + this.idle;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Ok(read.filled().len()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl futures::io::AsyncWrite for Idle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
