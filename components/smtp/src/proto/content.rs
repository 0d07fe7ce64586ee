//! Message content: DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030) off a [`Wire`] with
//! smtp-proto's sans-IO receivers, and dot-stuffing for the way out (§4.5.2), in one place.
//!
//! DATA ends only at `<CRLF>.<CRLF>`: a bare LF or bare CR followed by a dot is content, so
//! nothing a client sends inside a message can end it early or smuggle a command in
//! (the 2023 "SMTP smuggling" class). Dot-stuffing is undone by the receiver.

use std::time::Duration;

use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};
use tokio::io::{AsyncRead, AsyncWrite};

use postbay_net::wire::{ReadError, Wire};

/// Message content as received, or the fact that it outgrew the limit.
#[derive(Debug)]
pub struct Content {
    pub bytes: Vec<u8>,
    pub too_big: bool,
}

/// Reads DATA content up to the terminating `<CRLF>.<CRLF>`, undoing dot-stuffing. Content
/// beyond `max_size` is read and thrown away so the session stays in sync.
pub async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    max_size: usize,
    timeout: Duration,
) -> Result<Content, ReadError> {
    let mut receiver = DataReceiver::new();
    // The DATA command's own CRLF counts as the line break before a terminating dot, so an
    // empty message (`.` right away) ends correctly.
    let mut primer = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut primer);
    let mut content = Content {
        bytes: Vec::new(),
        too_big: false,
    };
    loop {
        if !wire.pending().is_empty() {
            let pending = wire.pending();
            let mut iter = pending.iter();
            let done = receiver.ingest(&mut iter, &mut content.bytes);
            let consumed = pending.len() - iter.len();
            wire.consume(consumed);
            if content.bytes.len() > max_size {
                content.too_big = true;
                content.bytes.clear();
            }
            if done {
                if content.too_big {
                    content.bytes = Vec::new();
                }
                return Ok(content);
            }
        }
        wire.fill(timeout).await?;
    }
}

/// Reads exactly one BDAT chunk of `size` bytes and appends it to `into` (unless that would
/// pass `max_size`, in which case the bytes are dropped and `too_big` is set).
pub async fn read_chunk<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    size: usize,
    into: &mut Content,
    max_size: usize,
    timeout: Duration,
) -> Result<(), ReadError> {
    let mut receiver = BdatReceiver::new(size, false);
    let mut chunk = Vec::with_capacity(size.min(1 << 20));
    loop {
        if size == 0 {
            break;
        }
        if !wire.pending().is_empty() {
            let pending = wire.pending();
            let mut iter = pending.iter();
            let done = receiver.ingest(&mut iter, &mut chunk);
            let consumed = pending.len() - iter.len();
            wire.consume(consumed);
            if into.too_big || into.bytes.len() + chunk.len() > max_size {
                into.too_big = true;
                into.bytes.clear();
                chunk.clear();
            }
            if done {
                break;
            }
        }
        wire.fill(timeout).await?;
    }
    if !into.too_big {
        into.bytes.extend_from_slice(&chunk);
    }
    Ok(())
}

/// Sans-IO form of [`read_data`]: the unstuffed content and the bytes consumed, or `None`
/// if `input` holds no complete message yet. Used by the fuzz target and tests.
pub fn decode_data(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut receiver = DataReceiver::new();
    let mut primer = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut primer);
    let mut out = Vec::new();
    let mut iter = input.iter();
    let done = receiver.ingest(&mut iter, &mut out);
    done.then(|| (out, input.len() - iter.len()))
}

/// Turns every bare LF into CRLF, as Postfix's `smtpd_forbid_bare_newline = normalize`
/// does, so that the next hop (our LMTP, or anyone's) sees unambiguous line ends and a
/// `<LF>.<LF>` in the content can never be read as an end of data further down the line.
pub fn normalize_bare_lf(bytes: Vec<u8>) -> Vec<u8> {
    let bare = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bare);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Doubles every dot that starts a line and appends the `.` terminator (RFC 5321 §4.5.2).
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postbay_net::wire::MaybeTls;

    async fn data_of(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut wire = Wire::new(MaybeTls::Plain(server));
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut client = client;
            client.write_all(&input).await.unwrap();
            client
        });
        let content = read_data(&mut wire, 1 << 20, Duration::from_secs(1))
            .await
            .unwrap();
        let _client = writer.await.unwrap();
        (content.bytes, wire.pending().to_vec())
    }

    #[test]
    fn stuffing_then_decoding_gives_back_normalised_content() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"ab.\r\n ";
        for len in 0..400 {
            let content: Vec<u8> = (0..len % 60)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let normal = normalize_bare_lf(content);
            let wire = dot_stuff(&normal);
            let (decoded, used) = decode_data(&wire).expect("stuffed content always terminates");
            assert_eq!(used, wire.len());
            let mut expected = normal.clone();
            if !expected.is_empty() && !expected.ends_with(b"\r\n") {
                expected.extend_from_slice(b"\r\n");
            }
            assert_eq!(
                decoded,
                expected,
                "content {:?}",
                String::from_utf8_lossy(&normal)
            );
        }
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(
            normalize_bare_lf(b"a\nb\r\nc\n".to_vec()),
            b"a\r\nb\r\nc\r\n"
        );
        assert_eq!(normalize_bare_lf(b"\n".to_vec()), b"\r\n");
        assert_eq!(normalize_bare_lf(b"ok\r\n".to_vec()), b"ok\r\n");
    }

    #[tokio::test]
    async fn data_ends_only_at_crlf_dot_crlf() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (
                b"Subject: a\r\n\r\nbody\r\n.\r\n",
                b"Subject: a\r\n\r\nbody\r\n",
                b"",
            ),
            (b".\r\n", b"", b""),
            (
                b"..leading dot\r\n.\r\nQUIT\r\n",
                b".leading dot\r\n",
                b"QUIT\r\n",
            ),
            // Bare LF before the dot: content, not an end (smuggling attempt).
            (
                b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
                b"a\n.\nMAIL FROM:<x@y>\r\n",
                b"",
            ),
            (
                b"a\n.\r\nRCPT TO:<x@y>\r\n.\r\n",
                b"a\n.\r\nRCPT TO:<x@y>\r\n",
                b"",
            ),
            (b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n", b""),
            (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", b""),
        ];
        for (input, body, rest) in cases {
            let (got, left) = data_of(input).await;
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(body),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(
                String::from_utf8_lossy(&left),
                String::from_utf8_lossy(rest),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
