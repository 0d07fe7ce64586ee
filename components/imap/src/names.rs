//! Mailbox names: wire form to stored form and back, validation, LIST wildcards.
//!
//! Names are stored as UTF-8 with "/" as hierarchy delimiter; INBOX is case-insensitive
//! (RFC 9051 §5.1). IMAP4rev1 clients exchange names in modified UTF-7, IMAP4rev2 clients in
//! UTF-8.

use imap_codec::imap_types::mailbox::Mailbox;

use crate::mutf7;

pub const DELIMITER: char = '/';
/// The `folders.name` column is VARCHAR(255).
const MAX_NAME_BYTES: usize = 255;
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("mailbox name is not valid modified UTF-7 or UTF-8")]
    Encoding,
    #[error("mailbox name is empty")]
    Empty,
    #[error("mailbox name is too long")]
    TooLong,
    #[error("mailbox name has an empty hierarchy level")]
    EmptyLevel,
    #[error("mailbox name must not contain wildcards or control characters")]
    BadCharacter,
}

/// The raw bytes a client sent as mailbox name ("INBOX" for any spelling of it).
pub fn wire_bytes<'a>(mailbox: &'a Mailbox<'_>) -> &'a [u8] {
    match mailbox {
        Mailbox::Inbox => b"INBOX",
        Mailbox::Other(other) => other.inner().as_ref(),
    }
}

/// Converts a client's mailbox name to the stored form, without validating it.
pub fn from_wire_bytes(bytes: &[u8], utf8: bool) -> Result<String, NameError> {
    let text = std::str::from_utf8(bytes).map_err(|_| NameError::Encoding)?;
    let mut name = if utf8 {
        text.to_string()
    } else {
        mutf7::decode(text).ok_or(NameError::Encoding)?
    };
    while name.len() > 1 && name.ends_with(DELIMITER) {
        name.pop();
    }
    Ok(canonical_inbox(name))
}

/// Converts and validates a name a client wants to create, select or rename to.
pub fn from_wire(mailbox: &Mailbox<'_>, utf8: bool) -> Result<String, NameError> {
    let name = from_wire_bytes(wire_bytes(mailbox), utf8)?;
    validate(&name)?;
    Ok(name)
}

/// "inbox", "Inbox/x" ... are INBOX and INBOX/x.
fn canonical_inbox(name: String) -> String {
    if name
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("INBOX"))
    {
        let rest = &name[5..];
        if rest.is_empty() || rest.starts_with(DELIMITER) {
            return format!("INBOX{rest}");
        }
    }
    name
}

pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name.chars().any(|c| c == '*' || c == '%' || c.is_control()) {
        return Err(NameError::BadCharacter);
    }
    let levels: Vec<&str> = name.split(DELIMITER).collect();
    if levels.len() > MAX_DEPTH {
        return Err(NameError::TooLong);
    }
    if levels.iter().any(|l| l.is_empty()) {
        return Err(NameError::EmptyLevel);
    }
    Ok(())
}

/// The stored name as the client should see it.
pub fn to_wire(name: &str, utf8: bool) -> Mailbox<'static> {
    if name == "INBOX" {
        return Mailbox::Inbox;
    }
    let text = if utf8 {
        name.to_string()
    } else {
        mutf7::encode(name)
    };
    Mailbox::try_from(text).unwrap_or(Mailbox::Inbox)
}

/// The parents a name implies: "a/b/c" has "a" and "a/b".
pub fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(DELIMITER).map(move |(i, _)| &name[..i])
}

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%` anything but the
/// delimiter. The INBOX prefix matches case-insensitively.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = canonical_inbox(pattern.to_string());
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // dp[j]: pattern[..i] matches name[..j].
    let mut dp = vec![false; n.len() + 1];
    dp[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    if dp[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    if pc == '%' && j < n.len() && n[j] == DELIMITER {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if dp[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[n.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("*", "INBOX"));
        assert!(matches("*", "a/b/c"));
        assert!(matches("%", "Sent"));
        assert!(!matches("%", "a/b"));
        assert!(matches("a/%", "a/b"));
        assert!(!matches("a/%", "a/b/c"));
        assert!(matches("a/*", "a/b/c"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("S%", "Sent"));
        assert!(!matches("S%", "Drafts"));
        assert!(matches("%/%", "a/b"));
    }

    #[test]
    fn names_are_validated_and_canonical() {
        assert_eq!(from_wire_bytes(b"inbox", false).unwrap(), "INBOX");
        assert_eq!(from_wire_bytes(b"Inbox/x", false).unwrap(), "INBOX/x");
        assert_eq!(
            from_wire_bytes(b"Entw&APw-rfe/", false).unwrap(),
            "Entwürfe"
        );
        assert_eq!(
            from_wire_bytes("Entwürfe".as_bytes(), true).unwrap(),
            "Entwürfe"
        );
        assert!(validate("a//b").is_err());
        assert!(validate("a*").is_err());
        assert!(validate("").is_err());
        assert_eq!(parents("a/b/c").collect::<Vec<_>>(), vec!["a", "a/b"]);
    }
}
