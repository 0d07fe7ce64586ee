//! Header field text as Postbay writes it into messages.
//!
//! [`encode_text`] turns a decoded value of an unstructured field (RFC 5322 §3.2.5: Subject,
//! Comments) into what may stand in a message header: printable ASCII as it is, anything
//! else as RFC 2047 encoded words, folded so that no line passes 76 characters.
//! [`header_value`] takes a value someone else encoded (Rspamd's rewritten Subject) and
//! makes sure it is one field's worth of ASCII.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// UTF-8 bytes per encoded word: 52 base64 characters, a 64-character word. RFC 2047 §2
/// allows 75 per word but only 76 per line holding one, and the first line also carries the
/// field name (`Subject: ` and a word: 73).
const MAX_PAYLOAD: usize = 39;

/// The value to write after `Name: `. ASCII text without control characters is kept as it
/// is; otherwise the whole value becomes `B` encoded words of UTF-8 (RFC 2047 §4.1), each
/// holding whole characters (§5: an encoded word must not split a character), joined by
/// folding whitespace (`CRLF SP`), which decoders drop between adjacent encoded words (§6.2).
pub fn encode_text(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t');
    // An ASCII value that merely looks like an encoded word would be decoded by readers.
    if plain && !value.contains("=?") {
        return value.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        let c = if c.is_control() && c != '\t' { ' ' } else { c };
        if chunk.len() + c.len_utf8() > MAX_PAYLOAD {
            words.push(word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(word(&chunk));
    }
    words.join("\r\n ")
}

/// A value that is meant to be written as it is (Rspamd's reply `subject` arrives encoded
/// already, `=?UTF-8?Q?...?=`): folding is undone (RFC 5322 §2.2.3) and other line breaks
/// dropped, so it cannot start a new field; ASCII, encoded words included, is kept; raw
/// non-ASCII text is encoded with [`encode_text`].
pub fn header_value(value: &str) -> String {
    let unfolded = value.replace("\r\n", "").replace(['\r', '\n'], "");
    if unfolded.is_ascii() {
        unfolded
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect()
    } else {
        encode_text(&unfolded)
    }
}

fn word(text: &str) -> String {
    format!("=?UTF-8?B?{}?=", B64.encode(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reader gets back: mail-parser decodes the header as a mail client would.
    fn decoded(value: &str) -> String {
        let raw = format!("Subject: {value}\r\n\r\nbody\r\n");
        let message = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .expect("parses");
        message.subject().unwrap_or_default().to_string()
    }

    #[test]
    fn values_round_trip_through_a_decoder() {
        let long = "Grüße aus Köln, ".repeat(12);
        for value in [
            "***SPAM*** lunch",
            "***SPAM*** Grüße",
            "***SPAM*** 日本語のテキスト",
            "***SPAM*** =?utf-8?q?looks_encoded?=",
            "",
            long.as_str(),
        ] {
            let encoded = encode_text(value);
            assert_eq!(decoded(&encoded), value, "{encoded}");
            for line in encoded.split("\r\n") {
                assert!(line.len() + "Subject: ".len() <= 76, "{line}");
                assert!(line.is_ascii(), "{line}");
            }
        }
    }

    #[test]
    fn header_ready_values_are_kept_and_cannot_add_fields() {
        let rspamd = "=?UTF-8?Q?=2A=2A=2A_SPAM_=2A=2A=2A_Gr=C3=BC=C3=9Fe?=";
        assert_eq!(header_value(rspamd), rspamd);
        assert_eq!(decoded(&header_value(rspamd)), "*** SPAM *** Grüße");
        assert_eq!(header_value("long\r\n folded"), "long folded");
        assert_eq!(
            header_value("a\r\nBcc: x@example.test"),
            "aBcc: x@example.test"
        );
        assert_eq!(
            decoded(&header_value("*** SPAM *** Grüße")),
            "*** SPAM *** Grüße"
        );
    }

    #[test]
    fn plain_ascii_stays_readable_and_control_characters_go() {
        assert_eq!(encode_text("***SPAM*** lunch"), "***SPAM*** lunch");
        let encoded = encode_text("a\r\nBcc: x@example.test");
        assert!(
            !encoded.contains('\n') || encoded.contains("\r\n "),
            "{encoded}"
        );
        assert_eq!(decoded(&encoded), "a  Bcc: x@example.test");
    }
}
