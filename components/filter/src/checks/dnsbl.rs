//! DNS blocklists (RFC 5782): the client's address in IP lists (`2.0.0.127.zen.example`),
//! and the domains of the message (the envelope sender's, From's and those of the links in
//! its text) in domain lists. Sites are written as Postfix's `postscreen_dnsbl_sites`:
//! `zone[=pattern]*weight`, where the pattern limits the answers that count
//! (`127.0.0.2`, `127.0.0.[2..11]`, `127.0.0.[2;4]`) and the weight is the symbol's score.
//! Each listed site is a symbol (`RBL_<ZONE>` / `URIBL_<ZONE>`) with the answers as options.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::future::BoxFuture;
use mail_auth::hickory_resolver::config::ResolverOpts;
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::hickory_resolver::TokioResolver;

use super::{Check, Outcome, Scan};

/// At most this many message domains are looked up per list (bounded work per message).
const MAX_DOMAINS: usize = 20;

/// One blocklist and how its answers count.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub zone: String,
    /// Per octet of the answer: the values that match (`None`: any).
    pattern: Option<[Vec<(u8, u8)>; 4]>,
    pub weight: f64,
    pub symbol: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("DNSBL site {site:?}: {reason}")]
pub struct SiteError {
    site: String,
    reason: &'static str,
}

impl Site {
    /// `zone[=pattern][*weight]`; `prefix` names the symbol (`RBL`, `URIBL`). Weight 1 when
    /// left out, as in Postfix.
    pub fn parse(spec: &str, prefix: &str) -> Result<Site, SiteError> {
        let err = |reason| SiteError {
            site: spec.to_string(),
            reason,
        };
        let (rest, weight) = match spec.rsplit_once('*') {
            Some((rest, w)) => (
                rest,
                w.trim()
                    .parse::<f64>()
                    .map_err(|_| err("the weight is not a number"))?,
            ),
            None => (spec, 1.0),
        };
        let (zone, pattern) = match rest.split_once('=') {
            Some((zone, pattern)) => (
                zone,
                Some(
                    parse_pattern(pattern.trim())
                        .ok_or_else(|| err("the pattern is not like 127.0.0.[2..11]"))?,
                ),
            ),
            None => (rest, None),
        };
        let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        if zone.is_empty()
            || !zone.contains('.')
            || zone
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err(err("the zone is not a domain name"));
        }
        let symbol = format!(
            "{prefix}_{}",
            zone.to_ascii_uppercase().replace(['.', '-'], "_")
        );
        Ok(Site {
            zone,
            pattern,
            weight,
            symbol,
        })
    }

    fn matches(&self, answer: Ipv4Addr) -> bool {
        match &self.pattern {
            None => true,
            Some(octets) => answer
                .octets()
                .iter()
                .zip(octets.iter())
                .all(|(o, ranges)| ranges.iter().any(|(lo, hi)| lo <= o && o <= hi)),
        }
    }
}

/// `a.b.c.d` where each part is `n`, `[n..m]` or `[n;m;...]`.
fn parse_pattern(p: &str) -> Option<[Vec<(u8, u8)>; 4]> {
    let mut parts = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        let (part, tail) = if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']')?;
            (
                &inner[..end],
                inner[end + 1..]
                    .strip_prefix('.')
                    .unwrap_or(&inner[end + 1..]),
            )
        } else {
            match rest.split_once('.') {
                Some((a, b)) => (a, b),
                None => (rest, ""),
            }
        };
        let mut ranges = Vec::new();
        for alt in part.split(';') {
            let range = match alt.split_once("..") {
                Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
                None => {
                    let v: u8 = alt.trim().parse().ok()?;
                    (v, v)
                }
            };
            ranges.push(range);
        }
        parts.push(ranges);
        rest = tail;
    }
    parts.try_into().ok()
}

/// The name to look up for `ip` in `zone` (RFC 5782 §2.1, §2.4: nibbles for IPv6).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            format!("{s}{zone}.")
        }
    }
}

/// The domains a message names: envelope sender, From, and the hosts of its links.
pub fn message_domains(scan: &Scan<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |d: &str| {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if d.contains('.')
            && d.parse::<IpAddr>().is_err()
            && !out.contains(&d)
            && out.len() < MAX_DOMAINS
        {
            out.push(d);
        }
    };
    if let Some(d) = scan.envelope.mail_from_domain() {
        add(d);
    }
    if let Some(message) = scan.message {
        if let Some(from) = message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address.as_deref())
        {
            if let Some((_, d)) = from.rsplit_once('@') {
                add(d);
            }
        }
        for i in 0..message.text_body_count() {
            if let Some(text) = message.body_text(i) {
                for host in link_hosts(&text) {
                    add(host);
                }
            }
        }
        for i in 0..message.html_body_count() {
            if let Some(html) = message.body_html(i) {
                for host in link_hosts(&html) {
                    add(host);
                }
            }
        }
    }
    out
}

/// Hosts of `http://` and `https://` links in a text.
fn link_hosts(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("http").filter_map(move |(at, _)| {
        let rest = &text[at..];
        let rest = rest
            .strip_prefix("https://")
            .or_else(|| rest.strip_prefix("http://"))?;
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let host = &rest[..end];
        (!host.is_empty()).then_some(host)
    })
}

