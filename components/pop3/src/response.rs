//! Status lines: `+OK text` or `-ERR [CODE] text` (RFC 1939 §3, RFC 2449 §8). The text a
//! client sees stays generic; details go to the logs.

use std::fmt;

/// Octets of text per status line, well inside RFC 1939 §3's 512 with the status and code.
const MAX_TEXT: usize = 400;

/// Extended response codes (RFC 2449 §8, RFC 3206), which tell a client whether to ask the
/// user for a new password or just try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// RFC 3206 §4: the credentials are wrong (or not acceptable on this connection).
    Auth,
    /// RFC 3206 §5: a temporary server-side problem; retry later.
    SysTemp,
    /// RFC 3206 §5: a permanent server-side problem; retrying will not help.
    SysPerm,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::Auth => "AUTH",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
        }
    }
}

/// One status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub ok: bool,
    pub code: Option<Code>,
    pub text: String,
}

impl Status {
    pub fn ok(text: impl Into<String>) -> Status {
        Status {
            ok: true,
            code: None,
            text: text.into(),
        }
    }

    pub fn err(text: impl Into<String>) -> Status {
        Status {
            ok: false,
            code: None,
            text: text.into(),
        }
    }

    pub fn err_code(code: Code, text: impl Into<String>) -> Status {
        Status {
            ok: false,
            code: Some(code),
            text: text.into(),
        }
    }

    /// Appends the line with its CRLF to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.ok { "+OK" } else { "-ERR" })?;
        if let Some(code) = self.code {
            write!(f, " [{}]", code.as_str())?;
        }
        // Texts may quote client input (a user name): keep them on one line, and within
        // RFC 1939 §3's 512 octets per response line.
        let mut text = String::new();
        for c in self.text.chars().filter(|c| !c.is_control()) {
            if text.len() + c.len_utf8() > MAX_TEXT {
                break;
            }
            text.push(c);
        }
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Appends the body of a multi-line response (RFC 1939 §3): each line with CRLF,
/// byte-stuffed, then the terminating `.` line.
pub fn write_lines<L: AsRef<[u8]>>(out: &mut Vec<u8>, lines: impl IntoIterator<Item = L>) {
    for line in lines {
        let line = line.as_ref();
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let mut out = Vec::new();
        Status::ok("2 320").write_to(&mut out);
        Status::err("no such message").write_to(&mut out);
        Status::err_code(Code::Auth, "Authentication failed").write_to(&mut out);
        Status::err_code(Code::SysTemp, "try later\r\nINJECTED").write_to(&mut out);
        Status::ok("").write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "+OK 2 320\r\n-ERR no such message\r\n-ERR [AUTH] Authentication failed\r\n\
             -ERR [SYS/TEMP] try laterINJECTED\r\n+OK\r\n"
        );
        assert!(Status::err("x".repeat(2000)).to_string().len() < 510);
        assert!(Status::err("ü".repeat(2000)).to_string().len() < 510);
    }

    #[test]
    fn multiline_bodies() {
        let mut out = Vec::new();
        write_lines(&mut out, ["TOP", ".hidden", ""]);
        write_lines(&mut out, Vec::<String>::new());
        assert_eq!(out, b"TOP\r\n..hidden\r\n\r\n.\r\n.\r\n");
    }
}
