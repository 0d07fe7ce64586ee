//! Per-domain scoring: a MailDomain's `spec.spamFilter` (thresholds and symbol scores), as
//! the reconcile core stores it (JSON in `domain_filter`, migration 0007). Looked up by the
//! recipients' domains for each scan, through a short-lived cache so a changed MailDomain
//! applies within [`CACHE_TTL`] on every filter replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Deserialize;

/// The overrides of one domain (or the strictest of several).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainOverrides {
    pub add_header: Option<f64>,
    pub reject: Option<f64>,
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
}

impl DomainOverrides {
    /// One message, several recipient domains, one verdict: the strictest of their values
    /// (lowest thresholds, highest score per symbol), so a recipient's lax domain cannot
    /// loosen what another's strict domain asked for.
    pub fn strictest<'a>(all: impl IntoIterator<Item = &'a DomainOverrides>) -> DomainOverrides {
        let min = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut out = DomainOverrides::default();
        for o in all {
            out.add_header = min(out.add_header, o.add_header);
            out.reject = min(out.reject, o.reject);
            for (name, score) in &o.scores {
                let entry = out.scores.entry(name.clone()).or_insert(*score);
                *entry = entry.max(*score);
            }
        }
        out
    }
}

/// Where the engine finds overrides.
pub trait OverrideSource: Send + Sync {
    /// The strictest overrides of `domains` (lowercase); `None` when none has any.
    fn for_domains<'a>(&'a self, domains: &'a [String]) -> BoxFuture<'a, Option<DomainOverrides>>;
}

/// How long a domain's overrides (or their absence) are reused.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// Domains remembered at most; the cache starts over when full.
const CACHE_MAX: usize = 10_000;

type Cached = (Instant, Option<DomainOverrides>);

/// Overrides from the database, cached per domain.
pub struct StoreOverrides {
    store: postbay_store::Store,
    cache: Mutex<HashMap<String, Cached>>,
}

impl StoreOverrides {
    pub fn new(store: postbay_store::Store) -> StoreOverrides {
        StoreOverrides {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn lookup(&self, domains: &[String]) -> Option<DomainOverrides> {
        let now = Instant::now();
        let mut known = Vec::new();
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for domain in domains {
                match cache.get(domain) {
                    Some((at, o)) if now.duration_since(*at) < CACHE_TTL => known.push(o.clone()),
                    _ => missing.push(domain.clone()),
                }
            }
        }
        if !missing.is_empty() {
            // A database error scores with the settings alone: the message is still scanned.
            let rows = match self.store.domain_filters(&missing).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::warn!(%error, "per-domain filter overrides unavailable");
                    return None;
                }
            };
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() + missing.len() > CACHE_MAX {
                cache.clear();
            }
            for domain in missing {
                let found = rows
                    .iter()
                    .find(|(d, _)| *d == domain)
                    .and_then(|(_, json)| match serde_json::from_str(json) {
                        Ok(o) => Some(o),
                        Err(error) => {
                            tracing::warn!(%domain, %error, "unreadable filter overrides ignored");
                            None
                        }
                    });
                cache.insert(domain, (now, found.clone()));
                known.push(found);
            }
        }
        let present: Vec<&DomainOverrides> = known.iter().flatten().collect();
        (!present.is_empty()).then(|| DomainOverrides::strictest(present))
    }
}

impl OverrideSource for StoreOverrides {
    fn for_domains<'a>(&'a self, domains: &'a [String]) -> BoxFuture<'a, Option<DomainOverrides>> {
        Box::pin(self.lookup(domains))
    }
}

/// The recipients' domains, lowercase and once each (at most 50: the rest share a verdict).
pub fn recipient_domains(rcpt_to: &[String]) -> Vec<String> {
    let mut domains: Vec<String> = Vec::new();
    for rcpt in rcpt_to {
        if let Some((_, domain)) = rcpt.rsplit_once('@') {
            let domain = domain.trim_end_matches('>').to_ascii_lowercase();
            if !domain.is_empty() && !domains.contains(&domain) && domains.len() < 50 {
                domains.push(domain);
            }
        }
    }
    domains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strictest_wins() {
        let a: DomainOverrides =
            serde_json::from_str(r#"{"addHeader":4,"scores":{"BAYES_SPAM":8,"X":1}}"#).unwrap();
        let b: DomainOverrides =
            serde_json::from_str(r#"{"addHeader":5,"reject":9,"scores":{"BAYES_SPAM":6}}"#)
                .unwrap();
        let s = DomainOverrides::strictest([&a, &b]);
        assert_eq!(s.add_header, Some(4.0));
        assert_eq!(s.reject, Some(9.0));
        assert_eq!(s.scores["BAYES_SPAM"], 8.0);
        assert_eq!(s.scores["X"], 1.0);
    }

    #[test]
    fn recipient_domains_once_each() {
        let r = recipient_domains(&[
            "a@Example.TEST".into(),
            "b@example.test".into(),
            "<c@other.test>".into(),
            "nodomain".into(),
        ]);
        assert_eq!(r, vec!["example.test", "other.test"]);
    }
}
