//! POP3 command lines, parsed without I/O (RFC 1939 §3, RFC 2449 §3).
//!
//! The grammar is a case-insensitive keyword of three or four letters, then arguments
//! separated by spaces. We are lenient where it costs nothing (runs of spaces, a trailing
//! space, a bare LF instead of CRLF) and strict where it matters: numbers are plain decimal
//! digits, and control characters never reach the session.

use std::fmt;

/// Bytes that must never be logged: a password or a SASL response carrying one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One client command, with its arguments checked for shape (not for meaning: whether a
/// message number exists is the session's business).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 1939 §7: the mailbox name.
    User(String),
    /// RFC 1939 §7: everything after `PASS `, spaces included.
    Pass(Secret),
    /// RFC 5034 §4. Without a mechanism it is the RFC 1734-era listing request some old
    /// clients still send. `initial_response` is the raw base64 text (`=` for empty).
    Auth {
        mechanism: Option<String>,
        initial_response: Option<Secret>,
    },
    /// RFC 2595 §4.
    Stls,
    /// RFC 2449 §5.
    Capa,
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    /// RFC 1939 §7: the headers and this many lines of the body.
    Top {
        message: u32,
        lines: u32,
    },
    Uidl(Option<u32>),
}

impl Command {
    /// The canonical line for this command, CRLF included; for round-trip tests, fuzzing
    /// and test clients (the server never sends commands).
    pub fn to_line(&self) -> Vec<u8> {
        let text = |s: String| s.into_bytes();
        let mut line = match self {
            Command::User(name) => text(format!("USER {name}")),
            Command::Pass(password) => [b"PASS ", password.expose()].concat(),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let mut line = b"AUTH".to_vec();
                for part in [
                    mechanism.as_deref().map(str::as_bytes),
                    initial_response.as_ref().map(Secret::expose),
                ]
                .into_iter()
                .flatten()
                {
                    line.push(b' ');
                    line.extend_from_slice(part);
                }
                line
            }
            Command::Stls => text("STLS".into()),
            Command::Capa => text("CAPA".into()),
            Command::Quit => text("QUIT".into()),
            Command::Stat => text("STAT".into()),
            Command::List(None) => text("LIST".into()),
            Command::List(Some(n)) => text(format!("LIST {n}")),
            Command::Retr(n) => text(format!("RETR {n}")),
            Command::Dele(n) => text(format!("DELE {n}")),
            Command::Noop => text("NOOP".into()),
            Command::Rset => text("RSET".into()),
            Command::Top { message, lines } => text(format!("TOP {message} {lines}")),
            Command::Uidl(None) => text("UIDL".into()),
            Command::Uidl(Some(n)) => text(format!("UIDL {n}")),
        };
        line.extend_from_slice(b"\r\n");
        line
    }
}

/// Why a line is not a command we can act on; the session answers each with `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command line")]
    Empty,
    #[error("unknown command")]
    Unknown,
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("{0} needs an argument")]
    MissingArgument(&'static str),
    #[error("too many arguments for {0}")]
    TooManyArguments(&'static str),
    #[error("invalid message number or line count")]
    BadNumber,
    #[error("invalid argument")]
    BadArgument,
}

/// Parses one command line. A trailing CRLF or bare LF is ignored, so the session can pass
/// the line as read.
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // CR, LF and NUL inside a line are never legitimate and would corrupt logs and replies.
    if line.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(ParseError::BadArgument);
    }
    if line.iter().all(|&b| b == b' ') {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    if !(3..=4).contains(&keyword.len()) || !keyword.iter().all(u8::is_ascii_alphabetic) {
        return Err(ParseError::Unknown);
    }
    let mut upper = [0u8; 4];
    upper[..keyword.len()].copy_from_slice(keyword);
    upper.make_ascii_uppercase();
    let keyword = &upper[..keyword.len()];

    if keyword == b"PASS" {
        // RFC 1939 §7: the server "may treat spaces in the argument as part of the password".
        return match rest {
            [] => Err(ParseError::MissingArgument("PASS")),
            password => Ok(Command::Pass(Secret::new(password))),
        };
    }
    let rest = std::str::from_utf8(rest).map_err(|_| ParseError::BadArgument)?;
    if rest.chars().any(char::is_control) {
        return Err(ParseError::BadArgument);
    }
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let command = match keyword {
        b"USER" => Command::User(exactly_one("USER", &args)?.to_string()),
        b"AUTH" => auth(&args)?,
        b"STLS" => none("STLS", &args, Command::Stls)?,
        b"CAPA" => none("CAPA", &args, Command::Capa)?,
        b"QUIT" => none("QUIT", &args, Command::Quit)?,
        b"STAT" => none("STAT", &args, Command::Stat)?,
        b"NOOP" => none("NOOP", &args, Command::Noop)?,
        b"RSET" => none("RSET", &args, Command::Rset)?,
        b"LIST" => Command::List(optional_number("LIST", &args)?),
        b"UIDL" => Command::Uidl(optional_number("UIDL", &args)?),
        b"RETR" => Command::Retr(number(exactly_one("RETR", &args)?)?),
        b"DELE" => Command::Dele(number(exactly_one("DELE", &args)?)?),
        b"TOP" => match args.as_slice() {
            [message, lines] => Command::Top {
                message: number(message)?,
                lines: number(lines)?,
            },
            [] | [_] => return Err(ParseError::MissingArgument("TOP")),
            _ => return Err(ParseError::TooManyArguments("TOP")),
        },
        b"APOP" => return Err(ParseError::Unsupported("APOP")),
        _ => return Err(ParseError::Unknown),
    };
    Ok(command)
}

