//! Delivery to other domains' servers, one module per step:
//!
//! * [`route`]: where mail for a domain goes (MX, implicit MX, null MX, address literals).
//! * [`client`]: the SMTP client session (EHLO, STARTTLS, AUTH, pipelined transactions).
//! * [`tls`]: opportunistic and strict TLS for that client.
//! * [`backoff`]: when a deferred recipient is tried again, and when it is given up.
//! * [`pool`]: sessions kept after a transaction for the next message to the same place.
//! * [`srs`]: the reverse path of forwarded mail (and the way back of its bounces).
//! * [`policy`]: which TLS a host is held to: [`dane`] (with [`dnssec`]'s validated
//!   lookups), else [`mta_sts`], else opportunistic; [`tlsrpt`] counts how sessions fared.
//!
//! [`Outbound::nexthop`] says where a recipient goes (its domain's MX hosts, the relayhost,
//! or a fixed transport); [`Outbound::deliver`] takes one message and the recipients of one
//! next hop and returns a final or temporary verdict for each; the queue runner records them.

pub mod backoff;
pub mod client;
pub mod dane;
pub mod dnssec;
pub mod mta_sts;
pub mod policy;
pub mod pool;
pub mod route;
pub mod srs;
pub mod tls;
pub mod tlsrpt;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Mutex, Semaphore};
use tokio_rustls::rustls;

use crate::lmtp::client::ServerReply;
use client::{ConnectOptions, Credentials, Session, TlsMode, Transaction};
use route::{Dns, Host, Route, RouteError};

/// Settings of outbound delivery (`outbound.*`).
#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// Our name in EHLO.
    pub hostname: String,
    /// Port of MX hosts (25).
    pub mx_port: u16,
    /// DNS servers; empty = the system's.
    pub nameservers: Vec<SocketAddr>,
    pub backoff: backoff::Backoff,
    pub timeouts: client::Timeouts,
    /// A smarthost that takes remote messages instead of the domains' MX hosts.
    pub relay: Option<Relay>,
    /// The domains that go through the relay; empty = every remote domain.
    /// `example.net` matches that domain, `.example.net` its subdomains.
    pub relay_domains: Vec<String>,
    /// Fixed next hops for some domains (Postfix's transport_maps), tried before the relay:
    /// the pattern (as in `relay_domains`) and where its mail goes.
    pub transports: Vec<(String, Relay)>,
    /// Connection reuse.
    pub pool: pool::PoolSettings,
    /// MTA-STS (RFC 8461); `None`: off.
    pub sts: Option<mta_sts::StsSettings>,
    /// DANE (RFC 7672): on when the resolver validates DNSSEC, unless `false`.
    pub dane: bool,
    /// A signed name the start-up check asks for (the root by default).
    pub dnssec_probe: String,
    /// Timeout of one DNSSEC/TLSA query.
    pub dane_timeout: std::time::Duration,
    /// Where TLS report counts are written (`None`: memory and metrics only), and the
    /// replica's name in their file names.
    pub tlsrpt_dir: Option<PathBuf>,
    pub node: String,
}

/// Whether `domain` (lower case) matches `pattern`: the same domain, or for a pattern with
/// a leading dot any subdomain of it (Postfix's transport_maps convention).
pub fn domain_matches(pattern: &str, domain: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix('.') {
        Some(parent) => domain
            .strip_suffix(parent)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        None => domain == pattern,
    }
}

/// Where the recipients of one delivery go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nexthop {
    /// The domain's MX hosts (lower case).
    Mx(String),
    /// The relayhost.
    Relay,
    /// `transports[i]`.
    Fixed(usize),
}

/// A smarthost (Postfix's `relayhost`) or a fixed transport: `[host]:port` is that host's
/// addresses, `host:port` its MX hosts; mail goes there, with TLS as set and a login if given.
/// A relay that cannot be reached defers, never bounces: its problems are not the
/// recipient's.
#[derive(Debug, Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    /// `host:port` (no brackets): look up the host's MX records first.
    pub mx_lookup: bool,
    pub tls: TlsMode,
    pub user: Option<String>,
    /// Read at every connection, so a rotated Secret takes effect without a restart.
    pub password_file: Option<PathBuf>,
    /// Extra trust roots (PEM) for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
}

