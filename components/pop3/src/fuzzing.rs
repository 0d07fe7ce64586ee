//! Entry points for the cargo-fuzz targets in `fuzz/` (and the stable smoke test below): each
//! must never panic, and asserts the invariants the session relies on.

use crate::command::{parse_command, Command};
use crate::message::{self, Extent};
use crate::sasl;

/// Splits `input` into lines as the session does and parses each one. A parsed command
/// must re-parse identically from its canonical line, and SASL responses (AUTH's initial
/// response, or any line taken as a continuation) must decode or fail cleanly.
pub fn command_lines(input: &[u8]) {
    for line in input.split_inclusive(|&b| b == b'\n') {
        match parse_command(line) {
            Ok(command) => {
                let again = parse_command(&command.to_line());
                assert_eq!(again.as_ref(), Ok(&command), "round trip of {command:?}");
                if let Command::Auth {
                    initial_response: Some(ir),
                    ..
                } = &command
                {
                    sasl_response(ir.expose());
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        sasl_response(line.strip_suffix(b"\n").unwrap_or(line));
    }
}

fn sasl_response(line: &[u8]) {
    if let Ok(decoded) = sasl::decode_response(line) {
        if let Ok(credentials) = sasl::parse_plain(&decoded) {
            assert!(!credentials.authcid.is_empty() && !credentials.password.expose().is_empty());
        }
    }
}

/// Oracle for message encoding: unstuffing what RETR sends gives back exactly
/// [`message::wire_size`] octets, every line ends in CRLF, and TOP sends a prefix of RETR.
pub fn message_encoding(input: &[u8]) {
    let whole = message::encode(input, Extent::Whole);
    let decoded = message::decode(&whole).expect("encoding ends with .CRLF");
    assert_eq!(decoded.len() as u64, message::wire_size(input));
    let body = &whole[..whole.len() - 3];
    for line in body.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "line without CRLF: {line:?}");
        assert!(!line[..line.len() - 2].contains(&b'\n'));
    }
    let lines = input.first().copied().unwrap_or(0) as u32 % 8;
    let top = message::encode(input, Extent::Top(lines));
    assert!(whole.starts_with(&top[..top.len() - 3]));
}

#[cfg(test)]
mod tests {
    /// A deterministic spray of inputs built from the protocol's alphabet, so the fuzz
    /// entry points run (and their invariants hold) in every `cargo test`.
    #[test]
    fn smoke() {
        const PIECES: &[&[u8]] = &[
            b"USER ",
            b"PASS ",
            b"AUTH ",
            b"PLAIN ",
            b"TOP ",
            b"LIST ",
            b"RETR ",
            b"UIDL ",
            b"DELE ",
            b"STAT",
            b"QUIT",
            b"CAPA",
            b"STLS",
            b"1",
            b"0",
            b"99999999999",
            b" ",
            b"\r\n",
            b"\n",
            b"\r",
            b".",
            b"..",
            b"=",
            b"*",
            b"AGFsaWNlAHNlY3JldA==",
            b"\0",
            b"\xff",
            b"a@b",
            b"\t",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(state % 9) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                input.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize]);
            }
            super::command_lines(&input);
            super::message_encoding(&input);
        }
    }
}
