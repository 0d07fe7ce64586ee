//! Byte plumbing shared by the SMTP and LMTP servers: a stream that may be upgraded to TLS,
//! an input buffer the smtp-proto receivers consume from, and an output buffer flushed only
//! when the client has nothing more pipelined (RFC 2920 §3.1).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read granularity; also bounds how much pipelined input one read can bring in.
const READ_CHUNK: usize = 16 * 1024;

pub use postbay_net::MaybeTls;

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

    pub fn queue_reply(&mut self, reply: &crate::reply::Reply) {
        reply.write_to(&mut self.output);
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
