//! Reading SMTP/LMTP command lines with smtp-proto's sans-IO receiver (RFC 5321 §4.1),
//! with the line-length limit enforced however the bytes arrive. [`CommandReader::step`]
//! works on a byte slice, so it is tested and fuzzed without a socket; [`CommandReader::next`]
//! only adds the waiting.

use std::time::Duration;

use postbay_net::wire::{ReadError, Wire};
use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};

/// Longest command line accepted, CRLF included. RFC 5321 §4.5.3.1.4 asks for at least
/// 512; like Postfix we allow more, and smtp-proto's own buffer limit is the same.
pub const MAX_COMMAND_LINE: usize = smtp_proto::request::receiver::MAX_LINE_LENGTH;

/// Reads command lines, enforcing [`MAX_COMMAND_LINE`] however the bytes arrive.
#[derive(Default)]
pub struct CommandReader {
    receiver: RequestReceiver,
    /// Inside an over-long line: drop bytes up to its end, then report it once.
    discarding: bool,
    /// A MAIL parameter smtp-proto does not know, taken off MAIL lines before parsing.
    extract: Option<&'static str>,
    /// Its value on the last MAIL line.
    extracted: Option<String>,
}

/// What one [`CommandReader::step`] made of the input.
pub type Parsed = Option<Result<Request<String>, smtp_proto::Error>>;

impl CommandReader {
    /// A reader that removes `param=value` from MAIL lines before smtp-proto (which refuses
    /// parameters it does not know) parses them; [`CommandReader::take_extracted`] gives
    /// the value. Lines are then parsed whole, never from a partial read.
    pub fn extracting_mail_param(param: &'static str) -> CommandReader {
        CommandReader {
            extract: Some(param),
            ..CommandReader::default()
        }
    }

    /// The extracted parameter of the command just returned, if it had one.
    pub fn take_extracted(&mut self) -> Option<String> {
        self.extracted.take()
    }

    /// Reads the next complete command, or the protocol error it caused.
    pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        wire: &mut Wire<S>,
        timeout: Duration,
    ) -> Result<Result<Request<String>, smtp_proto::Error>, ReadError> {
        loop {
            if !wire.pending().is_empty() {
                let (consumed, parsed) = self.step(wire.pending());
                wire.consume(consumed);
                if let Some(outcome) = parsed {
                    return Ok(outcome);
                }
            }
            wire.fill(timeout).await?;
        }
    }

    /// Consumes what it can of `pending` and says how many bytes it took; `None` means
    /// "need more bytes". No I/O: the caller drops the consumed bytes from its buffer.
    pub fn step(&mut self, pending: &[u8]) -> (usize, Parsed) {
        let newline = pending.iter().position(|&b| b == b'\n');
        if self.discarding {
            return match newline {
                Some(pos) => {
                    self.discarding = false;
                    (pos + 1, Some(Err(smtp_proto::Error::ResponseTooLong)))
                }
                None => (pending.len(), None),
            };
        }
        let buffered = self.receiver.buf().len();
        match newline {
            Some(pos) if buffered + pos + 1 > MAX_COMMAND_LINE => {
                self.receiver = RequestReceiver::default();
                return (pos + 1, Some(Err(smtp_proto::Error::ResponseTooLong)));
            }
            None if buffered + pending.len() > MAX_COMMAND_LINE => {
                self.receiver = RequestReceiver::default();
                self.discarding = true;
                return (pending.len(), None);
            }
            _ => {}
        }
        if let (Some(param), 0) = (self.extract, buffered) {
            let Some(pos) = newline else {
                // Wait for the whole line; the length check above bounds the wait.
                return (0, None);
            };
            self.extracted = None;
            if let Some((line, value)) = strip_mail_param(&pending[..=pos], param) {
                self.extracted = Some(value);
                let mut iter = line.iter();
                let parsed = self.receiver.ingest(&mut iter).map(Request::into_owned);
                return match parsed {
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => (pos + 1, None),
                    other => (pos + 1, Some(other)),
                };
            }
        }
        let mut iter = pending.iter();
        let parsed = self.receiver.ingest(&mut iter).map(Request::into_owned);
        let consumed = pending.len() - iter.len();
        match parsed {
            Err(smtp_proto::Error::NeedsMoreData { .. }) => (consumed, None),
            // The receiver's own buffer filled up inside a line: the rest of that line must
            // be dropped too, or its tail would be read as a command of its own.
            Err(smtp_proto::Error::ResponseTooLong)
                if consumed == 0 || pending[consumed - 1] != b'\n' =>
            {
                self.receiver = RequestReceiver::default();
                self.discarding = true;
                (consumed, None)
            }
            other => (consumed, Some(other)),
        }
    }
}

