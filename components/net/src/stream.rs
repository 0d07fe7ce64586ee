//! A server-side stream that may switch to TLS mid-connection (STARTTLS, STLS) or start
//! with it (ports 465, 993, 995), and to DEFLATE on top (IMAP COMPRESS, RFC 4978). One type
//! for every protocol server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use crate::deflate::Deflate;

/// A server-side stream before or after STARTTLS (or implicit TLS).
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// COMPRESS=DEFLATE over the plain or TLS stream.
    Compressed(Box<Deflate<MaybeTls<S>>>),
    /// Only during the handshake; never read or written.
    Upgrading,
}

impl<S> MaybeTls<S> {
    pub fn is_tls(&self) -> bool {
        match self {
            MaybeTls::Tls(_) => true,
            MaybeTls::Compressed(d) => d.get_ref().is_tls(),
            _ => false,
        }
    }

    pub fn is_compressed(&self) -> bool {
        matches!(self, MaybeTls::Compressed(_))
    }

    /// From here on, everything read is inflated and everything written deflated
    /// (RFC 4978 §3: right after the tagged OK of COMPRESS, both ways).
    pub fn compress(&mut self) {
        if self.is_compressed() {
            return;
        }
        let inner = std::mem::replace(self, MaybeTls::Upgrading);
        *self = MaybeTls::Compressed(Box::new(Deflate::new(inner)));
    }

    /// The negotiated TLS version and cipher suite, for the Received header and logs.
    pub fn tls_description(&self) -> Option<String> {
        match self {
            MaybeTls::Tls(s) => {
                let (_, conn) = s.get_ref();
                let version = conn.protocol_version().map(|v| format!("{v:?}"))?;
                let suite = conn
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))?;
                Some(format!("{version} {suite}").replace("TLSv1_", "TLS1."))
            }
            MaybeTls::Compressed(d) => d.get_ref().tls_description(),
            _ => None,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    /// Performs the server TLS handshake in place.
    pub async fn upgrade(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, MaybeTls::Upgrading) {
            MaybeTls::Plain(s) => {
                let tls = acceptor.accept(s).await;
                postbay_telemetry::tls_handshake(tls.is_ok());
                *self = MaybeTls::Tls(Box::new(tls?));
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
            MaybeTls::Compressed(s) => Pin::new(s).poll_read(cx, buf),
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
            MaybeTls::Compressed(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Upgrading => Poll::Ready(Err(io::Error::other("write during TLS upgrade"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Compressed(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Compressed(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