pub struct Dnsbl {
    resolver: TokioResolver,
    ip_sites: Vec<Site>,
    domain_sites: Vec<Site>,
    timeout: Duration,
    local: Vec<ipnet::IpNet>,
}

impl Dnsbl {
    pub fn new(
        nameservers: &[std::net::SocketAddr],
        timeout: Duration,
        ip_sites: Vec<Site>,
        domain_sites: Vec<Site>,
        local: Vec<ipnet::IpNet>,
    ) -> Result<Dnsbl, super::auth::ResolverError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| super::auth::ResolverError::new(e.to_string()))?
        } else {
            TokioResolver::builder_with_config(
                postbay_net::dns::nameservers_config(nameservers),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = timeout / 2;
        opts.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| super::auth::ResolverError::new(e.to_string()))?;
        Ok(Dnsbl {
            resolver,
            ip_sites,
            domain_sites,
            timeout,
            local,
        })
    }

    /// The answers of `site` for `name` that its pattern accepts (none: not listed, or the
    /// lookup failed, which never counts against the sender).
    async fn listed(&self, name: &str, site: &Site) -> Vec<Ipv4Addr> {
        match tokio::time::timeout(self.timeout, self.resolver.ipv4_lookup(name)).await {
            Ok(Ok(lookup)) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .filter(|a| site.matches(*a))
                .collect(),
            Ok(Err(e)) => {
                if !(e.is_nx_domain() || e.is_no_records_found()) {
                    tracing::debug!(name, error = %e, "DNSBL lookup failed");
                }
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(name, "DNSBL lookup timed out");
                Vec::new()
            }
        }
    }
}

impl Check for Dnsbl {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn run<'a>(&'a self, scan: &'a Scan<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut out = Outcome::default();
            // Our own networks and logged-in senders are not looked up (Rspamd's local_addrs).
            if scan.envelope.user.is_some() {
                return out;
            }
            let ip = scan.envelope.outside_client(&self.local);
            let mut lookups = Vec::new();
            if let Some(ip) = ip {
                for site in &self.ip_sites {
                    lookups.push((site, query_name(ip, &site.zone), ip.to_string()));
                }
            }
            if !self.domain_sites.is_empty() {
                for domain in message_domains(scan) {
                    for site in &self.domain_sites {
                        lookups.push((site, format!("{domain}.{}.", site.zone), domain.clone()));
                    }
                }
            }
            let answers = futures::future::join_all(
                lookups
                    .iter()
                    .map(|(site, name, _)| self.listed(name, site)),
            )
            .await;
            for ((site, _, what), hits) in lookups.iter().zip(answers) {
                if hits.is_empty() {
                    continue;
                }
                let options: Vec<String> = std::iter::once(what.clone())
                    .chain(hits.iter().map(|a| a.to_string()))
                    .collect();
                match out.symbols.iter_mut().find(|s| s.name == site.symbol) {
                    // One symbol per site, however many domains it lists.
                    Some(symbol) => symbol.options.extend(options),
                    None => out.add(
                        &site.symbol,
                        site.weight,
                        &format!("listed in {}", site.zone),
                        options,
                    ),
                }
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_parse_as_postfix_writes_them() {
        let s = Site::parse("zen.spamhaus.org=127.0.0.[2..11]*3", "RBL").unwrap();
        assert_eq!(
            (s.zone.as_str(), s.weight, s.symbol.as_str()),
            ("zen.spamhaus.org", 3.0, "RBL_ZEN_SPAMHAUS_ORG")
        );
        assert!(s.matches(Ipv4Addr::new(127, 0, 0, 2)) && s.matches(Ipv4Addr::new(127, 0, 0, 11)));
        assert!(
            !s.matches(Ipv4Addr::new(127, 0, 0, 12)) && !s.matches(Ipv4Addr::new(127, 0, 1, 2))
        );
        let s = Site::parse("bl.example.test=127.0.0.[2;4]", "RBL").unwrap();
        assert_eq!(s.weight, 1.0);
        assert!(s.matches(Ipv4Addr::new(127, 0, 0, 4)) && !s.matches(Ipv4Addr::new(127, 0, 0, 3)));
        let s = Site::parse("dbl.example.test*-0.5", "URIBL").unwrap();
        assert_eq!(
            (s.weight, s.symbol.as_str()),
            (-0.5, "URIBL_DBL_EXAMPLE_TEST")
        );
        assert!(
            s.matches(Ipv4Addr::new(10, 1, 2, 3)),
            "no pattern: any answer"
        );
        for bad in [
            "",
            "nodot",
            "bl.test*x",
            "bl.test=127.0.0",
            "bl.test=127.0.0.[2..]",
            "b l.test",
        ] {
            assert!(Site::parse(bad, "RBL").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_names_reverse_the_address() {
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "bl.test"),
            "99.2.0.192.bl.test."
        );
        // RFC 5782 §2.4's example.
        assert_eq!(
            query_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example.com"
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com."
        );
    }

    #[test]
    fn link_hosts_are_found_in_text() {
        let text = "see https://Spam.example.test/x?y and http://a-b.test, not ftp://c.test or http:// alone";
        assert_eq!(
            link_hosts(text).collect::<Vec<_>>(),
            ["Spam.example.test", "a-b.test"]
        );
    }
}