impl Relay {
    /// Parses `[host]:port`, `host:port`, `[host]` or `host` (port 25 by default; an IPv6
    /// address needs the brackets).
    pub fn parse_target(spec: &str) -> Result<(String, u16, bool), String> {
        let spec = spec.trim();
        let bad = || format!("relayhost {spec:?}: expected [host]:port or host:port");
        let (host, rest, mx_lookup) = if let Some(inner) = spec.strip_prefix('[') {
            let (host, rest) = inner.split_once(']').ok_or_else(bad)?;
            (host, rest, false)
        } else {
            match spec.split_once(':') {
                // A second colon: an IPv6 address without brackets.
                Some((_, port)) if port.contains(':') => return Err(bad()),
                Some((host, _)) => (host, &spec[host.len()..], true),
                None => (spec, "", true),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        let port = match rest.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if rest.is_empty() => 25,
            None => return Err(bad()),
        };
        // An address is never looked up as a name.
        let mx_lookup = mx_lookup && host.parse::<std::net::IpAddr>().is_err();
        Ok((host.to_string(), port, mx_lookup))
    }
}

impl Default for OutboundSettings {
    fn default() -> Self {
        OutboundSettings {
            hostname: "localhost".into(),
            mx_port: 25,
            nameservers: Vec::new(),
            backoff: backoff::Backoff::default(),
            timeouts: client::Timeouts::default(),
            relay: None,
            relay_domains: Vec::new(),
            transports: Vec::new(),
            pool: pool::PoolSettings::default(),
            sts: Some(mta_sts::StsSettings::default()),
            dane: true,
            dnssec_probe: ".".into(),
            dane_timeout: std::time::Duration::from_secs(3),
            tlsrpt_dir: None,
            node: "local".into(),
        }
    }
}

/// The verdict on one recipient after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The receiving server took responsibility (2xx); `dsn`: it offered DSN, so it took
    /// the NOTIFY request along and reports success itself (RFC 3461 §5.2.2).
    Delivered { mta: String, dsn: bool },
    /// Final failure: the server's 5xx (`mta` set), or ours (null MX, no such domain, SMTPUTF8
    /// needed but not offered, too large).
    Failed {
        reply: ServerReply,
        mta: Option<String>,
    },
    /// Try again later.
    Deferred { reason: String },
}

pub struct Outbound {
    settings: OutboundSettings,
    dns: Dns,
    roots: Arc<rustls::RootCertStore>,
    /// The roots a relay's certificate is checked against (system + `ca_file`).
    relay_roots: Arc<rustls::RootCertStore>,
    /// The same for each of `settings.transports`.
    transport_roots: Vec<Arc<rustls::RootCertStore>>,
    pool: Arc<pool::Pool>,
    sts: Option<mta_sts::Sts>,
    secure: dnssec::SecureDns,
    /// Whether the resolver validated at the last check, and when that was.
    dane_state: Mutex<Option<(bool, std::time::Instant)>>,
    tlsrpt: tlsrpt::TlsRpt,
}

/// How long a DNSSEC check result holds before the resolver is asked again.
const DNSSEC_RECHECK: std::time::Duration = std::time::Duration::from_secs(1800);

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("resolver: {0}")]
    Resolver(#[from] RouteError),
    #[error("relayhost trust roots: {0}")]
    RelayRoots(String),
    #[error("relayhost with a login needs TLS: set relayhost_tls to starttls or implicit")]
    LoginWithoutTls,
    #[error("transport for {domain}: trust roots: {reason}")]
    TransportRoots { domain: String, reason: String },
}

/// Where one delivery goes and how it connects.
struct Destination {
    hosts: Vec<Host>,
    port: u16,
    opts: ConnectOptions,
    /// For a domain's own MX hosts: its TLS policies.
    policy: Option<policy::DomainTls>,
}

