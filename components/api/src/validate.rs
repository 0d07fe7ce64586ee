//! Syntax checks for the names Postbay accepts: domains, addresses, DKIM selectors, object
//! names and Secret keys.
//!
//! Addresses are deliberately narrower than RFC 5321 allows: the forms that older MTAs
//! interpret as relay instructions (`%`, `!`, source routes, quoted local parts hiding an `@`)
//! are refused outright, so no alias or mailbox can be turned into an open relay.
//!
//! The `*_PATTERN` constants put the same rules into the CRD schemas (Go RE2 syntax, which
//! these patterns share with Rust's `regex`); length limits travel as `maxLength` instead.

use std::fmt;

/// One DNS label, lowercase, no leading or trailing hyphen.
macro_rules! label {
    () => {
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    };
}
/// A top-level label: like any label but starting with a letter (no all-numeric TLDs).
macro_rules! top_label {
    () => {
        "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
    };
}
/// RFC 5322 `atext` without `%` and `!`.
macro_rules! atext {
    () => {
        "[A-Za-z0-9#$&'*+/=?^_`{|}~-]"
    };
}
macro_rules! domain {
    () => {
        concat!("(", label!(), "\\.)*", top_label!())
    };
}
macro_rules! local_part {
    () => {
        concat!(atext!(), "+(\\.", atext!(), "+)*")
    };
}

/// A lowercase DNS name whose last label starts with a letter.
pub const DOMAIN_PATTERN: &str = concat!("^", domain!(), "$");
/// `local@domain` with a dot-atom local part free of `%` and `!`.
pub const ADDRESS_PATTERN: &str = concat!("^", local_part!(), "@", domain!(), "$");
/// An address, or a bare local part (used by catch-alls).
pub const ADDRESS_OR_LOCAL_PART_PATTERN: &str = concat!("^", local_part!(), "(@", domain!(), ")?$");
/// A DKIM selector: one or more lowercase DNS labels.
pub const SELECTOR_PATTERN: &str = concat!("^", label!(), "(\\.", label!(), ")*$");

/// Longest local part (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain: a DNS name in text form.
pub const MAX_DOMAIN: usize = 253;
/// Longest address: RFC 5321's 256-octet path less its angle brackets.
pub const MAX_ADDRESS: usize = 254;
/// Longest DNS label.
pub const MAX_LABEL: usize = 63;

/// A value that failed a check, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} {problem}")]
pub struct ValidationError {
    field: String,
    value: String,
    problem: Problem,
}

impl ValidationError {
    fn new(field: &str, value: &str, problem: Problem) -> Self {
        ValidationError {
            field: field.to_string(),
            value: value.to_string(),
            problem,
        }
    }

    /// Relabels the error with the path of the field it was read from, e.g. `spec.address`.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }

    /// The field path, `domain` or `address` unless relabelled with [`at`](Self::at).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The offending value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Empty,
    /// `part` is the piece that is too long: `address`, `local part`, `domain`, `label`,
    /// `selector`, `name` or `key`.
    TooLong {
        part: &'static str,
        len: usize,
        max: usize,
    },
    Uppercase,
    EmptyLabel,
    LabelHyphen,
    /// A character outside `a-z`, `0-9` and `-` in a DNS label.
    LabelCharacter(char),
    TopLevelNotAlphabetic,
    MissingAt,
    MultipleAt,
    /// `@host:user@domain` (RFC 5321 source route).
    RoutePrefix,
    /// `"..."@domain`.
    QuotedLocalPart,
    /// `%` or `!`: relay through another host in older MTAs.
    RelayCharacter(char),
    /// A character outside the RFC 5322 `atext` set.
    LocalPartCharacter(char),
    /// A leading, trailing or doubled dot in the local part.
    LocalPartDots,
    /// A character outside `A-Z`, `a-z`, `0-9`, `-`, `_` and `.` in a Secret key.
    KeyCharacter(char),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => write!(f, "is empty"),
            Problem::TooLong { part, len, max } if matches!(*part, "local part" | "label") => {
                write!(f, "has a {part} of {len} characters, at most {max} allowed")
            }
            Problem::TooLong { len, max, .. } => {
                write!(f, "is {len} characters long, at most {max} allowed")
            }
            Problem::Uppercase => write!(f, "must be lowercase"),
            Problem::EmptyLabel => write!(
                f,
                "has an empty DNS label (leading, trailing or doubled dot)"
            ),
            Problem::LabelHyphen => write!(f, "has a DNS label starting or ending with '-'"),
            Problem::LabelCharacter(c) if !c.is_ascii() => write!(
                f,
                "has {c:?} in a DNS label; write internationalized names in their xn-- form"
            ),
            Problem::LabelCharacter(c) => {
                write!(
                    f,
                    "has {c:?} in a DNS label; only a-z, 0-9 and '-' are allowed"
                )
            }
            Problem::TopLevelNotAlphabetic => {
                write!(f, "has a last label not starting with a letter")
            }
            Problem::MissingAt => write!(f, "is not of the form local@domain"),
            Problem::MultipleAt => write!(f, "has more than one '@'"),
            Problem::RoutePrefix => write!(
                f,
                "starts with a source route ('@host:'), which is not accepted"
            ),
            Problem::QuotedLocalPart => write!(f, "has a quoted local part, which is not accepted"),
            Problem::RelayCharacter(c) => write!(
                f,
                "has {c:?} in the local part, which old MTAs treat as a relay instruction"
            ),
            Problem::LocalPartCharacter(c) => {
                write!(f, "has {c:?} in the local part, which is not allowed")
            }
            Problem::LocalPartDots => {
                write!(
                    f,
                    "has a leading, trailing or doubled '.' in the local part"
                )
            }
            Problem::KeyCharacter(c) => write!(
                f,
                "has {c:?}; Secret keys allow only A-Z, a-z, 0-9, '-', '_' and '.'"
            ),
        }
    }
}

