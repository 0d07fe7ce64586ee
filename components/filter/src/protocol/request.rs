//! What a client asks: the endpoint, and for a scan the envelope that Rspamd's protocol
//! carries in request headers (<https://rspamd.com/doc/developers/protocol.html>).
//! Pure parsing over `http::request::Parts`; no I/O.

use std::net::IpAddr;

use http::{HeaderMap, Method};

use super::ProtocolError;

/// The endpoints served; names and methods as Rspamd's normal worker has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /ping`: liveness, answered `pong`.
    Ping,
    /// `POST /checkv2` (and the legacy `/check`, answered the same way).
    Check,
    /// `POST /learnspam`, `POST /learnham`.
    Learn { spam: bool },
}

impl Endpoint {
    /// Routes a request line; `None` for an unknown path, `Err` for a known path with the
    /// wrong method.
    pub fn route(method: &Method, path: &str) -> Result<Option<Endpoint>, ProtocolError> {
        let endpoint = match path.trim_end_matches('/') {
            "/ping" => Endpoint::Ping,
            "/checkv2" | "/check" | "/symbols" => Endpoint::Check,
            "/learnspam" => Endpoint::Learn { spam: true },
            "/learnham" => Endpoint::Learn { spam: false },
            _ => return Ok(None),
        };
        let allowed = match endpoint {
            Endpoint::Ping => method == Method::GET || method == Method::HEAD,
            _ => method == Method::POST,
        };
        if !allowed {
            return Err(ProtocolError::Method(method.to_string()));
        }
        Ok(Some(endpoint))
    }

    /// Whether the request carries a message as its body.
    pub fn takes_message(self) -> bool {
        !matches!(self, Endpoint::Ping)
    }
}

/// The SMTP envelope and session facts of a scanned message, as the MTA tells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `IP`: the SMTP client's address.
    pub ip: Option<IpAddr>,
    /// `Helo`: its HELO/EHLO name.
    pub helo: Option<String>,
    /// `Hostname`: its reverse-DNS name (`unknown` when it has none).
    pub hostname: Option<String>,
    /// `From`: the envelope sender (MAIL FROM), without angle brackets; empty for `<>`.
    pub mail_from: Option<String>,
    /// `Rcpt`, repeatable: the envelope recipients.
    pub rcpt_to: Vec<String>,
    /// `Deliver-To`: the mailbox a message is learnt for (per-domain classifiers).
    pub deliver_to: Option<String>,
    /// `User`: the authenticated user, when the MTA had a login (submission).
    pub user: Option<String>,
    /// `Queue-Id`: the MTA's id of the message, for logs.
    pub queue_id: Option<String>,
    /// `Settings-ID`: a named settings profile.
    pub settings_id: Option<String>,
    /// `MTA-Name`: the scanning MTA's name.
    pub mta_name: Option<String>,
    /// `Pass: all`: run every check even when the result is already decided.
    pub pass_all: bool,
}

/// Longest envelope value kept; longer header values are refused (a mail address is at
/// most 256 octets, RFC 5321 §4.5.3.1.3; a host name 255).
const MAX_VALUE: usize = 1024;

impl Envelope {
    /// Reads the envelope from request headers. Unknown headers are ignored, as Rspamd does;
    /// a present but unreadable one is an error, so a broken MTA is noticed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Envelope, ProtocolError> {
        let text = |name: &'static str| -> Result<Option<String>, ProtocolError> {
            match headers.get(name) {
                None => Ok(None),
                Some(value) => Ok(Some(value_text(name, value)?)),
            }
        };
        let ip = match text("ip")? {
            None => None,
            Some(raw) => Some(parse_ip(&raw).ok_or(ProtocolError::Header {
                name: "IP",
                reason: "not an IP address",
            })?),
        };
        let mut rcpt_to = Vec::new();
        for value in headers.get_all("rcpt") {
            rcpt_to.push(strip_brackets(&value_text("rcpt", value)?));
        }
        let pass_all = text("pass")?.is_some_and(|v| v.eq_ignore_ascii_case("all"));
        Ok(Envelope {
            ip,
            helo: text("helo")?,
            hostname: text("hostname")?,
            mail_from: text("from")?.map(|v| strip_brackets(&v)),
            rcpt_to,
            deliver_to: text("deliver-to")?.map(|v| strip_brackets(&v)),
            // A blank `User` is no login.
            user: text("user")?.filter(|u| !u.trim().is_empty()),
            queue_id: text("queue-id")?,
            settings_id: text("settings-id")?,
            mta_name: text("mta-name")?,
            pass_all,
        })
    }

    /// The client's address when it is a stranger: not logged in and outside `local` (Rspamd's
    /// `local_addrs`). Greylisting, rate limits, blocklists and the forged-local-sender check
    /// look only at such clients.
    pub fn outside_client(&self, local: &[ipnet::IpNet]) -> Option<IpAddr> {
        if self.user.is_some() {
            return None;
        }
        self.ip.filter(|ip| !local.iter().any(|n| n.contains(ip)))
    }

    /// The domain of the envelope sender, if it has one.
    pub fn mail_from_domain(&self) -> Option<&str> {
        self.mail_from
            .as_deref()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty())
    }
}

