//! The byte stream under a session: plain or TLS (after STARTTLS or from the first byte),
//! with batched output that is flushed before the session waits for input.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::server::TlsStream;

/// Read granularity; bounds how much unparsed input one read brings in.
pub const READ_CHUNK: usize = 16 * 1024;

/// Output is written out once it grows past this, so a huge FETCH streams instead of
/// being held in memory whole.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

/// A server-side stream before or after TLS starts.
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Only during the handshake.
    Upgrading,
}

impl<S> MaybeTls<S> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    /// Performs the server TLS handshake in place.
    pub async fn upgrade(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, MaybeTls::Upgrading) {
            MaybeTls::Plain(s) => {
                let tls = acceptor.accept(s).await?;
                *self = MaybeTls::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("stream is not plain text"))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Upgrading => Poll::Ready(Err(io::Error::other("read during TLS upgrade"))),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Upgrading => Poll::Ready(Err(io::Error::other("write during TLS upgrade"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Writes `out` to the stream and clears it.
pub async fn write_out<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MaybeTls<S>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        stream.flush().await?;
        out.clear();
        if out.capacity() > 4 * FLUSH_THRESHOLD {
            // Give back the memory of a big FETCH; idle sessions should stay small.
            out.shrink_to(4096);
        }
    }
    Ok(())
}

/// Reads what is available (at most [`READ_CHUNK`]) into `buf`; 0 means end of stream.
pub async fn read_some<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MaybeTls<S>,
    buf: &mut [u8],
) -> io::Result<usize> {
    stream.read(buf).await
}