/// `line` without its ` param=value` when it is a MAIL command carrying one.
fn strip_mail_param(line: &[u8], param: &str) -> Option<(Vec<u8>, String)> {
    if line.len() < 5 || !line[..5].eq_ignore_ascii_case(b"MAIL ") {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    let body = text.trim_end_matches(['\r', '\n']);
    let mut value = None;
    let mut kept = Vec::new();
    for word in body.split(' ') {
        match word.split_once('=') {
            Some((key, v)) if value.is_none() && key.eq_ignore_ascii_case(param) => {
                value = Some(v.to_string());
            }
            _ => kept.push(word),
        }
    }
    let mut out = kept.join(" ").into_bytes();
    out.extend_from_slice(b"\r\n");
    Some((out, value?))
}

/// Reads one raw line, such as a SASL response between AUTH challenges (RFC 4954 §4), and
/// returns it without its line end; `None` when it is longer than `max` (then it is read to
/// its end and dropped, so the session stays in step).
pub async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    max: usize,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, ReadError> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let pending = wire.pending();
        match pending.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                if !too_long && line.len() + pos <= max + 1 {
                    line.extend_from_slice(&pending[..pos]);
                } else {
                    too_long = true;
                }
                wire.consume(pos + 1);
                if too_long {
                    return Ok(None);
                }
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            None => {
                let n = pending.len();
                if !too_long && line.len() + n <= max + 1 {
                    line.extend_from_slice(pending);
                } else {
                    too_long = true;
                    line = Vec::new();
                }
                wire.consume(n);
            }
        }
        wire.fill(timeout).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to `reader` in pieces of `chunk` bytes and collects what it made of
    /// it, with the parameter it extracted from each command.
    fn feed(
        mut reader: CommandReader,
        input: &[u8],
        chunk: usize,
    ) -> Vec<(Result<String, smtp_proto::Error>, Option<String>)> {
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            buffer.extend_from_slice(piece);
            loop {
                let (consumed, parsed) = reader.step(&buffer);
                buffer.drain(..consumed);
                match parsed {
                    Some(r) => out.push((r.map(|r| format!("{r:?}")), reader.take_extracted())),
                    None if consumed == 0 || buffer.is_empty() => break,
                    None => {}
                }
            }
        }
        out
    }

    fn parse_all(input: &[u8], chunk: usize) -> Vec<Result<String, smtp_proto::Error>> {
        feed(CommandReader::default(), input, chunk)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    #[test]
    fn commands_parse_the_same_however_the_bytes_arrive() {
        let input =
            b"EHLO client.test\r\nMAIL FROM:<a@b.test> SIZE=10\r\nRCPT TO:<c@d.test>\r\nQUIT\r\n";
        let whole = parse_all(input, input.len());
        assert_eq!(whole.len(), 4);
        assert!(whole.iter().all(Result::is_ok), "{whole:?}");
        for chunk in [1, 2, 7, 13] {
            assert_eq!(parse_all(input, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn an_extracted_mail_parameter_is_taken_off_however_the_bytes_arrive() {
        let input = b"LHLO q\r\nMAIL FROM:<a@b.test> XTRACE=00-ab-cd-01 TRANSID=<1@x>\r\nRCPT TO:<c@d.test>\r\nMAIL FROM:<e@f.test>\r\n";
        for chunk in [input.len(), 1, 5, 17] {
            let out: Vec<(String, Option<String>)> =
                feed(CommandReader::extracting_mail_param("XTRACE"), input, chunk)
                    .into_iter()
                    .map(|(r, x)| (r.unwrap(), x))
                    .collect();
            assert_eq!(out.len(), 4, "chunk {chunk}: {out:?}");
            assert_eq!(out[1].1.as_deref(), Some("00-ab-cd-01"), "chunk {chunk}");
            assert!(
                out[1].0.contains("a@b.test") && out[1].0.contains("1@x"),
                "{}",
                out[1].0
            );
            assert_eq!(out[3].1, None, "a later MAIL without it has none");
        }
        // A reader that extracts nothing still refuses the unknown parameter.
        assert!(parse_all(b"MAIL FROM:<a@b.test> XTRACE=1\r\n", 64)[0].is_err());
    }

    #[test]
    fn an_over_long_line_is_reported_once_and_the_next_command_still_parses() {
        let mut input = b"NOOP ".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_COMMAND_LINE + 10));
        input.extend_from_slice(b"\r\nQUIT\r\n");
        for chunk in [input.len(), 100, 4096] {
            let got = parse_all(&input, chunk);
            assert_eq!(
                got.len(),
                2,
                "chunk {chunk}: {:?}",
                got.iter()
                    .map(|r| r.as_ref().map(|s| s.chars().take(40).collect::<String>()))
                    .collect::<Vec<_>>()
            );
            assert!(matches!(got[0], Err(smtp_proto::Error::ResponseTooLong)));
            assert_eq!(got[1].as_deref(), Ok("Quit"));
        }
    }
}
