//! Address header fields (RFC 5322 §3.4, with the obsolete forms of §4.4) as the ENVELOPE
//! address structures of RFC 3501 §7.4.2 / RFC 9051 §7.5.2: `(name adl mailbox host)`.
//!
//! Parsed from the raw header bytes, because the structure keeps what a decoding parser
//! loses: the source route (`<@route:user@domain>` gives adl `@route`), the display name as
//! written (quotes removed, RFC 2047 encoded words left encoded), and group markers
//! (`group:` gives `(NIL NIL "group" NIL)`, `;` gives `(NIL NIL NIL NIL)`). A comment
//! alone, as in `group:(nobody);`, is no address. Sans-IO: bytes in, structures out.

/// One address structure; `None` is NIL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeAddress {
    pub name: Option<Vec<u8>>,
    pub adl: Option<Vec<u8>>,
    pub mailbox: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
}

/// What stands in for a missing domain or local part, so that host is never NIL outside
/// group markers (NIL host means a group marker in RFC 3501 §7.4.2). Dovecot's choice.
pub const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";
pub const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// atext run (obsolete phrases may also hold `.`, kept as its own token).
    Atom(Vec<u8>),
    /// Content of a quoted string, escapes removed.
    Quoted(Vec<u8>),
    /// `[...]` as written.
    DomainLiteral(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

fn tokenize(raw: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'"' => {
                i += 1;
                let mut text = Vec::new();
                while i < raw.len() && raw[i] != b'"' {
                    if raw[i] == b'\\' && i + 1 < raw.len() {
                        i += 1;
                    }
                    if raw[i] != b'\r' && raw[i] != b'\n' {
                        text.push(raw[i]);
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Quoted(text));
            }
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while i < raw.len() {
                    match raw[i] {
                        b'\\' if i + 1 < raw.len() => {
                            i += 1;
                            text.push(raw[i]);
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(b'(');
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                            text.push(b')');
                        }
                        b => text.push(b),
                    }
                    i += 1;
                }
                out.push(Token::Comment(text));
            }
            b'[' => {
                let start = i;
                while i < raw.len() && raw[i] != b']' {
                    i += if raw[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(raw.len());
                out.push(Token::DomainLiteral(raw[start..i].to_vec()));
            }
            b')' | b'<' | b'>' | b']' | b':' | b';' | b'@' | b',' | b'.' | b'\\' => {
                out.push(Token::Special(c));
                i += 1;
            }
            _ => {
                let start = i;
                while i < raw.len() && !is_special_or_space(raw[i]) {
                    i += 1;
                }
                out.push(Token::Atom(raw[start..i].to_vec()));
            }
        }
    }
    out
}

fn is_special_or_space(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t'
            | b'\r'
            | b'\n'
            | b'"'
            | b'('
            | b')'
            | b'<'
            | b'>'
            | b'['
            | b']'
            | b':'
            | b';'
            | b'@'
            | b','
            | b'.'
            | b'\\'
    )
}

/// Parses an address-list (or mailbox-list) header value into ENVELOPE address structures.
pub fn parse_address_list(raw: &[u8]) -> Vec<EnvelopeAddress> {
    let tokens = tokenize(raw);
    let mut out = Vec::new();
    let mut pending: Vec<Token> = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Special(b':') if !in_group => {
                out.push(EnvelopeAddress {
                    name: None,
                    adl: None,
                    mailbox: Some(phrase(&pending).unwrap_or_default()),
                    host: None,
                });
                pending.clear();
                in_group = true;
            }
            Token::Special(b'<') => {
                let name = phrase(&pending);
                pending.clear();
                let close = tokens[i..]
                    .iter()
                    .position(|t| *t == Token::Special(b'>'))
                    .map_or(tokens.len(), |p| i + p);
                if let Some(a) = route_addr(&tokens[i + 1..close], name) {
                    out.push(a);
                }
                // Whatever follows up to the next separator (comments) adds nothing.
                i = close + 1;
                while i < tokens.len()
                    && !matches!(tokens[i], Token::Special(b',') | Token::Special(b';'))
                {
                    i += 1;
                }
                continue;
            }
            Token::Special(b',') => {
                out.extend(addr_spec(&pending, None));
                pending.clear();
            }
            Token::Special(b';') if in_group => {
                out.extend(addr_spec(&pending, None));
                pending.clear();
                out.push(end_of_group());
                in_group = false;
            }
            t => pending.push(t.clone()),
        }
        i += 1;
    }
    out.extend(addr_spec(&pending, None));
    if in_group {
        out.push(end_of_group());
    }
    out
}