impl Outbound {
    pub fn new(settings: OutboundSettings) -> Result<Outbound, OutboundError> {
        let dns = Dns::new(&settings.nameservers)?;
        let roots = tls::root_store();
        let relay_roots = match settings.relay.as_ref().and_then(|r| r.ca_file.as_ref()) {
            Some(pem) => tls::root_store_with(pem).map_err(OutboundError::RelayRoots)?,
            None => roots.clone(),
        };
        let mut transport_roots = Vec::new();
        for (domain, transport) in &settings.transports {
            transport_roots.push(match &transport.ca_file {
                Some(pem) => {
                    tls::root_store_with(pem).map_err(|reason| OutboundError::TransportRoots {
                        domain: domain.clone(),
                        reason,
                    })?
                }
                None => roots.clone(),
            });
        }
        // Credentials never go over a connection that may be plain text.
        let relays = settings
            .relay
            .iter()
            .chain(settings.transports.iter().map(|(_, t)| t));
        for relay in relays {
            if relay.user.is_some() && relay.tls == TlsMode::Opportunistic {
                return Err(OutboundError::LoginWithoutTls);
            }
        }
        let pool = pool::Pool::new(settings.pool);
        let sts = settings
            .sts
            .clone()
            .map(|s| mta_sts::Sts::new(s, roots.clone()));
        let secure = dnssec::SecureDns::new(&settings.nameservers, settings.dane_timeout);
        let tlsrpt = tlsrpt::TlsRpt::new(settings.tlsrpt_dir.clone(), &settings.node);
        Ok(Outbound {
            settings,
            dns,
            roots,
            relay_roots,
            transport_roots,
            pool,
            sts,
            secure,
            dane_state: Mutex::new(None),
            tlsrpt,
        })
    }

    /// Whether DANE is in force: the setting, and the resolver validating DNSSEC (asked at
    /// start-up and every half hour). A resolver that does not validate turns DANE off with
    /// a warning and the `postbay_outbound_dane_enabled` gauge at 0; mail to signed domains
    /// then goes as if they had no TLSA records (their MTA-STS policy, or opportunistic),
    /// never deferred for DNSSEC the resolver cannot do.
    pub async fn dane_enabled(&self) -> bool {
        if !self.settings.dane {
            return false;
        }
        let mut state = self.dane_state.lock().await;
        if let Some((on, at)) = *state {
            if at.elapsed() < DNSSEC_RECHECK {
                return on;
            }
        }
        let probe = &self.settings.dnssec_probe;
        let servers: Vec<String> = self
            .secure
            .servers()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let on = match self.secure.validates(probe).await {
            Ok(true) => {
                tracing::info!(?servers, probe, "the resolver validates DNSSEC: DANE is on");
                true
            }
            Ok(false) => {
                tracing::warn!(?servers, probe, "the resolver does not validate DNSSEC (no AD bit for the probe): DANE is off; point outbound.nameservers at a validating resolver to enforce TLSA records");
                false
            }
            Err(e) => {
                tracing::warn!(?servers, probe, error = %e, "DNSSEC check failed: DANE is off until the next check");
                false
            }
        };
        postbay_telemetry::outbound_dane_enabled(on);
        *state = Some((on, std::time::Instant::now()));
        on
    }

    /// Writes the TLS report counts (a timer calls it, and shutdown).
    pub fn flush_reports(&self) {
        self.tlsrpt.flush();
    }

    /// This replica's TLS report counts of today (tests, admin).
    pub fn tls_report_counts(&self) -> Vec<(tlsrpt::PolicyKey, tlsrpt::Counts)> {
        self.tlsrpt.snapshot()
    }

