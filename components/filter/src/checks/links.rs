//! Cheap link and reply checks, as Rspamd's `phishing` module and its Reply-To rules do them:
//! an HTML link whose visible text shows one site and whose target is another, links to bare
//! IP addresses, and a Reply-To in another domain than From (where answers to a forged
//! sender would go).

use futures::future::BoxFuture;
use mail_parser::{Address, PartType};

use super::{Check, Outcome, Scan};

pub struct Links;

/// Anchors looked at per message, and HTML scanned per part: bounded work per message.
const MAX_ANCHORS: usize = 200;
const MAX_HTML: usize = 1 << 20;

impl Check for Links {
    fn name(&self) -> &'static str {
        "links"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            let Some(message) = scan.message else {
                return out;
            };
            let mut phishing = Vec::new();
            let mut to_ip = Vec::new();
            for part in &message.parts {
                let PartType::Html(html) = &part.body else {
                    continue;
                };
                let html = truncate(html, MAX_HTML);
                for (href, text) in anchors(html).take(MAX_ANCHORS) {
                    let Some(target) = url_host(&href) else {
                        continue;
                    };
                    if target.parse::<std::net::IpAddr>().is_ok() && !to_ip.contains(&target) {
                        to_ip.push(target.clone());
                    }
                    if let Some(shown) = shown_host(&text) {
                        if !same_site(&shown, &target) {
                            phishing.push(format!("{shown}->{target}"));
                        }
                    }
                }
            }
            if !phishing.is_empty() {
                phishing.dedup();
                out.add(
                    "PHISHING",
                    4.0,
                    "A link's text shows another site than it leads to",
                    phishing,
                );
            }
            if !to_ip.is_empty() {
                out.add("HTTP_TO_IP", 1.0, "A link to a bare IP address", to_ip);
            }
            let from = first_domain(message.from());
            let reply_to = first_domain(message.reply_to());
            if let (Some(from), Some(reply_to)) = (from, reply_to) {
                if !same_site(&from, &reply_to) {
                    out.add(
                        "REPLYTO_DOM_NEQ_FROM_DOM",
                        0.5,
                        "Reply-To is in another domain than From",
                        vec![format!("{from}->{reply_to}")],
                    );
                }
            }
            out
        })
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn first_domain(address: Option<&Address<'_>>) -> Option<String> {
    let email = address?.first()?.address()?;
    let (_, domain) = email.rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// `<a ... href="x" ...>text</a>` pairs: the target and the visible text (tags removed).
/// A scanner, not an HTML parser: enough for the links mail clients render.
fn anchors(html: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    std::iter::from_fn(move || loop {
        let start = at + lower.get(at..)?.find("<a")?;
        let after = lower.as_bytes().get(start + 2).copied();
        at = start + 2;
        if !after.is_some_and(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let tag_end = start + lower[start..].find('>')?;
        let close = tag_end
            + lower[tag_end..]
                .find("</a")
                .unwrap_or(lower.len() - tag_end);
        at = close;
        let Some(href) = attribute(&html[start..tag_end], &lower[start..tag_end], "href") else {
            continue;
        };
        return Some((href, strip_tags(&html[tag_end + 1..close])));
    })
}

fn attribute(tag: &str, lower: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let at = from + found;
        from = at + name.len();
        let before = lower[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let rest = lower[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let value_at = tag.len() - rest.trim_start().len();
        let value = &tag[value_at..];
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_ascii_whitespace() || c == '>')
                .next()
                .unwrap_or(""),
        };
        return Some(value.trim().to_string());
    }
    None
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.trim().to_string()
}

/// The host of an `http(s)://` URL, lowercased, without port or credentials.
fn url_host(url: &str) -> Option<String> {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    let host = host.trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_string())
}

/// The site a link's text shows: a URL, or a `www.` name. Plain words show none.
fn shown_host(text: &str) -> Option<String> {
    let text = text.trim();
    if text.contains(char::is_whitespace) {
        return None;
    }
    url_host(text).or_else(|| {
        let lower = text.to_ascii_lowercase();
        lower.starts_with("www.").then(|| {
            lower
                .split(['/', '?', '#', ':'])
                .next()
                .unwrap_or("")
                .trim_end_matches('.')
                .to_string()
        })
    })
}

/// One site: equal, one a subdomain of the other, or the same last two labels (without a
/// public-suffix list, `a.example.co.uk` and `b.example.co.uk` count as one).
fn same_site(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches("www.");
    let b = b.trim_start_matches("www.");
    if a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")) {
        return true;
    }
    let base = |h: &str| {
        let labels: Vec<&str> = h.rsplit('.').take(2).collect();
        (labels.len() == 2).then(|| format!("{}.{}", labels[1], labels[0]))
    };
    base(a).is_some() && base(a) == base(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture;
    use crate::protocol::Envelope;

    fn html(body: &str) -> String {
        format!("From: a@bank.test\nSubject: t\nContent-Type: text/html\n\n{body}\n")
    }

    #[test]
    fn fixture_cases() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                html("<a href=\"https://bank.test/login\">https://bank.test</a>"),
                vec![],
            ),
            (
                html("<a href=\"https://evil.example/x\">https://www.bank.test/login</a>"),
                vec!["PHISHING"],
            ),
            (
                html("<A HREF='http://login.evil.example'>www.bank.test</A>"),
                vec!["PHISHING"],
            ),
            (
                html("<a href=\"https://evil.example\">click here</a>"),
                vec![],
            ),
            (
                html("<a href=\"https://mail.bank.test/x\">www.bank.test</a>"),
                vec![],
            ),
            (
                html("<a href=http://192.0.2.7/x>http://192.0.2.7/x</a>"),
                vec!["HTTP_TO_IP"],
            ),
            (
                html("<abbr>x</abbr><a class=x href=\"https://b.test\"><b>https://c.test</b></a>"),
                vec!["PHISHING"],
            ),
            (
                "From: a@bank.test\nReply-To: collect@elsewhere.example\n\nhi\n".into(),
                vec!["REPLYTO_DOM_NEQ_FROM_DOM"],
            ),
            (
                "From: a@bank.test\nReply-To: support@help.bank.test\n\nhi\n".into(),
                vec![],
            ),
            (
                "From: a@bank.test\n\n<a href=\"https://evil.example\">https://bank.test</a>\n"
                    .into(),
                vec![],
            ),
        ];
        for (raw, expected) in cases {
            let out = fixture::symbols(&Links, &raw, &Envelope::default());
            assert_eq!(fixture::names(&out), expected, "{raw}");
        }
    }

    #[test]
    fn hosts_and_sites() {
        assert_eq!(
            url_host("https://user@Host.Test:8443/p?q").as_deref(),
            Some("host.test")
        );
        assert_eq!(
            url_host("http://[2001:db8::1]/x").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(url_host("ftp://x.test"), None);
        assert!(same_site("www.bank.test", "bank.test"));
        assert!(same_site("a.bank.test", "b.bank.test"));
        assert!(!same_site("bank.test", "bank-secure.test"));
    }

    #[test]
    fn anchors_are_bounded_and_never_panic() {
        let many = "<a href=\"https://a.test\">https://b.test</a>".repeat(5000);
        let out = fixture::symbols(&Links, &html(&many), &Envelope::default());
        assert_eq!(out.symbols[0].options, vec!["b.test->a.test"]);
        for odd in [
            "<a",
            "<a href",
            "<a href=",
            "<a href=\"",
            "<a\u{e9} href=x>",
            "<a href=x>é</a",
        ] {
            let _ = anchors(odd).count();
        }
    }
}
