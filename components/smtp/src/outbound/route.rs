//! Where mail for a domain goes (RFC 5321 §5.1): its MX hosts in preference order, equal
//! preferences shuffled (§5.1: "randomize them to spread the load"); a domain without MX
//! records is its own implicit MX (its A/AAAA); a null MX (RFC 7505, a single `0 .`) says the
//! domain takes no mail, a permanent failure (556 5.1.10). An address literal
//! (`user@[192.0.2.1]`) goes to that address. CNAMEs are followed by the resolver, for the
//! domain and for MX host names alike (§5.1: use the canonical name). An MX naming an IP
//! address instead of a host is skipped (§5.1 requires a name; Postfix refuses it too).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::ResolverOpts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

/// One MX host (or the implicit one), in the order to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Address(IpAddr),
}

/// What DNS says about a recipient domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try, best first.
    Hosts(Vec<Host>),
    /// RFC 7505: the domain accepts no mail.
    NullMx,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The domain does not exist (NXDOMAIN): no retry will help.
    #[error("domain {0} does not exist")]
    NoSuchDomain(String),
    /// A DNS failure that may pass (timeout, SERVFAIL, no usable MX host).
    #[error("DNS lookup for {domain} failed: {reason}")]
    Temporary { domain: String, reason: String },
}

/// Orders MX records: lowest preference first, ties shuffled. `None` is a null MX.
pub fn order_mx<R: rand::Rng>(mut records: Vec<(u16, String)>, rng: &mut R) -> Route {
    for (_, name) in records.iter_mut() {
        *name = name.trim_end_matches('.').to_ascii_lowercase();
    }
    if records.len() == 1 && records[0].1.is_empty() {
        return Route::NullMx;
    }
    // A "." among real records breaks RFC 7505 §3; the real ones are used.
    records.retain(|(_, name)| !name.is_empty());
    records.shuffle(rng);
    records.sort_by_key(|(pref, _)| *pref); // stable: ties keep their shuffled order
    let mut hosts: Vec<Host> = Vec::with_capacity(records.len());
    for (_, name) in records {
        if name.parse::<IpAddr>().is_ok() {
            tracing::warn!(mx = name, "MX names an IP address, not a host; skipped");
            continue;
        }
        let host = Host::Name(name);
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Route::Hosts(hosts)
}

/// The domain of an address: what follows the last `@`.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// DNS lookups for outbound mail.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// `nameservers` empty: the system's (/etc/resolv.conf).
    pub fn new(nameservers: &[SocketAddr]) -> Result<Dns, RouteError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| RouteError::Temporary {
                domain: String::new(),
                reason: format!("reading the system resolver configuration: {e}"),
            })?
        } else {
            TokioResolver::builder_with_config(
                postbay_net::dns::nameservers_config(nameservers),
                provider,
            )
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = std::time::Duration::from_secs(5);
        opts.attempts = 2;
        let resolver = builder.build().map_err(|e| RouteError::Temporary {
            domain: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Dns { resolver })
    }

    /// The route for a recipient domain (or `[address literal]`).
    pub async fn route(&self, domain: &str) -> Result<Route, RouteError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = literal.strip_prefix("IPv6:").unwrap_or(literal);
            return match ip.parse::<IpAddr>() {
                Ok(ip) => Ok(Route::Hosts(vec![Host::Address(ip)])),
                Err(_) => Err(RouteError::NoSuchDomain(domain.to_string())),
            };
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let records: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if records.is_empty() {
                    return Ok(Route::Hosts(vec![Host::Name(domain.to_string())]));
                }
                match order_mx(records, &mut rand::thread_rng()) {
                    Route::Hosts(hosts) if hosts.is_empty() => Err(RouteError::Temporary {
                        domain: domain.into(),
                        reason: "no usable MX host".into(),
                    }),
                    route => Ok(route),
                }
            }
            Err(e) if e.is_nx_domain() => Err(RouteError::NoSuchDomain(domain.to_string())),
            // NODATA: no MX, so the domain itself is the implicit MX (§5.1).
            Err(e) if e.is_no_records_found() => {
                Ok(Route::Hosts(vec![Host::Name(domain.to_string())]))
            }
            Err(e) => Err(RouteError::Temporary {
                domain: domain.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// The TXT records of `name`, each its strings joined (RFC 7208 §3.3 style); empty when
    /// there are none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, RouteError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(RouteError::Temporary {
                domain: fqdn,
                reason: e.to_string(),
            }),
        }
    }

    /// A host's addresses (A and AAAA, CNAMEs followed). Empty when it has none.
    pub async fn addresses(&self, host: &Host) -> Result<Vec<IpAddr>, RouteError> {
        let name = match host {
            Host::Address(ip) => return Ok(vec![*ip]),
            Host::Name(name) => format!("{}.", name.trim_end_matches('.')),
        };
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(RouteError::Temporary {
                domain: name,
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn names(route: Route) -> Vec<String> {
        match route {
            Route::Hosts(h) => h
                .into_iter()
                .map(|h| match h {
                    Host::Name(n) => n,
                    Host::Address(a) => a.to_string(),
                })
                .collect(),
            Route::NullMx => vec!["<null>".into()],
        }
    }

    #[test]
    fn preference_order_with_ties_shuffled() {
        let records = vec![
            (20, "b1.example.".to_string()),
            (10, "A.example.".to_string()),
            (20, "b2.example.".to_string()),
            (30, "c.example.".to_string()),
        ];
        let mut seen_first_b = std::collections::HashSet::new();
        for seed in 0..32 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let got = names(order_mx(records.clone(), &mut rng));
            assert_eq!(got[0], "a.example");
            assert_eq!(got[3], "c.example");
            let mut middle = got[1..3].to_vec();
            seen_first_b.insert(middle[0].clone());
            middle.sort();
            assert_eq!(middle, ["b1.example", "b2.example"]);
        }
        assert_eq!(seen_first_b.len(), 2, "equal preferences must be shuffled");
    }

    #[test]
    fn null_mx_and_odd_records() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(order_mx(vec![(0, ".".into())], &mut rng), Route::NullMx);
        // A "." next to real MXs is ignored; an IP address as MX name is skipped.
        assert_eq!(
            names(order_mx(
                vec![
                    (0, ".".into()),
                    (5, "192.0.2.1".into()),
                    (10, "mx.example.".into())
                ],
                &mut rng
            )),
            ["mx.example"]
        );
        assert_eq!(domain_of("a@b@example.test"), "example.test");
    }
}