/// Checks a mail domain: a lowercase DNS name in ASCII (A-label) form, labels of at most 63
/// characters, at most 253 in all, last label starting with a letter, no trailing dot.
pub fn validate_domain(domain: &str) -> Result<(), ValidationError> {
    check_domain(domain).map_err(|p| ValidationError::new("domain", domain, p))
}

/// Checks `local@domain`: a dot-atom local part of at most 64 characters without `%` or `!`,
/// a domain as for [`validate_domain`], at most 254 characters in all. Source routes, quoted
/// local parts and extra `@` signs are refused.
pub fn validate_address(address: &str) -> Result<(), ValidationError> {
    check_address(address).map_err(|p| ValidationError::new("address", address, p))
}

/// Checks a bare local part as in [`validate_address`].
pub fn validate_local_part(local: &str) -> Result<(), ValidationError> {
    check_local_part(local).map_err(|p| ValidationError::new("local part", local, p))
}

/// Checks a catch-all target: an address, or a bare local part meaning that local part at the
/// domain being configured.
pub fn validate_address_or_local_part(value: &str) -> Result<(), ValidationError> {
    let result = if value.contains('@') {
        check_address(value)
    } else {
        check_local_part(value)
    };
    result.map_err(|p| ValidationError::new("address", value, p))
}

/// Checks a DKIM selector: one or more lowercase DNS labels, at most 63 characters in all.
pub fn validate_selector(selector: &str) -> Result<(), ValidationError> {
    check_labels(selector, MAX_LABEL, "selector")
        .map_err(|p| ValidationError::new("selector", selector, p))
}

/// Checks a Kubernetes object name (RFC 1123 subdomain, as `metadata.name` of most kinds).
pub fn validate_object_name(name: &str) -> Result<(), ValidationError> {
    check_labels(name, MAX_DOMAIN, "name").map_err(|p| ValidationError::new("name", name, p))
}

/// Checks a key of a Secret's `data`/`stringData`.
pub fn validate_secret_key(key: &str) -> Result<(), ValidationError> {
    let check = || {
        if key.is_empty() {
            return Err(Problem::Empty);
        }
        if key.len() > MAX_DOMAIN {
            return Err(Problem::TooLong {
                part: "key",
                len: key.len(),
                max: MAX_DOMAIN,
            });
        }
        match key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            Some(c) => Err(Problem::KeyCharacter(c)),
            None => Ok(()),
        }
    };
    check().map_err(|p| ValidationError::new("key", key, p))
}

fn check_domain(domain: &str) -> Result<(), Problem> {
    check_labels(domain, MAX_DOMAIN, "domain")?;
    let top = domain.rsplit('.').next().unwrap_or(domain);
    if !top.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Problem::TopLevelNotAlphabetic);
    }
    Ok(())
}

/// Dot-separated lowercase DNS labels within `max` characters.
fn check_labels(value: &str, max: usize, part: &'static str) -> Result<(), Problem> {
    if value.is_empty() {
        return Err(Problem::Empty);
    }
    if value.len() > max {
        return Err(Problem::TooLong {
            part,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(Problem::Uppercase);
    }
    for label in value.split('.') {
        if label.is_empty() {
            return Err(Problem::EmptyLabel);
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(Problem::LabelCharacter(c));
        }
        if label.len() > MAX_LABEL {
            return Err(Problem::TooLong {
                part: "label",
                len: label.len(),
                max: MAX_LABEL,
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Problem::LabelHyphen);
        }
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), Problem> {
    if address.is_empty() {
        return Err(Problem::Empty);
    }
    // Order matters: report the trick being attempted, not a side effect of it.
    if address.starts_with('@') {
        return Err(Problem::RoutePrefix);
    }
    if address.contains('"') {
        return Err(Problem::QuotedLocalPart);
    }
    let (local, domain) = match address.split_once('@') {
        None => return Err(Problem::MissingAt),
        Some((_, rest)) if rest.contains('@') => return Err(Problem::MultipleAt),
        Some(parts) => parts,
    };
    check_local_part(local)?;
    check_domain(domain)?;
    if address.len() > MAX_ADDRESS {
        return Err(Problem::TooLong {
            part: "address",
            len: address.len(),
            max: MAX_ADDRESS,
        });
    }
    Ok(())
}

fn check_local_part(local: &str) -> Result<(), Problem> {
    if local.is_empty() {
        return Err(Problem::Empty);
    }
    if local.contains('"') {
        return Err(Problem::QuotedLocalPart);
    }
    if let Some(c) = local.chars().find(|c| matches!(c, '%' | '!')) {
        return Err(Problem::RelayCharacter(c));
    }
    if let Some(c) = local.chars().find(|c| !(*c == '.' || is_atext(*c))) {
        return Err(Problem::LocalPartCharacter(c));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(Problem::LocalPartDots);
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(Problem::TooLong {
            part: "local part",
            len: local.len(),
            max: MAX_LOCAL_PART,
        });
    }
    Ok(())
}

/// RFC 5322 `atext`, less the relay characters `%` and `!`.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#$&'*+/=?^_`{|}~-".contains(c)
}