    /// The TLS policies of a recipient domain: its MTA-STS policy, and whether its MX RRset
    /// is validated (when DANE is on). `Err`: the validating resolver failed on the MX RRset
    /// (bogus), a reason to defer.
    async fn domain_tls(&self, domain: &str) -> Result<policy::DomainTls, String> {
        let mx_secure = if self.dane_enabled().await {
            dane::mx_secure(&self.secure, domain)
                .await
                .map_err(|e| format!("DANE: {e}"))?
        } else {
            false
        };
        let sts = match &self.sts {
            Some(sts) => {
                let (policy, failure) = sts.policy(&self.dns, domain).await;
                if let Some(failure) = failure {
                    // RFC 8460 §4.3.2.3: the domain hears that its policy could not be had.
                    let result_type = match failure {
                        mta_sts::FetchFailure::Fetch => tlsrpt::ResultType::StsPolicyFetchError,
                        mta_sts::FetchFailure::Invalid => tlsrpt::ResultType::StsPolicyInvalid,
                    };
                    self.tlsrpt.record(
                        &tlsrpt::PolicyKey {
                            policy_type: tlsrpt::PolicyType::Sts,
                            policy_string: Vec::new(),
                            policy_domain: domain.to_string(),
                            mx_host: Vec::new(),
                        },
                        Some(tlsrpt::FailureKey {
                            result_type,
                            receiving_mx_hostname: format!("mta-sts.{domain}"),
                            receiving_ip: String::new(),
                        }),
                    );
                }
                policy
            }
            None => None,
        };
        Ok(policy::DomainTls {
            domain: domain.to_string(),
            sts,
            mx_secure,
        })
    }

    /// Where mail for `rcpt` goes: a transport whose pattern matches its domain, else the
    /// relayhost when it takes this domain, else the domain's MX hosts.
    pub fn nexthop(&self, rcpt: &str) -> Nexthop {
        let domain = route::domain_of(rcpt).to_ascii_lowercase();
        if let Some(i) = self
            .settings
            .transports
            .iter()
            .position(|(pattern, _)| domain_matches(pattern, &domain))
        {
            return Nexthop::Fixed(i);
        }
        if self.settings.relay.is_some()
            && (self.settings.relay_domains.is_empty()
                || self
                    .settings
                    .relay_domains
                    .iter()
                    .any(|p| domain_matches(p, &domain)))
        {
            return Nexthop::Relay;
        }
        Nexthop::Mx(domain)
    }

    /// The name of a next hop: deliveries with the same key share one transaction per
    /// message, the per-destination limit and cached connections.
    pub fn key(&self, hop: &Nexthop) -> String {
        match hop {
            Nexthop::Mx(domain) => domain.clone(),
            Nexthop::Relay => match &self.settings.relay {
                Some(r) => format!("relay:[{}]:{}", r.host, r.port),
                None => "relay:none".into(),
            },
            Nexthop::Fixed(i) => match self.settings.transports.get(*i) {
                Some((_, t)) => format!("transport:[{}]:{}", t.host, t.port),
                None => "transport:none".into(),
            },
        }
    }

    /// Idle cached sessions (tests, metrics).
    pub fn idle_connections(&self) -> usize {
        self.pool.idle_count()
    }

    /// A relay's or transport's hosts and connection options; `Err` is a reason to defer.
    async fn relay_destination(
        &self,
        relay: &Relay,
        roots: &Arc<rustls::RootCertStore>,
    ) -> Result<Destination, String> {
        let hosts = if relay.mx_lookup {
            match self.dns.route(&relay.host).await {
                Ok(Route::Hosts(hosts)) => hosts,
                Ok(Route::NullMx) => return Err(format!("relayhost {} has a null MX", relay.host)),
                Err(e) => return Err(format!("relayhost {}: {e}", relay.host)),
            }
        } else {
            match relay.host.parse() {
                Ok(ip) => vec![Host::Address(ip)],
                Err(_) => vec![Host::Name(relay.host.clone())],
            }
        };
        let auth = match (&relay.user, &relay.password_file) {
            (Some(user), Some(file)) => {
                let password = tokio::fs::read_to_string(file).await.map_err(|e| {
                    format!(
                        "cannot read the relayhost password file {}: {e}",
                        file.display()
                    )
                })?;
                Some(Credentials {
                    user: user.clone(),
                    password: password.trim_end_matches(['\r', '\n']).to_string(),
                })
            }
            (Some(_), None) => {
                return Err("relayhost_user is set without relayhost_password_file".into())
            }
            _ => None,
        };
        Ok(Destination {
            hosts,
            port: relay.port,
            opts: ConnectOptions {
                hostname: self.settings.hostname.clone(),
                timeouts: self.settings.timeouts,
                tls: relay.tls,
                roots: roots.clone(),
                auth,
                dane: None,
            },
            policy: None,
        })
    }

