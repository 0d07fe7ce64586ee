//! Serialising responses. Everything imap-codec can express goes through its
//! `ResponseCodec`; the few RFC 4731/5258/9051 forms it lacks (ESEARCH, LIST extended data)
//! are written by [`raw`] from already-validated pieces.

use std::borrow::Cow;

use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::{Tag, Text};
use imap_codec::imap_types::response::{
    Code, CodeOther, CommandContinuationRequest, Data, Response, Status, StatusBody, StatusKind,
    Tagged,
};
use imap_codec::ResponseCodec;

/// A status text that imap-codec accepts: no CR/LF, not empty.
pub fn text(s: &str) -> Text<'static> {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = if cleaned.trim().is_empty() {
        "done".to_string()
    } else {
        cleaned
    };
    Text::try_from(cleaned).unwrap_or_else(|_| Text::try_from("done").expect("valid text"))
}

/// A response code imap-codec has no variant for (RFC 5530 and friends), e.g. `NONEXISTENT`.
pub fn code(atom: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(atom.as_bytes()))
}

pub fn encode(out: &mut Vec<u8>, response: &Response<'_>) {
    out.extend_from_slice(&ResponseCodec::default().encode(response).dump());
}

pub fn data(out: &mut Vec<u8>, data: Data<'_>) {
    encode(out, &Response::Data(data));
}

pub fn tagged(
    out: &mut Vec<u8>,
    tag: &Tag<'_>,
    kind: StatusKind,
    code: Option<Code<'_>>,
    message: &str,
) {
    let status = Status::Tagged(Tagged {
        tag: tag.clone(),
        body: StatusBody {
            kind,
            code,
            text: text(message),
        },
    });
    encode(out, &Response::Status(status));
}

pub fn untagged(out: &mut Vec<u8>, kind: StatusKind, code: Option<Code<'_>>, message: &str) {
    let status = Status::Untagged(StatusBody {
        kind,
        code,
        text: text(message),
    });
    encode(out, &Response::Status(status));
}

pub fn bye(out: &mut Vec<u8>, message: &str) {
    let status = Status::Bye(imap_codec::imap_types::response::Bye {
        code: None,
        text: text(message),
    });
    encode(out, &Response::Status(status));
}

/// `+ text` continuation request.
pub fn continue_text(out: &mut Vec<u8>, message: &str) {
    match CommandContinuationRequest::basic(None, text(message)) {
        Ok(cont) => encode(out, &Response::CommandContinuationRequest(cont)),
        Err(_) => out.extend_from_slice(b"+ \r\n"),
    }
}

/// `+ base64` SASL challenge.
pub fn continue_base64(out: &mut Vec<u8>, challenge: &[u8]) {
    let cont = CommandContinuationRequest::base64(Cow::Owned(challenge.to_vec()));
    encode(out, &Response::CommandContinuationRequest(cont));
}

/// An untagged line imap-codec cannot build; `line` excludes "* " and CRLF.
pub fn raw(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(b"* ");
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An IMAP quoted string for [`raw`] lines.
pub fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Sequence-set syntax for sorted numbers: `1:3,7,9:10`.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_compress() {
        assert_eq!(sequence_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(sequence_set(&[]), "");
    }

    #[test]
    fn tagged_responses_encode() {
        let mut out = Vec::new();
        let tag = Tag::try_from("a1").unwrap();
        tagged(
            &mut out,
            &tag,
            StatusKind::No,
            Some(code("NONEXISTENT")),
            "no\r\nsuch",
        );
        assert_eq!(out, b"a1 NO [NONEXISTENT] no  such\r\n");
    }
}
