//! A stored message as POP3 sends it (RFC 1939 §3): lines end in CRLF whatever the blob
//! holds, lines starting with `.` are byte-stuffed, and `.CRLF` ends the response.
//!
//! Sizes in STAT and LIST are [`wire_size`]: the octets the client has once it undoes the
//! byte-stuffing, i.e. the message with CRLF line endings (RFC 1939 §5 asks for the size
//! "as transmitted", and the octet counts clients such as poplib compute must match it).
//! Both the size and the encoding come from the same [`lines`] split, so they cannot
//! disagree.

/// The lines of `message` without their terminators. A line ends at LF (a CR before it
/// belongs to the terminator); a last line without LF still counts, and a lone CR at its
/// very end is taken as a truncated CRLF.
pub fn lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    let empty = message.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// The size the client sees: every line plus CRLF.
pub fn wire_size(message: &[u8]) -> u64 {
    lines(message).map(|l| l.len() as u64 + 2).sum()
}

/// How much of a message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// RETR.
    Whole,
    /// TOP: the header, the blank line after it, and this many body lines (RFC 1939 §7).
    Top(u32),
}

/// Encodes a message as a multi-line response body in pieces, so a large message goes out
/// in bounded chunks instead of one copy of the whole.
pub struct Encoder<'a> {
    lines: Box<dyn Iterator<Item = &'a [u8]> + Send + 'a>,
    extent: Extent,
    in_header: bool,
    body_lines_sent: u32,
    done: bool,
}

impl<'a> Encoder<'a> {
    pub fn new(message: &'a [u8], extent: Extent) -> Encoder<'a> {
        Encoder {
            lines: Box::new(lines(message)),
            extent,
            in_header: true,
            body_lines_sent: 0,
            done: false,
        }
    }

    /// Appends encoded lines to `out` until it holds at least `budget` bytes or the message
    /// is complete; the final call appends the terminating `.CRLF`. Returns true when done.
    pub fn fill(&mut self, out: &mut Vec<u8>, budget: usize) -> bool {
        while !self.done && out.len() < budget {
            match self.next_line() {
                Some(line) => {
                    if line.first() == Some(&b'.') {
                        out.push(b'.');
                    }
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
                None => {
                    out.extend_from_slice(b".\r\n");
                    self.done = true;
                }
            }
        }
        self.done
    }

    fn next_line(&mut self) -> Option<&'a [u8]> {
        if let Extent::Top(limit) = self.extent {
            if !self.in_header {
                if self.body_lines_sent >= limit {
                    return None;
                }
                self.body_lines_sent += 1;
            }
        }
        let line = self.lines.next()?;
        if line.is_empty() {
            self.in_header = false;
        }
        Some(line)
    }
}

/// The whole encoding in one buffer; for tests and the fuzzer.
pub fn encode(message: &[u8], extent: Extent) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(message, extent).fill(&mut out, usize::MAX);
    out
}

/// Undoes [`encode`] as a client does (RFC 1939 §3); for tests and the fuzzer.
pub fn decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let body = encoded.strip_suffix(b".\r\n")?;
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_table() {
        let cases: &[(&[u8], Extent, &[u8])] = &[
            (b"", Extent::Whole, b".\r\n"),
            (b"a\r\nb\r\n", Extent::Whole, b"a\r\nb\r\n.\r\n"),
            (b"a\nb\n", Extent::Whole, b"a\r\nb\r\n.\r\n"),
            (b"a\nb", Extent::Whole, b"a\r\nb\r\n.\r\n"),
            (b"a\r\nb\r", Extent::Whole, b"a\r\nb\r\n.\r\n"),
            (b"a\rb\n", Extent::Whole, b"a\rb\r\n.\r\n"),
            (b"\n", Extent::Whole, b"\r\n.\r\n"),
            (
                b".\r\n..x\r\n. \n",
                Extent::Whole,
                b"..\r\n...x\r\n.. \r\n.\r\n",
            ),
            (b"a\r\n\r\n.\r\n", Extent::Whole, b"a\r\n\r\n..\r\n.\r\n"),
            (
                b"S: x\r\nT: y\r\n\r\n1\r\n2\r\n3\r\n",
                Extent::Top(0),
                b"S: x\r\nT: y\r\n\r\n.\r\n",
            ),
            (
                b"S: x\r\n\r\n1\r\n2\r\n3\r\n",
                Extent::Top(2),
                b"S: x\r\n\r\n1\r\n2\r\n.\r\n",
            ),
            (
                b"S: x\r\n\r\n1\r\n",
                Extent::Top(5),
                b"S: x\r\n\r\n1\r\n.\r\n",
            ),
            (
                b"S: x\n\n.1\n\n2\n",
                Extent::Top(2),
                b"S: x\r\n\r\n..1\r\n\r\n.\r\n",
            ),
            (
                b"S: x\r\nT: y\r\n",
                Extent::Top(1),
                b"S: x\r\nT: y\r\n.\r\n",
            ),
            (b"", Extent::Top(3), b".\r\n"),
        ];
        for (message, extent, expected) in cases {
            assert_eq!(
                String::from_utf8_lossy(&encode(message, *extent)),
                String::from_utf8_lossy(expected),
                "message {:?} {extent:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn size_is_the_decoded_length() {
        for message in [
            &b""[..],
            b"a",
            b"a\n",
            b"a\r\n",
            b"a\r",
            b"\r\n\r\n",
            b".\n..\r\n.",
            b"x\ry\rz",
            b"Subject: hi\n\nbody\n.\n",
        ] {
            let decoded = decode(&encode(message, Extent::Whole)).unwrap();
            assert_eq!(decoded.len() as u64, wire_size(message), "{message:?}");
        }
    }

    #[test]
    fn chunked_fill_matches_one_shot() {
        let message: Vec<u8> = (0..500)
            .flat_map(|i| format!(".line {i}\n").into_bytes())
            .collect();
        let mut encoder = Encoder::new(&message, Extent::Whole);
        let mut out = Vec::new();
        let mut calls = 0;
        loop {
            let budget = out.len() + 100;
            if encoder.fill(&mut out, budget) {
                break;
            }
            calls += 1;
        }
        assert!(calls > 10);
        assert_eq!(out, encode(&message, Extent::Whole));
    }
}
