//! MTA-STS (RFC 8461): a domain says, in a TXT record at `_mta-sts.<domain>` and a policy
//! served over HTTPS from `mta-sts.<domain>`, which MX hosts it has and that they must be
//! reached over TLS with a certificate valid for their name. `mode: enforce` makes that
//! binding (a host that fails is not used, the mail waits); `testing` only reports; `none`
//! withdraws a policy.
//!
//! Policies are cached (§5.1) in memory and, when a directory is set, on the shared volume,
//! so a restart or another replica does not fall back to opportunistic TLS while the
//! policy still holds: a TXT record an attacker strips does not end a cached policy before
//! its `max_age`. The TXT id tells when to fetch anew (§3.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_rustls::rustls;

use super::route::{Dns, Host};

/// RFC 8461 §3.2: the largest max_age (one year).
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// §3.3 suggests a limit on the policy's size; 64 KiB as there.
const MAX_POLICY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

/// A policy as served (§3.2), with the TXT id it was fetched under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub mode: Mode,
    /// MX patterns: a host name, or `*.` and a domain (one label, §4.1).
    pub mx: Vec<String>,
    pub max_age: u64,
    /// Unix time of the fetch.
    pub fetched: u64,
    /// The policy's lines as served, for TLS reports (RFC 8460 §4.3 `policy-string`).
    pub text: Vec<String>,
}

impl Policy {
    /// Whether an MX host name is one the policy lists (§4.1).
    pub fn mx_matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| {
            let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .strip_suffix(parent)
                    .and_then(|head| head.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')),
                None => host == pattern,
            }
        })
    }

    fn expired(&self, now: u64) -> bool {
        now >= self.fetched.saturating_add(self.max_age)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy has no \"version: STSv1\"")]
    Version,
    #[error("policy mode {0:?} is not enforce, testing or none")]
    Mode(String),
    #[error("policy has no mode")]
    NoMode,
    #[error("policy max_age {0:?} is not a number of seconds")]
    MaxAge(String),
    #[error("policy has no max_age")]
    NoMaxAge,
    #[error("policy names no mx")]
    NoMx,
}

