//! SMTP TLS Reporting counts (RFC 8460): for each recipient domain with a TLS policy
//! (MTA-STS or DANE), per UTC day, how many sessions met it and how many failed, and why.
//! These are what a daily aggregate report (§4) is made of; sending reports is a later step,
//! `postbay tls-report` prints them in the report's JSON form from the files kept here.
//!
//! Each replica keeps its own counts in memory and writes them, whole, to
//! `<dir>/<day>/<node>.json` every flush (atomic rename), so a restart picks up the day where
//! it stopped and replicas never write the same file; the report merges them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// RFC 8460 §4.3 policy types (those Postbay enforces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PolicyType {
    #[serde(rename = "sts")]
    Sts,
    #[serde(rename = "tlsa")]
    Tlsa,
}

impl PolicyType {
    pub fn metric(self) -> &'static str {
        match self {
            PolicyType::Sts => "sts",
            PolicyType::Tlsa => "dane",
        }
    }
}

/// RFC 8460 §4.3.2 result types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    StsPolicyFetchError,
    StsPolicyInvalid,
}

/// The policy a session was held to (RFC 8460 §4.4 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyKey {
    pub policy_type: PolicyType,
    /// The MTA-STS policy's lines, or the TLSA records in presentation form.
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    /// MTA-STS mx patterns; for DANE the host the records belong to.
    pub mx_host: Vec<String>,
}

/// One failure kind at one receiving host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FailureKey {
    pub result_type: ResultType,
    pub receiving_mx_hostname: String,
    pub receiving_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub success: u64,
    pub failure: u64,
    pub failures: BTreeMap<String, (FailureKey, u64)>,
}

/// One day's counts of one replica, as written to disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub day: String,
    pub policies: Vec<(PolicyKey, Counts)>,
}

/// Bound on the policies counted per day, so a flood of domains cannot grow memory.
const MAX_POLICIES: usize = 50_000;

pub struct TlsRpt {
    dir: Option<PathBuf>,
    node: String,
    state: Mutex<(String, BTreeMap<PolicyKey, Counts>)>,
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::inbound::received::iso_day(secs)
}

impl TlsRpt {
    /// Counts for `node` kept under `dir` (none: memory only, metrics still counted).
    pub fn new(dir: Option<PathBuf>, node: &str) -> TlsRpt {
        let day = today();
        let counts = dir
            .as_ref()
            .and_then(|d| read_day(&d.join(&day).join(format!("{node}.json"))))
            .map(|d| d.policies.into_iter().collect())
            .unwrap_or_default();
        TlsRpt {
            dir,
            node: node.to_string(),
            state: Mutex::new((day, counts)),
        }
    }

    /// A session under `policy` succeeded (`failure` None) or failed.
    pub fn record(&self, policy: &PolicyKey, failure: Option<FailureKey>) {
        postbay_telemetry::outbound_tls_policy(policy.policy_type.metric(), failure.is_none());
        let today = today();
        let finished = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let finished = if state.0 != today {
                let old = std::mem::take(&mut state.1);
                Some((std::mem::replace(&mut state.0, today), old))
            } else {
                None
            };
            if state.1.len() < MAX_POLICIES || state.1.contains_key(policy) {
                let counts = state.1.entry(policy.clone()).or_default();
                match failure {
                    None => counts.success += 1,
                    Some(f) => {
                        counts.failure += 1;
                        let key = format!(
                            "{:?} {} {}",
                            f.result_type, f.receiving_mx_hostname, f.receiving_ip
                        );
                        counts.failures.entry(key).or_insert((f, 0)).1 += 1;
                    }
                }
            }
            finished
        };
        // The day turned: yesterday's counts are final, write them now.
        if let Some((day, counts)) = finished {
            self.write(&day, counts);
        }
    }

    /// Writes today's counts (the flush timer, and shutdown).
    pub fn flush(&self) {
        let (day, counts) = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.0.clone(), state.1.clone())
        };
        if !counts.is_empty() {
            self.write(&day, counts);
        }
    }

    fn write(&self, day: &str, counts: BTreeMap<PolicyKey, Counts>) {
        let Some(dir) = &self.dir else { return };
        let dir = dir.join(day);
        let file = dir.join(format!("{}.json", self.node));
        let body = Day {
            day: day.to_string(),
            policies: counts.into_iter().collect(),
        };
        let result = std::fs::create_dir_all(&dir).and_then(|()| {
            let tmp = file.with_extension("json.tmp");
            let bytes = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &file)
        });
        if let Err(e) = result {
            tracing::warn!(file = %file.display(), error = %e, "writing TLS report counts");
        }
    }

    /// The counts of this replica for today (tests, the admin command).
    pub fn snapshot(&self) -> Vec<(PolicyKey, Counts)> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1.clone().into_iter().collect()
    }
}

