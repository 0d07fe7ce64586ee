//! The byte stream under a session: plain or TLS (after STARTTLS or from the first byte),
//! with batched output that is flushed before the session waits for input.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read granularity; bounds how much unparsed input one read brings in.
pub const READ_CHUNK: usize = 16 * 1024;

/// Output is written out once it grows past this, so a huge FETCH streams instead of
/// being held in memory whole.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

pub use postbay_net::MaybeTls;

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
