//! Parsing the two client messages of RFC 5802 section 7. Everything here is client-controlled,
//! so every field is bounded and checked before anything is allocated for it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::{Key, ScramError};

/// Longest client message we read. Real ones are well under 200 bytes; this leaves room for
/// long usernames and extensions while keeping a hostile client cheap.
pub(crate) const MAX_MESSAGE_LEN: usize = 2048;
/// Longest username or authzid, decoded, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Longest client nonce we take (clients send 18 to 32 random bytes' worth).
pub(crate) const MAX_CLIENT_NONCE_LEN: usize = 256;

/// The client-first message, split up (RFC 5802 section 7, `client-first-message`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirstMessage {
    /// `gs2-header`, trailing comma included: what `c=` must echo back.
    pub(crate) gs2_header: String,
    /// `client-first-message-bare`, the first part of AuthMessage.
    pub(crate) bare: String,
    /// Decoded `n=`.
    pub(crate) username: String,
    /// `r=`, the client's part of the nonce.
    pub(crate) client_nonce: String,
}

/// The client-final message, split up (RFC 5802 section 7, `client-final-message`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFinalMessage<'a> {
    /// Decoded `c=`.
    pub(crate) channel_binding: Vec<u8>,
    /// `r=`, the combined nonce.
    pub(crate) nonce: &'a str,
    /// `client-final-message-without-proof`, the last part of AuthMessage.
    pub(crate) without_proof: &'a str,
    /// Decoded `p=`.
    pub(crate) proof: Key,
}

fn text(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::TooLong {
            limit: MAX_MESSAGE_LEN,
        });
    }
    let text = std::str::from_utf8(message)
        .map_err(|_| ScramError::InvalidEncoding("message is not UTF-8"))?;
    // value-char and value-safe-char exclude NUL everywhere (RFC 5802 section 7).
    if text.contains('\0') {
        return Err(ScramError::InvalidEncoding("message contains NUL"));
    }
    Ok(text)
}

impl ClientFirstMessage {
    pub(crate) fn parse(message: &[u8]) -> Result<ClientFirstMessage, ScramError> {
        let text = text(message)?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","  (RFC 5802 section 7)
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::InvalidEncoding("no gs2 header"))?;
        match flag {
            // "n": client does not support channel binding; "y": it does but thinks we do
            // not, which is true since we never advertise -PLUS (RFC 5802 section 6).
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::InvalidEncoding("bad gs2 channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::InvalidEncoding("gs2 header is not terminated"))?;
        let authzid = match authzid {
            "" => None,
            _ => match authzid.strip_prefix("a=") {
                Some(name) => Some(decode_saslname(name)?),
                None => return Err(ScramError::InvalidEncoding("bad gs2 authzid")),
            },
        };
        let gs2_len = text.len() - bare.len();

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut fields = bare.split(',');
        let mut field = fields.next().unwrap_or_default();
        if field.starts_with("m=") {
            // RFC 5802 section 5.1: "m" MUST cause authentication failure.
            return Err(ScramError::ExtensionsNotSupported);
        }
        let username = match field.strip_prefix("n=") {
            Some(name) => decode_saslname(name)?,
            None => return Err(ScramError::InvalidEncoding("expected n=username")),
        };
        field = fields
            .next()
            .ok_or(ScramError::InvalidEncoding("expected r=nonce"))?;
        let client_nonce = field
            .strip_prefix("r=")
            .ok_or(ScramError::InvalidEncoding("expected r=nonce"))?;
        if !is_nonce(client_nonce, MAX_CLIENT_NONCE_LEN) {
            return Err(ScramError::InvalidEncoding("bad client nonce"));
        }
        check_extensions(fields)?;

        if authzid.as_ref().is_some_and(|a| *a != username) {
            return Err(ScramError::AuthzidNotAllowed);
        }
        Ok(ClientFirstMessage {
            gs2_header: text[..gs2_len].to_string(),
            bare: bare.to_string(),
            username,
            client_nonce: client_nonce.to_string(),
        })
    }
}

impl<'a> ClientFinalMessage<'a> {
    pub(crate) fn parse(message: &'a [u8]) -> Result<ClientFinalMessage<'a>, ScramError> {
        let text = text(message)?;
        // client-final-message = client-final-message-without-proof "," proof
        let (without_proof, proof) = text
            .rsplit_once(',')
            .ok_or(ScramError::InvalidEncoding("no proof"))?;
        let proof = proof
            .strip_prefix("p=")
            .ok_or(ScramError::InvalidEncoding("expected p=proof last"))?;
        let proof = decode_base64(proof, "proof is not base64")?;
        let proof = Key::try_from(proof.as_slice())
            .map_err(|_| ScramError::InvalidEncoding("proof is not 32 bytes"))?;

        // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
        let mut fields = without_proof.split(',');
        let channel_binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or(ScramError::InvalidEncoding("expected c=channel-binding"))?;
        let channel_binding = decode_base64(channel_binding, "channel binding is not base64")?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or(ScramError::InvalidEncoding("expected r=nonce"))?;
        check_extensions(fields)?;
        Ok(ClientFinalMessage {
            channel_binding,
            nonce,
            without_proof,
            proof,
        })
    }
}

/// `extensions = attr-val *("," attr-val)`, `attr-val = ALPHA "=" value`; values already
/// exclude "," (we split on it) and NUL (checked up front). Unknown extensions are ignored,
/// except the reserved `m` (RFC 5802 section 5.1).
fn check_extensions<'a>(fields: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for field in fields {
        let bytes = field.as_bytes();
        if bytes.len() < 3 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(ScramError::InvalidEncoding("bad extension attribute"));
        }
        if bytes[0] == b'm' {
            return Err(ScramError::ExtensionsNotSupported);
        }
    }
    Ok(())
}