/// The id of an MTA-STS TXT record (`v=STSv1; id=...;`, §3.1); `None` when it is not one.
pub fn txt_id(txt: &str) -> Option<String> {
    let mut fields = txt.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    fields
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim().to_string())
        .filter(|id| {
            !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

/// Parses a policy body (§3.2: `key: value` lines, CRLF or LF; unknown keys ignored).
pub fn parse(body: &str, id: &str, fetched: u64) -> Result<Policy, PolicyError> {
    let (mut version, mut mode, mut max_age, mut mx) = (false, None, None, Vec::new());
    let mut text = Vec::new();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        text.push(format!("{}: {value}", key.trim()));
        match key.trim() {
            "version" => version = value == "STSv1",
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(PolicyError::Mode(other.into())),
                })
            }
            "max_age" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| PolicyError::MaxAge(value.into()))?;
                max_age = Some(secs.min(MAX_AGE_LIMIT));
            }
            "mx" => mx.push(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    if !version {
        return Err(PolicyError::Version);
    }
    let mode = mode.ok_or(PolicyError::NoMode)?;
    let max_age = max_age.ok_or(PolicyError::NoMaxAge)?;
    if mx.is_empty() && mode != Mode::None {
        return Err(PolicyError::NoMx);
    }
    Ok(Policy {
        id: id.to_string(),
        mode,
        mx,
        max_age,
        fetched,
        text,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where policies are fetched and kept.
#[derive(Debug, Clone)]
pub struct StsSettings {
    /// HTTPS port of `mta-sts.<domain>` (443; tests use another).
    pub port: u16,
    /// Cache directory (on the shared volume); `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// Connect, handshake and response, each.
    pub timeout: Duration,
}

impl Default for StsSettings {
    fn default() -> Self {
        StsSettings {
            port: 443,
            cache_dir: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a policy could not be had (RFC 8460 §4.3.2.3 result types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailure {
    /// No HTTPS answer, a bad certificate, not a 200 (`sts-policy-fetch-error`).
    Fetch,
    /// An answer that is not a valid policy (`sts-policy-invalid`).
    Invalid,
}

/// The policy cache and its fetcher.
pub struct Sts {
    settings: StsSettings,
    roots: Arc<rustls::RootCertStore>,
    /// One slot per domain: deliveries to one domain wait for one fetch, not one each.
    cache: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Policy>>>>>,
}

impl Sts {
    pub fn new(settings: StsSettings, roots: Arc<rustls::RootCertStore>) -> Sts {
        Sts {
            settings,
            roots,
            cache: Default::default(),
        }
    }

    fn slot(&self, domain: &str) -> Arc<Mutex<Option<Policy>>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        cache.entry(domain.to_string()).or_default().clone()
    }

    /// The policy in force for `domain`, if any (`mode: none` and expired ones are none),
    /// and why a fetch this time failed, if one did.
    pub async fn policy(&self, dns: &Dns, domain: &str) -> (Option<Policy>, Option<FetchFailure>) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let slot = self.slot(&domain);
        let mut cached = slot.lock().await;
        if cached.is_none() {
            *cached = self.load(&domain).await;
        }
        let now = now();
        if cached.as_ref().is_some_and(|p| p.expired(now)) {
            *cached = None;
        }
        // §3.1: more than one STSv1 record is as good as none.
        let ids: Option<Vec<String>> = dns
            .txt(&format!("_mta-sts.{domain}"))
            .await
            .ok()
            .map(|txts| txts.iter().filter_map(|t| txt_id(t)).collect());
        let mut failure = None;
        match ids.as_deref() {
            Some([id]) if cached.as_ref().is_none_or(|p| &p.id != id) => {
                match self.fetch(dns, &domain, id, now).await {
                    Ok(policy) => {
                        tracing::info!(domain, id, mode = ?policy.mode, max_age = policy.max_age, "MTA-STS policy fetched");
                        self.store(&domain, &policy).await;
                        *cached = Some(policy);
                    }
                    // §5.1: a cached policy stays in force; without one, no policy.
                    Err((why, reason)) => {
                        failure = Some(why);
                        tracing::warn!(
                            domain,
                            id,
                            reason,
                            cached = cached.is_some(),
                            "MTA-STS policy fetch failed"
                        )
                    }
                }
            }
            _ => {}
        }
        (cached.clone().filter(|p| p.mode != Mode::None), failure)
    }

    /// GET https://mta-sts.<domain>/.well-known/mta-sts.txt (§3.3): a certificate valid for
    /// that name, a 200 (no redirects), at most 64 KiB.
    async fn fetch(
        &self,
        dns: &Dns,
        domain: &str,
        id: &str,
        now: u64,
    ) -> Result<Policy, (FetchFailure, String)> {
        self.get(dns, domain)
            .await
            .map_err(|reason| (FetchFailure::Fetch, reason))
            .and_then(|body| {
                parse(&body, id, now).map_err(|e| (FetchFailure::Invalid, e.to_string()))
            })
    }

    /// The policy body: GET over HTTPS with a verified certificate.
    async fn get(&self, dns: &Dns, domain: &str) -> Result<String, String> {
        let host = format!("mta-sts.{domain}");
        let addresses = dns
            .addresses(&Host::Name(host.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let ip = addresses
            .first()
            .copied()
            .ok_or_else(|| format!("{host} has no address"))?;
        let t = self.settings.timeout;
        let addr = SocketAddr::new(ip, self.settings.port);
        let tcp = tokio::time::timeout(t, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let config = super::tls::strict_config(self.roots.clone());
        let tls = tokio::time::timeout(
            t,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| format!("TLS handshake with {host} timed out"))?
        .map_err(|e| format!("TLS with {host}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP to {host}: {e}"))?;
        let driver = tokio::spawn(conn);
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, &host)
            .header(hyper::header::USER_AGENT, "postbay")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = tokio::time::timeout(t, async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("HTTP to {host}: {e}"))?;
            if response.status() != hyper::StatusCode::OK {
                return Err(format!("{host} answered HTTP {}", response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_POLICY_BYTES)
                .collect()
                .await
                .map_err(|e| format!("policy from {host}: {e}"))?
                .to_bytes();
            String::from_utf8(body.to_vec()).map_err(|_| "policy is not UTF-8".to_string())
        })
        .await
        .map_err(|_| format!("HTTP to {host} timed out"));
        driver.abort();
        result?
    }

    fn file(&self, domain: &str) -> Option<PathBuf> {
        // Domain names from DNS: letters, digits, '-', '.'; anything else is not cached on disk.
        let safe = !domain.is_empty()
            && !domain.starts_with('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        let dir = self.settings.cache_dir.as_ref()?;
        safe.then(|| dir.join(format!("{domain}.json")))
    }

    async fn load(&self, domain: &str) -> Option<Policy> {
        let file = self.file(domain)?;
        let bytes = tokio::fs::read(&file).await.ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(policy) => Some(policy),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "unreadable cached MTA-STS policy; ignored");
                None
            }
        }
    }

    async fn store(&self, domain: &str, policy: &Policy) {
        let Some(file) = self.file(domain) else {
            return;
        };
        let write = async {
            if let Some(dir) = file.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
            tokio::fs::write(&tmp, serde_json::to_vec_pretty(policy)?).await?;
            tokio::fs::rename(&tmp, &file).await
        };
        if let Err(e) = write.await {
            tracing::warn!(file = %file.display(), error = %e, "caching the MTA-STS policy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records_and_their_ids() {
        assert_eq!(
            txt_id("v=STSv1; id=20160831085700Z;"),
            Some("20160831085700Z".into())
        );
        assert_eq!(txt_id("v=STSv1;id=abc"), Some("abc".into()));
        assert_eq!(txt_id("v=STSv2; id=abc;"), None);
        assert_eq!(txt_id("id=abc; v=STSv1"), None, "v= comes first (§3.1)");
        assert_eq!(txt_id("v=STSv1; id=a-b;"), None, "id is alphanumeric");
        assert_eq!(txt_id("v=STSv1;"), None);
    }

    #[test]
    fn policies_parse_as_rfc_8461_shows_them() {
        let body = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";
        let p = parse(body, "1", 100).unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.mx_matches("mail.example.com"));
        assert!(p.mx_matches("MAIL.example.com."));
        assert!(p.mx_matches("mx1.example.net"));
        assert!(!p.mx_matches("a.b.example.net"), "a wildcard is one label");
        assert!(!p.mx_matches("example.net"));
        assert!(!p.mx_matches("evilexample.net"));
        assert!(!p.mx_matches("mail.example.org"));
        assert!(!p.expired(100 + 604799) && p.expired(100 + 604800));
        assert_eq!(
            parse("version: STSv1\nmode: none\nmax_age: 10\n", "2", 0)
                .unwrap()
                .mode,
            Mode::None
        );
        assert_eq!(
            parse(
                "version: STSv1\nmode: enforce\nmax_age: 99999999999\nmx: a\n",
                "1",
                0
            )
            .unwrap()
            .max_age,
            MAX_AGE_LIMIT
        );
        assert_eq!(
            parse("mode: enforce\nmx: a\nmax_age: 1\n", "1", 0),
            Err(PolicyError::Version)
        );
        assert_eq!(
            parse("version: STSv1\nmode: strict\nmx: a\nmax_age: 1\n", "1", 0),
            Err(PolicyError::Mode("strict".into()))
        );
        assert_eq!(
            parse("version: STSv1\nmode: enforce\nmax_age: 1\n", "1", 0),
            Err(PolicyError::NoMx)
        );
        assert_eq!(
            parse("version: STSv1\nmode: enforce\nmx: a\n", "1", 0),
            Err(PolicyError::NoMaxAge)
        );
    }
}