fn end_of_group() -> EnvelopeAddress {
    EnvelopeAddress {
        name: None,
        adl: None,
        mailbox: None,
        host: None,
    }
}

/// The words of a display name or group name joined by single spaces, quotes removed;
/// `None` when there are no words (comments are not part of a phrase).
fn phrase(tokens: &[Token]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut any = false;
    for t in tokens {
        let word: &[u8] = match t {
            Token::Atom(a) | Token::Quoted(a) | Token::DomainLiteral(a) => a,
            Token::Special(b'.') => b".",
            Token::Special(c) => std::slice::from_ref(c),
            Token::Comment(_) => continue,
        };
        // Obsolete phrases may hold `.` (RFC 5322 §4.1): no space before it.
        if any && word != b"." {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        any = true;
    }
    any.then_some(out)
}

/// `[obs-route] addr-spec` between `<` and `>`: `@a,@b:` is the route (adl `@a,@b`).
fn route_addr(tokens: &[Token], name: Option<Vec<u8>>) -> Option<EnvelopeAddress> {
    let tokens: Vec<Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Comment(_)))
        .cloned()
        .collect();
    let mut rest = &tokens[..];
    let mut adl = None;
    if rest.first() == Some(&Token::Special(b'@')) {
        if let Some(colon) = rest.iter().position(|t| *t == Token::Special(b':')) {
            adl = Some(join_tight(&rest[..colon]));
            rest = &rest[colon + 1..];
        }
    }
    if rest.is_empty() {
        // `<>` (a null path) carries no address; a name alone still shows up.
        return name.map(|n| EnvelopeAddress {
            name: Some(n),
            adl,
            mailbox: Some(MISSING_MAILBOX.to_vec()),
            host: Some(MISSING_DOMAIN.to_vec()),
        });
    }
    let mut a = addr_spec(rest, name)?;
    a.adl = adl;
    Some(a)
}

/// A bare `local@domain`; a trailing comment is the name when there is no display name
/// (`user@host (Real Name)`, as RFC 822 mail writes it).
fn addr_spec(tokens: &[Token], name: Option<Vec<u8>>) -> Option<EnvelopeAddress> {
    let comment = tokens.iter().find_map(|t| match t {
        Token::Comment(c) if !c.iter().all(u8::is_ascii_whitespace) => Some(c.clone()),
        _ => None,
    });
    let words: Vec<Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Comment(_)))
        .cloned()
        .collect();
    if words.is_empty() {
        return None;
    }
    let (local, domain) = match words.iter().rposition(|t| *t == Token::Special(b'@')) {
        Some(at) => (&words[..at], Some(&words[at + 1..])),
        None => (&words[..], None),
    };
    let mailbox = match local_part(local) {
        m if m.is_empty() => MISSING_MAILBOX.to_vec(),
        m => m,
    };
    let host = match domain.map(join_tight) {
        Some(d) if !d.is_empty() => d,
        _ => MISSING_DOMAIN.to_vec(),
    };
    Some(EnvelopeAddress {
        name: name.or(comment),
        adl: None,
        mailbox: Some(mailbox),
        host: Some(host),
    })
}

/// The local part as written: dot-atoms run together, a quoted string requoted.
fn local_part(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Quoted(q) => {
                out.push(b'"');
                for &b in q {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            Token::Atom(a) | Token::DomainLiteral(a) => out.extend_from_slice(a),
            Token::Special(c) => out.push(*c),
            Token::Comment(_) => {}
        }
    }
    out
}