fn value_text(name: &'static str, value: &http::HeaderValue) -> Result<String, ProtocolError> {
    // UTF-8, not only ASCII: an SMTPUTF8 envelope (RFC 6531) has UTF-8 addresses, and the
    // MTA sends them as they are (Rspamd accepts them too).
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| ProtocolError::Header {
        name,
        reason: "not UTF-8",
    })?;
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ProtocolError::Header {
            name,
            reason: "control characters",
        });
    }
    if text.len() > MAX_VALUE {
        return Err(ProtocolError::Header {
            name,
            reason: "too long",
        });
    }
    Ok(text.trim().to_string())
}

/// `<a@b>` → `a@b`; MTAs differ in whether they send the brackets.
fn strip_brackets(value: &str) -> String {
    let v = value.trim();
    v.strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v)
        .to_string()
}

/// An address, also in the `[1.2.3.4]` and `IPv6:` forms some MTAs pass along.
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let v = raw.trim().trim_start_matches('[').trim_end_matches(']');
    let v = v.strip_prefix("IPv6:").unwrap_or(v);
    v.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn routes_rspamd_paths() {
        let post = Method::POST;
        assert_eq!(
            Endpoint::route(&post, "/checkv2").unwrap(),
            Some(Endpoint::Check)
        );
        assert_eq!(
            Endpoint::route(&post, "/check").unwrap(),
            Some(Endpoint::Check)
        );
        assert_eq!(
            Endpoint::route(&post, "/learnspam").unwrap(),
            Some(Endpoint::Learn { spam: true })
        );
        assert_eq!(
            Endpoint::route(&post, "/learnham").unwrap(),
            Some(Endpoint::Learn { spam: false })
        );
        assert_eq!(
            Endpoint::route(&Method::GET, "/ping").unwrap(),
            Some(Endpoint::Ping)
        );
        assert_eq!(Endpoint::route(&post, "/nothing").unwrap(), None);
        assert!(Endpoint::route(&Method::GET, "/checkv2").is_err());
    }

    #[test]
    fn reads_the_envelope() {
        let env = Envelope::from_headers(&headers(&[
            ("IP", "192.0.2.7"),
            ("Helo", "mail.example.org"),
            ("Hostname", "unknown"),
            ("From", "<bounce@example.org>"),
            ("Rcpt", "<alice@example.test>"),
            ("Rcpt", "bob@example.test"),
            ("User", "carol@example.test"),
            ("Queue-Id", "Q1"),
            ("Settings-ID", "inbound"),
            ("Pass", "all"),
        ]))
        .unwrap();
        assert_eq!(env.ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(env.helo.as_deref(), Some("mail.example.org"));
        assert_eq!(env.mail_from.as_deref(), Some("bounce@example.org"));
        assert_eq!(env.mail_from_domain(), Some("example.org"));
        assert_eq!(env.rcpt_to, vec!["alice@example.test", "bob@example.test"]);
        assert_eq!(env.user.as_deref(), Some("carol@example.test"));
        assert_eq!(env.queue_id.as_deref(), Some("Q1"));
        assert_eq!(env.settings_id.as_deref(), Some("inbound"));
        assert!(env.pass_all);
    }

    #[test]
    fn a_stranger_is_an_address_outside_the_local_networks_without_a_login() {
        let local: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let env = |pairs: &[(&'static str, &str)]| Envelope::from_headers(&headers(pairs)).unwrap();
        let outside = env(&[("IP", "192.0.2.7")]);
        assert_eq!(outside.outside_client(&local), "192.0.2.7".parse().ok());
        assert_eq!(env(&[("IP", "10.1.2.3")]).outside_client(&local), None);
        let logged_in = env(&[("IP", "192.0.2.7"), ("User", "carol@example.test")]);
        assert_eq!(logged_in.outside_client(&local), None);
        // A blank User header is no login.
        let blank = env(&[("IP", "192.0.2.7"), ("User", " ")]);
        assert_eq!(blank.user, None);
        assert!(blank.outside_client(&local).is_some());
    }

    #[test]
    fn utf8_envelopes_are_read_control_characters_refused() {
        let mut map = HeaderMap::new();
        map.insert(
            "from",
            http::HeaderValue::from_bytes("<jörg@bücher.example>".as_bytes()).unwrap(),
        );
        let env = Envelope::from_headers(&map).unwrap();
        assert_eq!(env.mail_from.as_deref(), Some("jörg@bücher.example"));
        let mut bad = HeaderMap::new();
        // C1 controls pass HTTP's header syntax (obs-text) but not ours.
        bad.insert(
            "from",
            http::HeaderValue::from_bytes("a\u{85}b@x".as_bytes()).unwrap(),
        );
        assert!(Envelope::from_headers(&bad).is_err());
        let mut latin1 = HeaderMap::new();
        latin1.insert("from", http::HeaderValue::from_bytes(b"j\xf6rg@x").unwrap());
        assert!(Envelope::from_headers(&latin1).is_err());
    }

    #[test]
    fn ip_forms_and_errors() {
        let env = Envelope::from_headers(&headers(&[("IP", "[IPv6:2001:db8::1]")])).unwrap();
        assert_eq!(env.ip, Some("2001:db8::1".parse().unwrap()));
        assert!(Envelope::from_headers(&headers(&[("IP", "not-an-ip")])).is_err());
        let empty = Envelope::from_headers(&HeaderMap::new()).unwrap();
        assert_eq!(empty, Envelope::default());
        assert_eq!(
            Envelope::from_headers(&headers(&[("From", "<>")]))
                .unwrap()
                .mail_from_domain(),
            None
        );
    }
}
