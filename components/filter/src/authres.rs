//! `Authentication-Results` (RFC 8601): the header our checks' results go into, and the test
//! whether an incoming one claims our authserv-id (RFC 8601 §5: such a header is removed,
//! since anyone could have written it).

/// `authserv-id; method=result props; ...` (RFC 8601 §2.2). `parts` are the method clauses.
pub fn header_value(authserv_id: &str, parts: &[String]) -> String {
    let mut value = authserv_id.to_string();
    for part in parts {
        value.push_str(";\r\n\t");
        value.push_str(part);
    }
    value
}

/// Whether any `Authentication-Results` field of the message names `authserv_id`.
pub fn claims_id(message: &mail_parser::Message<'_>, authserv_id: &str) -> bool {
    message
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Authentication-Results"))
        .any(|(_, value)| field_id(value).eq_ignore_ascii_case(authserv_id))
}

/// The authserv-id of a field value: the first token, before `;`, comments skipped.
fn field_id(value: &str) -> &str {
    let mut rest = value.trim_start();
    // A leading CFWS comment (RFC 8601 §2.2 allows it): skip "(...)".
    while let Some(after) = rest.strip_prefix('(') {
        rest = after.split_once(')').map_or("", |(_, r)| r).trim_start();
    }
    let end = rest
        .find(|c: char| c == ';' || c.is_whitespace())
        .unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_authserv_id() {
        assert_eq!(field_id(" mx.example.test; spf=pass"), "mx.example.test");
        assert_eq!(field_id("mx.example.test 1; none"), "mx.example.test");
        assert_eq!(field_id("(c) mx.example.test;"), "mx.example.test");
        let raw = b"Authentication-Results: other.test; spf=pass\r\nAuthentication-Results: MX.example.test; dkim=pass\r\nFrom: a@b.test\r\n\r\nhi\r\n";
        let msg = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .unwrap();
        assert!(claims_id(&msg, "mx.example.test"));
        assert!(!claims_id(&msg, "third.test"));
    }

    #[test]
    fn builds_the_value() {
        let v = header_value("mx.test", &["spf=pass smtp.mailfrom=a@b.test".into()]);
        assert_eq!(v, "mx.test;\r\n\tspf=pass smtp.mailfrom=a@b.test");
        assert_eq!(header_value("mx.test", &[]), "mx.test");
    }
}
