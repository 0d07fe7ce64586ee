//! COMPRESS=DEFLATE (RFC 4978): a stream wrapper that inflates what it reads and deflates
//! what it writes, raw DEFLATE (RFC 1951) both ways, with a sync flush (§4, "the compressor
//! MUST flush") whenever the session flushes its replies.
//!
//! Memory is what bounds how many compressed sessions a process can hold, so (decision 80):
//! * the compressor (zlib-rs) uses a 4 KiB window and memLevel 5: ~160 KiB, most of it
//!   zlib-rs's fixed 64 Ki-entry hash table, against ~300 KiB for the 32 KiB default; the
//!   ratio on mail text is within a few per cent (RFC 4978 §4 leaves the window to the
//!   compressor, windowBits -8 to -15);
//! * it exists only while a reply is being written: when the stream waits for the client
//!   with everything sync-flushed and sent, the compressor goes back to a small process-wide
//!   spare pool ([`SPARE_COMPRESSORS`], reset for reuse) and the next write takes one. After
//!   a sync flush that is what a full flush does (the dictionary cleared, which RFC 4978 §4
//!   allows; a fresh compressor's blocks never refer back, so any RFC 1951 inflater reads
//!   on), so an IDLE session holds none. Each reply is compressed
//!   without the previous one's dictionary, which only a 4 KiB window would have reached
//!   anyway. The pool matters as much as the release: freeing 160 KiB blocks between the
//!   sessions' small allocations fragments the heap so that RSS kept most of them;
//! * the decompressor keeps a 32 KiB window, the most a client's compressor may refer back
//!   (RFC 1951 §2), but zlib-rs only touches it as data arrives (~19 KiB for a new session,
//!   up to ~40 KiB once the client has sent 32 KiB);
//! * the read buffer is 1 KiB between bursts ([`RAW_CHUNK`] while input streams in), and at
//!   most [`MAX_PENDING`] of deflated output waits for a slow reader before writes wait.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zlib_rs::{DeflateConfig, DeflateFlush, InflateFlush, Status};

/// Compressed bytes read from the socket at a time while the client sends a lot (APPEND).
pub const RAW_CHUNK: usize = 8 * 1024;

/// The read buffer between bursts: commands of a quiet client are a few dozen bytes.
const SMALL_RAW: usize = 1024;

/// Deflated output held back while the socket is not writable; beyond it, writes wait.
pub const MAX_PENDING: usize = 64 * 1024;

/// Compressors kept for reuse when no session holds them: about as many as replies are
/// written at once (one per worker thread, a few more for slow readers), at most ~5 MiB.
pub const SPARE_COMPRESSORS: usize = 32;

/// The process's unused compressors, already reset.
static SPARE: Mutex<Vec<zlib_rs::Deflate>> = Mutex::new(Vec::new());

/// Deflate level: Dovecot's default (`imap_compress_deflate_level = 6`).
const LEVEL: i32 = 6;

/// log2 of the compressor's window (4 KiB); see the module comment.
const WINDOW_BITS: i32 = 12;

/// zlib's memLevel: 2^(5+6) = 2 Ki symbols per block (16 KiB of buffers instead of 112 at
/// the default 8), the same ratio on mail in our measurements.
const MEM_LEVEL: i32 = 5;

/// log2 of the decompressor's window: the client may use the full 32 KiB (RFC 1951 §2).
const INFLATE_WINDOW_BITS: u8 = 15;

/// Upper bound of what the compressor and the buffers of one stream may hold while it is
/// busy (compressor, decompressor with a full window, pending output, read buffer), for
/// sizing a cap on compressed sessions.
pub const MAX_BUSY_BYTES: usize = 160 * 1024 + 40 * 1024 + MAX_PENDING + RAW_CHUNK;

pub struct Deflate<T> {
    inner: T,
    /// Taken by the first write after a release.
    enc: Option<zlib_rs::Deflate>,
    dec: zlib_rs::Inflate,
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
    /// Bytes the last read from `inner` brought: a short one ends a burst.
    last_read: usize,
}