/// `printable = %x21-2B / %x2D-7E` (ASCII without "," and space), 1..=`limit` of them.
pub(crate) fn is_nonce(nonce: &str, limit: usize) -> bool {
    !nonce.is_empty()
        && nonce.len() <= limit
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// `saslname = 1*(value-safe-char / "=2C" / "=3D")` (RFC 5802 sections 5.1 and 7). ABNF
/// literals are case-insensitive (RFC 5234 section 2.3), so `=2c` counts as well.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    if name.is_empty() {
        return Err(ScramError::InvalidUsernameEncoding("empty name"));
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        match escape {
            Some(e) if e.eq_ignore_ascii_case("2C") => decoded.push(','),
            Some(e) if e.eq_ignore_ascii_case("3D") => decoded.push('='),
            // RFC 5802 section 5.1: the server MUST fail on any other "=".
            _ => {
                return Err(ScramError::InvalidUsernameEncoding(
                    "'=' not followed by 2C or 3D",
                ))
            }
        }
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    if decoded.len() > MAX_NAME_LEN {
        return Err(ScramError::InvalidUsernameEncoding("name too long"));
    }
    Ok(decoded)
}

fn decode_base64(text: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    B64.decode(text)
        .map_err(|_| ScramError::InvalidEncoding(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_saslnames() {
        let table = [
            ("user", "user"),
            ("a=2Cb", "a,b"),
            ("a=3Db", "a=b"),
            ("=3D=2C", "=,"),
            ("x=2cy=3dz", "x,y=z"),
            ("jöhn@exämple.org", "jöhn@exämple.org"),
        ];
        for (input, want) in table {
            assert_eq!(decode_saslname(input).as_deref(), Ok(want), "{input}");
        }
        for input in ["", "=", "a=", "a=2", "a=4F", "a==3D", "=2D"] {
            assert!(
                matches!(
                    decode_saslname(input),
                    Err(ScramError::InvalidUsernameEncoding(_))
                ),
                "{input}"
            );
        }
        assert!(decode_saslname(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(decode_saslname(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn nonces_are_printable_without_commas() {
        assert!(is_nonce(
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            64
        ));
        for bad in ["", "a b", "a,b", "é", "a\u{7f}", "a\tb"] {
            assert!(!is_nonce(bad, 64), "{bad:?}");
        }
        assert!(!is_nonce("aaaa", 3));
    }
}
