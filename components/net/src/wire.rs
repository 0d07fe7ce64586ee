//! Byte plumbing every text protocol shares (SMTP, LMTP, POP3, IMAP): a stream that may be
//! upgraded to TLS, an input buffer the protocol parsers consume from, and an output buffer
//! flushed only when the client has nothing more pipelined (RFC 2920 §3.1), or, for IMAP's
//! large FETCH answers, once it passes [`FLUSH_THRESHOLD`].

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read granularity; also bounds how much pipelined input one read can bring in.
pub const READ_CHUNK: usize = 16 * 1024;

/// Output is written out once it grows past this, so a huge FETCH streams instead of
/// being held in memory whole.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

pub use crate::stream::MaybeTls;

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("client closed the connection")]
    Closed,
    #[error("client was idle longer than {0:?}")]
    Timeout(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The connection as a protocol session sees it: buffered input, batched output.
pub struct Wire<S> {
    pub stream: MaybeTls<S>,
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: MaybeTls<S>) -> Wire<S> {
        Wire {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            output: Vec::with_capacity(1024),
        }
    }

    /// Unconsumed input bytes.
    pub fn pending(&self) -> &[u8] {
        &self.input[self.pos..]
    }

    /// Marks `n` bytes of [`pending`](Self::pending) as consumed.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
    }

    /// Drops all buffered input: after STARTTLS, plaintext sent before the handshake must not
    /// be honoured as if it came over TLS (CVE-2011-0411 class of attacks).
    pub fn discard_pending(&mut self) -> usize {
        let n = self.input.len() - self.pos;
        self.input.clear();
        self.pos = 0;
        n
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    pub fn output_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Flushes replies, then waits (at most `timeout`) for more input.
    pub async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        self.flush().await?;
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = tokio::time::timeout(timeout, self.stream.read(&mut self.input[start..])).await;
        let n = match read {
            Err(_) => {
                self.input.truncate(start);
                return Err(ReadError::Timeout(timeout));
            }
            Ok(Err(e)) => {
                self.input.truncate(start);
                return Err(e.into());
            }
            Ok(Ok(n)) => n,
        };
        self.input.truncate(start + n);
        if n == 0 {
            return Err(ReadError::Closed);
        }
        Ok(n)
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// Writes `out` to the stream and clears it; for sessions that keep their own output buffer
/// (IMAP, whose parser owns the input side).
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

/// Reads what is available (at most `buf.len()`) into `buf`; 0 means end of stream.
pub async fn read_some<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut MaybeTls<S>,
    buf: &mut [u8],
) -> io::Result<usize> {
    stream.read(buf).await
}