fn read_day(file: &Path) -> Option<Day> {
    let bytes = std::fs::read(file).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every replica's counts of `day` under `dir`, merged per policy.
pub fn merged(dir: &Path, day: &str) -> std::io::Result<BTreeMap<PolicyKey, Counts>> {
    let mut all: BTreeMap<PolicyKey, Counts> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir.join(day)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Some(day) = read_day(&path) else {
            tracing::warn!(file = %path.display(), "unreadable TLS report counts; skipped");
            continue;
        };
        for (policy, counts) in day.policies {
            let sum = all.entry(policy).or_default();
            sum.success += counts.success;
            sum.failure += counts.failure;
            for (key, (f, n)) in counts.failures {
                sum.failures.entry(key).or_insert((f, 0)).1 += n;
            }
        }
    }
    Ok(all)
}

/// RFC 8460 §4.4 reports, one per policy domain, for `day`.
pub fn reports(
    organization: &str,
    contact: &str,
    day: &str,
    counts: &BTreeMap<PolicyKey, Counts>,
) -> Vec<serde_json::Value> {
    let mut by_domain: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for (policy, c) in counts {
        let failures: Vec<serde_json::Value> = c
            .failures
            .values()
            .map(|(f, n)| {
                serde_json::json!({
                    "result-type": f.result_type,
                    "receiving-mx-hostname": f.receiving_mx_hostname,
                    "receiving-ip": f.receiving_ip,
                    "failed-session-count": n,
                })
            })
            .collect();
        by_domain
            .entry(policy.policy_domain.as_str())
            .or_default()
            .push(serde_json::json!({
                "policy": {
                    "policy-type": policy.policy_type,
                    "policy-string": policy.policy_string,
                    "policy-domain": policy.policy_domain,
                    "mx-host": policy.mx_host,
                },
                "summary": {
                    "total-successful-session-count": c.success,
                    "total-failure-session-count": c.failure,
                },
                "failure-details": failures,
            }));
    }
    by_domain
        .into_iter()
        .map(|(domain, policies)| {
            serde_json::json!({
                "organization-name": organization,
                "date-range": {
                    "start-datetime": format!("{day}T00:00:00Z"),
                    "end-datetime": format!("{day}T23:59:59Z"),
                },
                "contact-info": contact,
                "report-id": format!("{day}.{domain}@{organization}"),
                "policies": policies,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(domain: &str) -> PolicyKey {
        PolicyKey {
            policy_type: PolicyType::Sts,
            policy_string: vec!["version: STSv1".into(), "mode: enforce".into()],
            policy_domain: domain.into(),
            mx_host: vec!["mx.example.test".into()],
        }
    }

    #[test]
    fn counts_survive_a_restart_and_replicas_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let mismatch = FailureKey {
            result_type: ResultType::CertificateHostMismatch,
            receiving_mx_hostname: "mx.example.test".into(),
            receiving_ip: "192.0.2.1".into(),
        };
        let a = TlsRpt::new(Some(dir.path().into()), "smtp-0");
        a.record(&sts("example.test"), None);
        a.record(&sts("example.test"), Some(mismatch.clone()));
        a.record(&sts("example.test"), Some(mismatch.clone()));
        a.flush();
        // The replica restarts: it goes on from what it wrote.
        let a = TlsRpt::new(Some(dir.path().into()), "smtp-0");
        a.record(&sts("example.test"), None);
        a.flush();
        let b = TlsRpt::new(Some(dir.path().into()), "smtp-1");
        b.record(&sts("example.test"), None);
        b.record(&sts("other.test"), None);
        b.flush();
        let all = merged(dir.path(), &today()).unwrap();
        let c = &all[&sts("example.test")];
        assert_eq!((c.success, c.failure), (3, 2));
        assert_eq!(c.failures.values().next().unwrap(), &(mismatch, 2));
        let reports = reports("postbay.test", "postmaster@postbay.test", &today(), &all);
        assert_eq!(reports.len(), 2, "one report per policy domain");
        let first = &reports[0]["policies"][0];
        assert_eq!(first["summary"]["total-successful-session-count"], 3);
        assert_eq!(
            first["failure-details"][0]["result-type"],
            "certificate-host-mismatch"
        );
        assert_eq!(first["policy"]["policy-type"], "sts");
    }
}