impl<T> Deflate<T> {
    pub fn new(inner: T) -> Deflate<T> {
        Deflate {
            inner,
            enc: None,
            dec: zlib_rs::Inflate::new(false, INFLATE_WINDOW_BITS),
            raw: vec![0; SMALL_RAW],
            pos: 0,
            end: 0,
            dec_full: false,
            eof: false,
            out: Vec::new(),
            sent: 0,
            unflushed: false,
            last_read: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// A compressor is held (for tests and diagnostics: idle streams hold none).
    pub fn holds_compressor(&self) -> bool {
        self.enc.is_some()
    }

    /// Called when a read from `inner` waits for the client: with every reply flushed and
    /// sent, the compressor goes back to the pool and the buffers shrink.
    fn release_when_quiet(&mut self) {
        if self.unflushed || self.sent < self.out.len() {
            return;
        }
        if let Some(enc) = self.enc.take() {
            spare(enc);
        }
        if self.out.capacity() > 0 {
            self.out = Vec::new();
            self.sent = 0;
        }
        // Not in the middle of an upload (reads filling the buffer), nothing left over.
        if self.raw.len() > SMALL_RAW && self.last_read < SMALL_RAW && self.end == 0 {
            self.raw = vec![0; SMALL_RAW];
        }
    }
}

impl<T> Drop for Deflate<T> {
    fn drop(&mut self) {
        if let Some(enc) = self.enc.take() {
            spare(enc);
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("DEFLATE: {e}"))
}

/// A raw-DEFLATE compressor at the start of a stream (see [`WINDOW_BITS`], [`MEM_LEVEL`]):
/// a spare one if there is one, else a new one.
fn compressor() -> zlib_rs::Deflate {
    let reused = SPARE.lock().ok().and_then(|mut spare| spare.pop());
    reused.unwrap_or_else(new_compressor)
}

fn new_compressor() -> zlib_rs::Deflate {
    zlib_rs::Deflate::new_with_config(DeflateConfig {
        level: LEVEL,
        // Negative: raw DEFLATE, no zlib header (RFC 4978 §4).
        window_bits: -WINDOW_BITS,
        mem_level: MEM_LEVEL,
        ..DeflateConfig::default()
    })
}

/// Resets `enc` (deflateReset: a new stream, same settings) and keeps it for the next
/// reply of any session, unless the pool is full.
fn spare(mut enc: zlib_rs::Deflate) {
    enc.reset();
    if let Ok(mut spare) = SPARE.lock() {
        if spare.len() < SPARE_COMPRESSORS {
            spare.push(enc);
        }
    }
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
    fn deflate(&mut self, input: &[u8], flush: DeflateFlush) -> io::Result<()> {
        let enc = self.enc.get_or_insert_with(compressor);
        let mut done = 0;
        loop {
            let start = self.out.len();
            let room = input.len() - done + 64;
            self.out.resize(start + room, 0);
            let (in_before, out_before) = (enc.total_in(), enc.total_out());
            let result = enc.compress(&input[done..], &mut self.out[start..], flush);
            let produced = (enc.total_out() - out_before) as usize;
            self.out.truncate(start + produced);
            result.map_err(|e| invalid(e.as_str()))?;
            done += (enc.total_in() - in_before) as usize;
            // Room left over means the compressor said all it had to say.
            if done == input.len() && produced < room {
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
                    .decompress(&this.raw[this.pos..this.end], space, InflateFlush::NoFlush)
                    .map_err(|e| invalid(e.as_str()))?;
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
                    this.last_read = n;
                    // A full buffer: the client is streaming (a literal); read in big chunks.
                    if this.end == this.raw.len() && this.raw.len() < RAW_CHUNK {
                        this.raw.resize(RAW_CHUNK, 0);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.release_when_quiet();
                    return Poll::Pending;
                }
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
        this.deflate(&data[..take], DeflateFlush::NoFlush)?;
        this.unflushed = true;
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unflushed {
            this.deflate(&[], DeflateFlush::SyncFlush)?;
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
    use std::time::Duration;
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

    /// Text that refers back up to ~30 KiB, as a 32 KiB-window client may.
    fn far_repeats() -> Vec<u8> {
        let block: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("{} ", i.wrapping_mul(2_654_435_761) % 10_007).into_bytes())
            .collect();
        block.repeat(6)
    }

    /// Our small-window stream, with compressor releases between replies, read by an
    /// independent inflater (miniz_oxide, through flate2), as Python's zlib or mbsync would.
    #[tokio::test]
    async fn the_stream_stays_valid_deflate_across_releases() {
        let (a, mut wire) = tokio::io::duplex(1 << 20);
        let mut a = Deflate::new(a);
        let mut expected = Vec::new();
        for round in 0..3 {
            let reply = [format!("* {round} FETCH\r\n").into_bytes(), far_repeats()].concat();
            a.write_all(&reply).await.unwrap();
            a.flush().await.unwrap();
            expected.extend_from_slice(&reply);
            assert!(a.holds_compressor());
            // Wait for the client, who is silent: the compressor goes.
            let mut byte = [0u8; 1];
            let wait = tokio::time::timeout(Duration::from_millis(10), a.read(&mut byte));
            assert!(wait.await.is_err());
            assert!(!a.holds_compressor(), "round {round}");
            assert_eq!(a.out.capacity(), 0);
        }
        drop(a);
        let mut deflated = Vec::new();
        wire.read_to_end(&mut deflated).await.unwrap();
        assert!(deflated.len() < expected.len() / 2, "{}", deflated.len());
        let mut inflater = flate2::Decompress::new(false);
        let mut got = Vec::with_capacity(expected.len() + 1024);
        inflater
            .decompress_vec(&deflated, &mut got, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected);
    }

    /// A compressor back from the pool (reset) writes what a new one writes: no trace of
    /// the session it served.
    #[test]
    fn a_reset_compressor_is_as_good_as_new() {
        let deflate = |enc: &mut zlib_rs::Deflate, text: &[u8]| {
            let mut out = vec![0u8; text.len() + 1024];
            let before = enc.total_out();
            enc.compress(text, &mut out, DeflateFlush::SyncFlush)
                .unwrap();
            out.truncate((enc.total_out() - before) as usize);
            out
        };
        let reply = b"* 1 FETCH (FLAGS (\\Seen) UID 7)\r\na OK FETCH completed\r\n";
        let mut used = new_compressor();
        deflate(&mut used, &far_repeats());
        used.reset();
        assert_eq!(
            deflate(&mut used, reply),
            deflate(&mut new_compressor(), reply)
        );
    }

    /// A client compressing with the full 32 KiB window (zlib's default, miniz_oxide here)
    /// refers back further than our compressor does; the decompressor must follow.
    #[tokio::test]
    async fn a_full_window_client_is_inflated() {
        let (mut wire, b) = tokio::io::duplex(1 << 20);
        let mut b = Deflate::new(b);
        let text = far_repeats();
        let mut deflater = flate2::Compress::new(flate2::Compression::new(9), false);
        let mut deflated = Vec::with_capacity(text.len());
        deflater
            .compress_vec(&text, &mut deflated, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(deflated.len() < text.len() / 4);
        wire.write_all(&deflated).await.unwrap();
        drop(wire);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(got == text);
    }

    /// A quiet stream gives its buffers back; a long literal grows the read buffer.
    #[tokio::test]
    async fn the_read_buffer_grows_for_a_stream_and_shrinks_when_quiet() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (mut a, mut b) = (Deflate::new(a), Deflate::new(b));
        // Incompressible, so the compressed input outgrows the small buffer.
        let noise: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        a.write_all(&noise).await.unwrap();
        a.flush().await.unwrap();
        let mut got = vec![0u8; noise.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == noise);
        assert_eq!(b.raw.len(), RAW_CHUNK);
        // A short command, then silence: the buffer shrinks.
        a.write_all(b"a NOOP\r\n").await.unwrap();
        a.flush().await.unwrap();
        let mut line = [0u8; 8];
        b.read_exact(&mut line).await.unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(10), b.read(&mut line));
        assert!(wait.await.is_err());
        assert_eq!(b.raw.len(), SMALL_RAW);
    }
}