fn auth(args: &[&str]) -> Result<Command, ParseError> {
    let (mechanism, initial) = match args {
        [] => (None, None),
        [mechanism] => (Some(*mechanism), None),
        [mechanism, initial] => (Some(*mechanism), Some(*initial)),
        _ => return Err(ParseError::TooManyArguments("AUTH")),
    };
    let mechanism = mechanism
        .map(|m| {
            // RFC 4422 §3.1: 1 to 20 of upper-case letters, digits, '-' and '_'.
            let valid = (1..=20).contains(&m.len())
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            valid
                .then(|| m.to_ascii_uppercase())
                .ok_or(ParseError::BadArgument)
        })
        .transpose()?;
    Ok(Command::Auth {
        mechanism,
        initial_response: initial.map(Secret::new),
    })
}

fn none(name: &'static str, args: &[&str], command: Command) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::TooManyArguments(name))
    }
}

fn exactly_one<'a>(name: &'static str, args: &[&'a str]) -> Result<&'a str, ParseError> {
    match args {
        [one] => Ok(one),
        [] => Err(ParseError::MissingArgument(name)),
        _ => Err(ParseError::TooManyArguments(name)),
    }
}

fn optional_number(name: &'static str, args: &[&str]) -> Result<Option<u32>, ParseError> {
    match args {
        [] => Ok(None),
        [one] => number(one).map(Some),
        _ => Err(ParseError::TooManyArguments(name)),
    }
}

/// Plain decimal digits only: `str::parse` would also take a leading `+`.
fn number(arg: &str) -> Result<u32, ParseError> {
    if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber);
    }
    arg.parse().map_err(|_| ParseError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes())
    }

    #[test]
    fn table() {
        use Command as C;
        use ParseError as E;
        let auth = |m: Option<&str>, ir: Option<&str>| C::Auth {
            mechanism: m.map(str::to_string),
            initial_response: ir.map(secret),
        };
        let cases: Vec<(&[u8], Result<Command, ParseError>)> = vec![
            (
                b"USER alice@example.test\r\n",
                Ok(C::User("alice@example.test".into())),
            ),
            (b"user alice\n", Ok(C::User("alice".into()))),
            (b"USER  alice ", Ok(C::User("alice".into()))),
            (b"USER", Err(E::MissingArgument("USER"))),
            (b"USER a b", Err(E::TooManyArguments("USER"))),
            (
                "USER jörg@example.test".as_bytes(),
                Ok(C::User("jörg@example.test".into())),
            ),
            (b"USER \xff", Err(E::BadArgument)),
            (b"USER a\tb", Err(E::BadArgument)),
            (b"PASS secret\r\n", Ok(C::Pass(secret("secret")))),
            (b"PASS two words \r\n", Ok(C::Pass(secret("two words ")))),
            (b"PASS  lead", Ok(C::Pass(secret(" lead")))),
            (b"PASS \xff\xfe", Ok(C::Pass(Secret::new(*b"\xff\xfe")))),
            (b"PASS", Err(E::MissingArgument("PASS"))),
            (b"PASS ", Err(E::MissingArgument("PASS"))),
            (b"PASS a\0b", Err(E::BadArgument)),
            (b"AUTH", Ok(auth(None, None))),
            (b"AUTH plain", Ok(auth(Some("PLAIN"), None))),
            (
                b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
                Ok(auth(Some("PLAIN"), Some("AGFsaWNlAHNlY3JldA=="))),
            ),
            (b"AUTH PLAIN =", Ok(auth(Some("PLAIN"), Some("=")))),
            (b"AUTH X-OAUTH_2", Ok(auth(Some("X-OAUTH_2"), None))),
            (b"AUTH PL@IN", Err(E::BadArgument)),
            (b"AUTH ABCDEFGHIJKLMNOPQRSTU", Err(E::BadArgument)),
            (b"AUTH PLAIN a b", Err(E::TooManyArguments("AUTH"))),
            (b"STLS\r\n", Ok(C::Stls)),
            (b"stls x", Err(E::TooManyArguments("STLS"))),
            (b"CAPA", Ok(C::Capa)),
            (b"QUIT", Ok(C::Quit)),
            (b"STAT", Ok(C::Stat)),
            (b"NOOP", Ok(C::Noop)),
            (b"RSET", Ok(C::Rset)),
            (b"LIST", Ok(C::List(None))),
            (b"LIST ", Ok(C::List(None))),
            (b"LIST 2", Ok(C::List(Some(2)))),
            (b"LIST 0", Ok(C::List(Some(0)))),
            (b"LIST 1 2", Err(E::TooManyArguments("LIST"))),
            (b"LIST +1", Err(E::BadNumber)),
            (b"LIST -1", Err(E::BadNumber)),
            (b"LIST 4294967295", Ok(C::List(Some(u32::MAX)))),
            (b"LIST 4294967296", Err(E::BadNumber)),
            (b"UIDL", Ok(C::Uidl(None))),
            (b"UIDL 3", Ok(C::Uidl(Some(3)))),
            (b"UIDL x", Err(E::BadNumber)),
            (b"RETR 1", Ok(C::Retr(1))),
            (b"retr 007", Ok(C::Retr(7))),
            (b"RETR", Err(E::MissingArgument("RETR"))),
            (b"RETR 1x", Err(E::BadNumber)),
            (b"DELE 12", Ok(C::Dele(12))),
            (b"DELE 1 2", Err(E::TooManyArguments("DELE"))),
            (
                b"TOP 1 0",
                Ok(C::Top {
                    message: 1,
                    lines: 0,
                }),
            ),
            (
                b"top 2 10\r\n",
                Ok(C::Top {
                    message: 2,
                    lines: 10,
                }),
            ),
            (b"TOP 1", Err(E::MissingArgument("TOP"))),
            (b"TOP 1 2 3", Err(E::TooManyArguments("TOP"))),
            (b"TOP 1 -2", Err(E::BadNumber)),
            (b"APOP alice 0123456789abcdef", Err(E::Unsupported("APOP"))),
            (b"", Err(E::Empty)),
            (b"\r\n", Err(E::Empty)),
            (b"   ", Err(E::Empty)),
            (b"HELO", Err(E::Unknown)),
            (b"ST", Err(E::Unknown)),
            (b"STATS", Err(E::Unknown)),
            (b"ST4T", Err(E::Unknown)),
            (b" STAT", Err(E::Unknown)),
            (b"STAT\r\nQUIT", Err(E::BadArgument)),
            (b"STAT\rX", Err(E::BadArgument)),
        ];
        for (input, expected) in cases {
            let parsed = parse_command(input);
            assert_eq!(
                parsed,
                expected,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            if let Ok(command) = parsed {
                assert_eq!(parse_command(&command.to_line()), Ok(command), "round trip");
            }
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let parsed = parse_command(b"PASS hunter2").unwrap();
        assert!(!format!("{parsed:?}").contains("hunter2"));
        let parsed = parse_command(b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=").unwrap();
        assert!(!format!("{parsed:?}").contains("AGFsaWNl"));
    }
}