    pub fn settings(&self) -> &OutboundSettings {
        &self.settings
    }

    /// Delivers `message` to `recipients`, all of one next hop; one verdict per recipient.
    /// A cached session to that hop is used first; one that turns out to be closed (before
    /// the MAIL reply, so nothing was sent) is dropped and the message goes over a new one.
    pub async fn deliver(&self, hop: &Nexthop, out: &Outgoing<'_>) -> Vec<Verdict> {
        let Outgoing {
            mail_from,
            recipients,
            message,
            eight_bit,
            smtputf8,
            ..
        } = *out;
        let all = |v: Verdict| vec![v; recipients.len()];
        let key = self.key(hop);
        let needs_utf8 = smtputf8 && needs_smtputf8(mail_from, recipients, message);
        let has_8bit = eight_bit && message.iter().any(|b| *b >= 0x80);
        let tx = Attempt {
            out: *out,
            needs_utf8,
            has_8bit,
        };
        if let Some(mut cached) = self.pool.take(&key) {
            match self
                .transaction(&mut cached.session, &cached.mta, &tx)
                .await
            {
                Ok(verdicts) => {
                    self.pool.give_back(&key, cached).await;
                    return verdicts;
                }
                Err(e) if !cached.session.mail_answered() => {
                    tracing::debug!(mx = cached.mta, error = %e, "cached session was closed; connecting anew");
                }
                Err(e) => {
                    return all(Verdict::Deferred {
                        reason: format!("{}: {e}", cached.mta),
                    })
                }
            }
        }
        let destination = match hop {
            Nexthop::Relay => match &self.settings.relay {
                Some(relay) => match self.relay_destination(relay, &self.relay_roots).await {
                    Ok(d) => d,
                    Err(reason) => return all(Verdict::Deferred { reason }),
                },
                None => {
                    return all(Verdict::Deferred {
                        reason: "no relayhost is configured".into(),
                    })
                }
            },
            Nexthop::Fixed(i) => match (
                self.settings.transports.get(*i),
                self.transport_roots.get(*i),
            ) {
                (Some((_, t)), Some(roots)) => match self.relay_destination(t, roots).await {
                    Ok(d) => d,
                    Err(reason) => return all(Verdict::Deferred { reason }),
                },
                _ => {
                    return all(Verdict::Deferred {
                        reason: format!("no transport {i}"),
                    })
                }
            },
            Nexthop::Mx(domain) => match self.dns.route(domain).await {
                Ok(Route::Hosts(hosts)) => Destination {
                    policy: match self.domain_tls(domain).await {
                        Ok(p) => Some(p),
                        Err(reason) => return all(Verdict::Deferred { reason }),
                    },
                    hosts,
                    port: self.settings.mx_port,
                    opts: ConnectOptions {
                        hostname: self.settings.hostname.clone(),
                        timeouts: self.settings.timeouts,
                        tls: TlsMode::Opportunistic,
                        roots: self.roots.clone(),
                        auth: None,
                        dane: None,
                    },
                },
                Ok(Route::NullMx) => {
                    return all(ours(556, "5.1.10 Recipient address has null MX (RFC 7505)"))
                }
                Err(RouteError::NoSuchDomain(d)) => {
                    return all(ours(550, &format!("5.1.2 Domain {d} does not exist")))
                }
                Err(e) => {
                    return all(Verdict::Deferred {
                        reason: e.to_string(),
                    })
                }
            },
        };
        let Destination {
            hosts,
            port,
            opts: base,
            policy,
        } = destination;
        let mut last_error = format!("no address for the hosts of {key}");
        for host in &hosts {
            let name = match host {
                Host::Name(n) => n.clone(),
                Host::Address(a) => a.to_string(),
            };
            let (opts, report) = match (&policy, host) {
                (Some(domain), Host::Name(n)) => {
                    match policy::for_host(&self.secure, &self.tlsrpt, domain, n, port).await {
                        Ok(h) => (
                            ConnectOptions {
                                tls: h.tls,
                                dane: h.dane,
                                ..base.clone()
                            },
                            h.report,
                        ),
                        Err(reason) => {
                            tracing::info!(
                                mx = n,
                                reason,
                                "host not usable under the TLS policy; trying the next"
                            );
                            last_error = reason;
                            continue;
                        }
                    }
                }
                _ => (base.clone(), None),
            };
            let addresses = match self.dns.addresses(host).await {
                Ok(a) => a,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            for ip in addresses {
                let addr = SocketAddr::new(ip, port);
                let mta = format!("{name}[{ip}]");
                let session = match client::connect(addr, &name, &opts).await {
                    Ok(s) => s,
                    Err(e) => {
                        if let Some(report) = &report {
                            report.failed(&self.tlsrpt, &e, &name, ip);
                        }
                        // §5.1: try the next address or MX host.
                        tracing::info!(mx = mta, error = %e, "host unusable; trying the next");
                        last_error = format!("{mta}: {e}");
                        continue;
                    }
                };
                postbay_telemetry::outbound_connection("new");
                if let Some(report) = &report {
                    report.connected(&self.tlsrpt, &session, &name, ip);
                }
                log_tls(&mta, &session, &opts);
                let mut fresh = pool::Checkout::fresh(session, mta);
                return match self.transaction(&mut fresh.session, &fresh.mta, &tx).await {
                    Ok(verdicts) => {
                        self.pool.give_back(&key, fresh).await;
                        verdicts
                    }
                    Err(e) => all(Verdict::Deferred {
                        reason: format!("{}: {e}", fresh.mta),
                    }),
                };
            }
        }
        all(Verdict::Deferred { reason: last_error })
    }

    /// One transaction on `session`: a verdict per recipient, or `Err` when the session
    /// broke (the caller defers, or retries a cached session that never answered MAIL).
    async fn transaction(
        &self,
        session: &mut Session,
        mta: &str,
        a: &Attempt<'_>,
    ) -> Result<Vec<Verdict>, client::ClientError> {
        let (mail_from, recipients, message) = (a.out.mail_from, a.out.recipients, a.out.message);
        let all = |v: Verdict| vec![v; recipients.len()];
        let caps = session.caps;
        // RFC 6531 §3.4: a message that needs SMTPUTF8 is not sent to a server without it.
        // X.6.7 when an address is non-ASCII, X.6.9 when only the header is (RFC 6531 §3.7).
        if a.needs_utf8 && !caps.has(smtp_proto::EXT_SMTP_UTF8) {
            let addresses = !mail_from.is_ascii() || recipients.iter().any(|r| !r.is_ascii());
            let status = if addresses { "5.6.7" } else { "5.6.9" };
            return Ok(all(failed(
                553,
                &format!("{status} {mta} does not support SMTPUTF8, which this message needs"),
            )));
        }
        // RFC 6152 §3: 8-bit content only to a server that offers 8BITMIME (we do not
        // downgrade: that would break the DKIM signatures).
        if a.has_8bit && !caps.has(smtp_proto::EXT_8BIT_MIME) {
            return Ok(all(failed(
                554,
                &format!("5.6.3 {mta} does not support 8BITMIME, which this message needs"),
            )));
        }
        // RFC 1870 §6: never send what the server said it would refuse.
        if caps.size > 0 && message.len() > caps.size {
            return Ok(all(failed(
                552,
                &format!(
                    "5.3.4 Message size {} exceeds the limit of {mta}, {}",
                    message.len(),
                    caps.size
                ),
            )));
        }
        let tx = Transaction {
            mail_from,
            recipients,
            message,
            eight_bit: a.has_8bit
                || (caps.has(smtp_proto::EXT_8BIT_MIME) && message.iter().any(|b| *b >= 0x80)),
            smtputf8: a.needs_utf8,
            dsn_mail: &a.out.dsn.mail,
            dsn_rcpt: &a.out.dsn.rcpt,
        };
        let dsn = caps.has(smtp_proto::EXT_DSN);
        let replies = session.send(&tx).await?;
        Ok(replies
            .into_iter()
            .map(|r| {
                if r.is_success() {
                    Verdict::Delivered {
                        mta: mta.to_string(),
                        dsn,
                    }
                } else if r.is_permanent() {
                    Verdict::Failed {
                        reply: r,
                        mta: Some(mta.to_string()),
                    }
                } else {
                    Verdict::Deferred {
                        reason: format!("{mta} said: {} {}", r.code, r.text),
                    }
                }
            })
            .collect())
    }
}

/// One message for one next hop, with what it needs from the server.
struct Attempt<'a> {
    out: Outgoing<'a>,
    needs_utf8: bool,
    has_8bit: bool,
}