/// Tokens written back without the whitespace between them (domains, routes).
fn join_tight(tokens: &[Token]) -> Vec<u8> {
    local_part(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(
        name: Option<&str>,
        adl: Option<&str>,
        mailbox: Option<&str>,
        host: Option<&str>,
    ) -> EnvelopeAddress {
        let b = |s: Option<&str>| s.map(|s| s.as_bytes().to_vec());
        EnvelopeAddress {
            name: b(name),
            adl: b(adl),
            mailbox: b(mailbox),
            host: b(host),
        }
    }

    /// Odd headers and their structures, from RFC 3501 §7.4.2 and RFC 5322 §3.4 / §4.4
    /// (whose appendix A.1.3 and A.5 examples are here too).
    #[test]
    fn odd_address_headers() {
        let end = a(None, None, None, None);
        let table: Vec<(&str, Vec<EnvelopeAddress>)> = vec![
            (
                "user@example.test",
                vec![a(None, None, Some("user"), Some("example.test"))],
            ),
            (
                "John Doe <jdoe@machine.example>",
                vec![a(
                    Some("John Doe"),
                    None,
                    Some("jdoe"),
                    Some("machine.example"),
                )],
            ),
            (
                "\"Joe Q. Public\" <john.q.public@example.com>",
                vec![a(
                    Some("Joe Q. Public"),
                    None,
                    Some("john.q.public"),
                    Some("example.com"),
                )],
            ),
            (
                "\"quoted \\\"inner\\\" \\\\ name\" <q@example.test>",
                vec![a(
                    Some("quoted \"inner\" \\ name"),
                    None,
                    Some("q"),
                    Some("example.test"),
                )],
            ),
            (
                "=?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@example.test>",
                vec![a(
                    Some("=?utf-8?q?Gr=C3=BC=C3=9Fe?="),
                    None,
                    Some("g"),
                    Some("example.test"),
                )],
            ),
            (
                "<@route.example:user@example.test>",
                vec![a(
                    None,
                    Some("@route.example"),
                    Some("user"),
                    Some("example.test"),
                )],
            ),
            (
                "Routed <@a.example,@b.example:user@example.test>",
                vec![a(
                    Some("Routed"),
                    Some("@a.example,@b.example"),
                    Some("user"),
                    Some("example.test"),
                )],
            ),
            (
                "undisclosed-recipients:;",
                vec![
                    a(None, None, Some("undisclosed-recipients"), None),
                    end.clone(),
                ],
            ),
            (
                "A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;",
                vec![
                    a(None, None, Some("A Group"), None),
                    a(Some("Ed Jones"), None, Some("c"), Some("a.test")),
                    a(None, None, Some("joe"), Some("where.test")),
                    a(Some("John"), None, Some("jdoe"), Some("one.test")),
                    end.clone(),
                ],
            ),
            (
                "group:(no one here);",
                vec![a(None, None, Some("group"), None), end.clone()],
            ),
            (
                "group: (a comment) , (another);, after@example.test",
                vec![
                    a(None, None, Some("group"), None),
                    end.clone(),
                    a(None, None, Some("after"), Some("example.test")),
                ],
            ),
            (
                "Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
                vec![a(Some("Pete"), None, Some("pete"), Some("silly.test"))],
            ),
            (
                "jdoe@example.org (John Doe)",
                vec![a(Some("John Doe"), None, Some("jdoe"), Some("example.org"))],
            ),
            (
                "localonly",
                vec![a(None, None, Some("localonly"), Some("MISSING_DOMAIN"))],
            ),
            (
                "Name <localonly>",
                vec![a(
                    Some("Name"),
                    None,
                    Some("localonly"),
                    Some("MISSING_DOMAIN"),
                )],
            ),
            (
                "@example.test",
                vec![a(None, None, Some("MISSING_MAILBOX"), Some("example.test"))],
            ),
            (
                "\"john doe\"@example.test",
                vec![a(None, None, Some("\"john doe\""), Some("example.test"))],
            ),
            (
                "u@[192.0.2.1]",
                vec![a(None, None, Some("u"), Some("[192.0.2.1]"))],
            ),
            (
                "Joe Q. Public <john.q.public@example.com>, , ,Mary <mary@x.test>",
                vec![
                    a(
                        Some("Joe Q. Public"),
                        None,
                        Some("john.q.public"),
                        Some("example.com"),
                    ),
                    a(Some("Mary"), None, Some("mary"), Some("x.test")),
                ],
            ),
            (
                "Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>",
                vec![
                    a(Some("Mary Smith"), None, Some("mary"), Some("x.test")),
                    a(None, None, Some("jdoe"), Some("example.org")),
                    a(Some("Who?"), None, Some("one"), Some("y.test")),
                ],
            ),
            ("", vec![]),
            ("(only a comment)", vec![]),
            (
                "group: a@b.test",
                vec![
                    a(None, None, Some("group"), None),
                    a(None, None, Some("a"), Some("b.test")),
                    end.clone(),
                ],
            ),
            (
                "Folded\r\n Name <f@example.test>",
                vec![a(
                    Some("Folded Name"),
                    None,
                    Some("f"),
                    Some("example.test"),
                )],
            ),
            (
                "John . Smith <js@example.test>",
                vec![a(
                    Some("John. Smith"),
                    None,
                    Some("js"),
                    Some("example.test"),
                )],
            ),
        ];
        for (header, want) in table {
            assert_eq!(parse_address_list(header.as_bytes()), want, "{header:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for raw in [
            &b"<"[..],
            b">",
            b"(",
            b"\"",
            b"[",
            b"\\",
            b"<@",
            b"<@a:",
            b":;:;",
            b"a@",
            b"(((",
        ] {
            let _ = parse_address_list(raw);
        }
    }
}
