//! COMPRESS=DEFLATE (RFC 4978): a stream wrapper that inflates what it reads and deflates
//! what it writes, raw DEFLATE (RFC 1951) both ways, with a sync flush (§4, "the compressor
//! MUST flush") whenever the session flushes its replies.
//!
//! Memory per stream is fixed by the codec's state (miniz_oxide: the compressor's dictionary
//! and hash chains, the decompressor's 32 KiB window) plus [`RAW_CHUNK`] of read buffer and
//! at most [`MAX_PENDING`] of deflated output not yet taken by the socket: a client that
//! stops reading makes writes wait instead of growing a buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Compressed bytes read from the socket at a time.
pub const RAW_CHUNK: usize = 8 * 1024;

/// Deflated output held back while the socket is not writable; beyond it, writes wait.
pub const MAX_PENDING: usize = 64 * 1024;

/// Deflate level: Dovecot's default (`imap_compress_deflate_level = 6`).
const LEVEL: u32 = 6;

pub struct Deflate<T> {
    inner: T,
    enc: Compress,
    dec: Decompress,
    /// Compressed input from `inner`; `raw[pos..end]` is not inflated yet.
    raw: Vec<u8>,
    pos: usize,
    end: usize,
    /// The last inflate filled the caller's buffer, so it may hold more output.
    dec_full: bool,
    /// `inner` reached end of file, or the client's stream ended.
    eof: bool,
    /// Deflated output not yet written to `inner`; `out[sent..]` is left.
    out: Vec<u8>,
    sent: usize,
    /// Input was deflated since the last sync flush.
    unflushed: bool,
}

impl<T> Deflate<T> {
    pub fn new(inner: T) -> Deflate<T> {
        Deflate {
            inner,
            enc: Compress::new(Compression::new(LEVEL), false),
            dec: Decompress::new(false),
            raw: vec![0; RAW_CHUNK],
            pos: 0,
            end: 0,
            dec_full: false,
            eof: false,
            out: Vec::new(),
            sent: 0,
            unflushed: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("DEFLATE: {e}"))
}

impl<T: AsyncWrite + Unpin> Deflate<T> {
    /// Writes pending deflated bytes to `inner` until none are left or it would block.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > MAX_PENDING {
            self.out.shrink_to(4096);
        }
        Poll::Ready(Ok(()))
    }

    /// Deflates `input` (all of it) into `out` with `flush`.
    fn deflate(&mut self, input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut done = 0;
        loop {
            self.out.reserve(input.len() - done + 64);
            let before = self.enc.total_in();
            self.enc
                .compress_vec(&input[done..], &mut self.out, flush)
                .map_err(invalid)?;
            done += (self.enc.total_in() - before) as usize;
            // Room left over means the compressor said all it had to say.
            if done == input.len() && self.out.len() < self.out.capacity() {
                return Ok(());
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deflate<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.pos < this.end || this.dec_full {
                let space = buf.initialize_unfilled();
                let room = space.len();
                let (in_before, out_before) = (this.dec.total_in(), this.dec.total_out());
                let status = this
                    .dec
                    .decompress(&this.raw[this.pos..this.end], space, FlushDecompress::None)
                    .map_err(invalid)?;
                let produced = (this.dec.total_out() - out_before) as usize;
                this.pos += (this.dec.total_in() - in_before) as usize;
                this.dec_full = produced == room;
                if matches!(status, Status::StreamEnd) {
                    this.eof = true;
                }
                if produced > 0 {
                    buf.advance(produced);
                    return Poll::Ready(Ok(()));
                }
                if this.eof {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Everything read is inflated (or the rest needs more input): read on.
            this.raw.copy_within(this.pos..this.end, 0);
            this.end -= this.pos;
            this.pos = 0;
            if this.end == this.raw.len() {
                return Poll::Ready(Err(invalid("input the decompressor cannot use")));
            }
            let mut rb = ReadBuf::new(&mut this.raw[this.end..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                    }
                    this.end += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deflate<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() - this.sent >= MAX_PENDING {
            match this.poll_drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if this.out.len() - this.sent >= MAX_PENDING => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        // Take at most what keeps the held-back output bounded.
        let take = data.len().min(MAX_PENDING);
        this.deflate(&data[..take], FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.deflate(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.get_mut().inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn what_one_side_deflates_the_other_inflates() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut a, mut b) = (Deflate::new(a), Deflate::new(b));
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{i} ").into_bytes())
            .collect();
        let sent = text.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&sent).await.unwrap();
            a.flush().await.unwrap();
            a.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, text);
    }

    #[tokio::test]
    async fn a_flush_delivers_everything_written_so_far() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (mut a, mut b) = (Deflate::new(a), Deflate::new(b));
        a.write_all(b"* OK hello\r\n").await.unwrap();
        a.flush().await.unwrap();
        let mut buf = [0u8; 64];
        let n = b.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"* OK hello\r\n");
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_hang() {
        let (mut a, b) = tokio::io::duplex(1024);
        let mut b = Deflate::new(b);
        a.write_all(&[0xff; 64]).await.unwrap();
        let mut buf = [0u8; 64];
        assert!(b.read(&mut buf).await.is_err());
    }
}