/// One message for the recipients of one next hop, as the queue holds it.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    pub mail_from: &'a str,
    pub recipients: &'a [&'a str],
    pub message: &'a [u8],
    /// The client sent it with BODY=8BITMIME / SMTPUTF8.
    pub eight_bit: bool,
    pub smtputf8: bool,
    pub dsn: &'a DsnParams,
}

/// RFC 3461 parameters of one delivery, encoded (see [`client::Transaction`]).
#[derive(Debug, Clone, Default)]
pub struct DsnParams {
    pub mail: String,
    /// One entry per recipient, in order.
    pub rcpt: Vec<String>,
}

fn log_tls(mta: &str, session: &Session, opts: &ConnectOptions) {
    match &session.tls {
        None => tracing::info!(mx = mta, "session without TLS (not offered)"),
        Some(tls::CertStatus::Verified) if opts.dane.is_some() => {
            tracing::info!(mx = mta, "TLS, certificate matches the DANE TLSA records")
        }
        Some(tls::CertStatus::Verified) => tracing::info!(mx = mta, "TLS, certificate verified"),
        Some(tls::CertStatus::Unverified(why)) => {
            tracing::info!(
                mx = mta,
                reason = why,
                "TLS, certificate not verified (opportunistic)"
            )
        }
        Some(tls::CertStatus::Rejected(why)) => {
            tracing::info!(
                mx = mta,
                reason = %why,
                "TLS, certificate not verified (opportunistic)"
            )
        }
    }
}

fn ours(code: u16, text: &str) -> Verdict {
    Verdict::Failed {
        reply: ServerReply {
            code,
            text: text.to_string(),
        },
        mta: None,
    }
}

/// Our own decision about a server (it said nothing), so no Remote-MTA in the DSN.
fn failed(code: u16, text: &str) -> Verdict {
    ours(code, text)
}

/// Whether the envelope or the header section has non-ASCII characters (RFC 6531, RFC 6532),
/// which only an SMTPUTF8 server may receive. Asked only when the client sent the message
/// with SMTPUTF8: raw UTF-8 in a header without it goes out as it came, as Postfix does
/// (`smtputf8_autodetect_classes` is empty by default).
pub fn needs_smtputf8(mail_from: &str, recipients: &[&str], message: &[u8]) -> bool {
    if !mail_from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()) {
        return true;
    }
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    !message[..header_end].is_ascii()
}

/// Keeps at most `limit` deliveries per destination domain at once (Postfix's
/// `default_destination_concurrency_limit` = 20).
#[derive(Default)]
pub struct DestinationLimits {
    limit: usize,
    per_domain: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl DestinationLimits {
    pub fn new(limit: usize) -> DestinationLimits {
        DestinationLimits {
            limit: limit.max(1),
            per_domain: Mutex::default(),
        }
    }

    pub async fn acquire(&self, domain: &str) -> tokio::sync::OwnedSemaphorePermit {
        let sem = {
            let mut map = self.per_domain.lock().await;
            // Drop idle entries now and then so the map does not grow with every domain.
            if map.len() > 10_000 {
                map.retain(|_, s| s.available_permits() < self.limit);
            }
            map.entry(domain.to_ascii_lowercase())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
                .clone()
        };
        sem.acquire_owned().await.expect("never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayhost_targets_parse_like_postfix() {
        let ok = |s: &str| Relay::parse_target(s).unwrap();
        assert_eq!(
            ok("[smtp.example.net]:587"),
            ("smtp.example.net".into(), 587, false)
        );
        assert_eq!(
            ok("smtp.example.net:2525"),
            ("smtp.example.net".into(), 2525, true)
        );
        assert_eq!(ok("relay.test"), ("relay.test".into(), 25, true));
        assert_eq!(ok("[relay.test]"), ("relay.test".into(), 25, false));
        assert_eq!(ok("127.0.0.5:25"), ("127.0.0.5".into(), 25, false));
        assert_eq!(ok("[::1]:465"), ("::1".into(), 465, false));
        for bad in [
            "",
            "[x",
            "::1:25",
            "host:port",
            "[h]x",
            "h:99999",
            "[]:25",
            "a b:25",
        ] {
            assert!(Relay::parse_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transport_patterns_match_a_domain_or_its_subdomains() {
        for (pattern, domain, want) in [
            ("example.net", "example.net", true),
            ("Example.NET.", "example.net", true),
            ("example.net", "mail.example.net", false),
            (".example.net", "mail.example.net", true),
            (".example.net", "a.b.example.net", true),
            (".example.net", "example.net", false),
            (".example.net", "badexample.net", false),
            ("example.net", "example.org", false),
        ] {
            assert_eq!(
                domain_matches(pattern, domain),
                want,
                "{pattern} ~ {domain}"
            );
        }
    }

    fn relay(host: &str) -> Relay {
        Relay {
            host: host.into(),
            port: 25,
            mx_lookup: false,
            tls: TlsMode::Opportunistic,
            user: None,
            password_file: None,
            ca_file: None,
        }
    }

    #[tokio::test]
    async fn transports_come_before_the_relayhost_which_takes_its_domains_only() {
        let out = Outbound::new(OutboundSettings {
            nameservers: vec!["127.0.0.1:53".parse().unwrap()],
            relay: Some(relay("relay.test")),
            relay_domains: vec!["big.test".into(), ".corp.test".into()],
            transports: vec![(".partner.test".into(), relay("10.0.0.5"))],
            ..OutboundSettings::default()
        })
        .unwrap();
        assert_eq!(out.nexthop("a@x.partner.test"), Nexthop::Fixed(0));
        assert_eq!(out.nexthop("a@BIG.test"), Nexthop::Relay);
        assert_eq!(out.nexthop("a@eu.corp.test"), Nexthop::Relay);
        assert_eq!(
            out.nexthop("a@Other.Test"),
            Nexthop::Mx("other.test".into())
        );
        assert_eq!(out.key(&Nexthop::Fixed(0)), "transport:[10.0.0.5]:25");
        assert_eq!(out.key(&Nexthop::Relay), "relay:[relay.test]:25");
        assert_eq!(out.key(&Nexthop::Mx("other.test".into())), "other.test");
    }

    #[test]
    fn smtputf8_is_needed_for_non_ascii_envelopes_and_headers_only() {
        assert!(!needs_smtputf8(
            "a@b.test",
            &["c@d.test"],
            b"Subject: hi\r\n\r\n\xc3\xa9"
        ));
        assert!(needs_smtputf8(
            "a@b.test",
            &["j\u{f6}rg@d.test"],
            b"S: x\r\n\r\n"
        ));
        assert!(needs_smtputf8(
            "a@b.test",
            &["c@d.test"],
            "Subject: caf\u{e9}\r\n\r\nx".as_bytes()
        ));
    }
}
