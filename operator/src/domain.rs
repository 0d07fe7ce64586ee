//! The MailDomain controller: the `domains` row, the DNS records to publish (with the
//! domain's DKIM keys), and optionally external-dns `DNSEndpoint` objects.

use std::sync::Arc;
use std::time::Duration;

use postbay_api::{Condition, DnsRecord, MailDomain, MailDomainStatus};
use postbay_reconcile::{dns, domain, Change, Outcome};

use crate::context::{owner, Context};
use crate::controller::{change_events, Attempt, Kind, Stage};
use crate::dns_check::Checker;
use crate::status::{self, Ready};
use crate::{dns_endpoint, Result};

/// Re-check while DNS records are known to be missing, so status follows the zone.
pub const DNS_RECHECK: Duration = Duration::from_secs(300);
/// Per-lookup timeout of the published check.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// The condition that says whether submitted mail for the domain is DKIM-signed.
pub const DKIM_CONDITION: &str = "DkimSigning";

/// The condition the published check reports.
pub const DNS_CONDITION: &str = "DNSRecordsPublished";

/// An applied domain: its records and the conditions besides Ready.
pub struct Applied {
    change: Change,
    records: Vec<DnsRecord>,
    conditions: Vec<Condition>,
    requeue: Duration,
}

impl Kind for MailDomain {
    const KIND: &'static str = "MailDomain";
    /// Periodic re-check of a healthy domain, against drift in the database.
    const RESYNC: Duration = Duration::from_secs(3600);
    /// How soon a blocked domain looks again, e.g. whether the other claimant went away.
    const BLOCKED_RETRY: Duration = Duration::from_secs(120);
    type Done = Applied;

    fn subject(&self) -> String {
        self.spec.domain.clone()
    }

    /// The row, then the records with the published check and the DNSEndpoint. Only the
    /// row's failure is shown in status; the later steps fail the reconcile as they are.
    async fn attempt(&self, ctx: &Context) -> Result<Attempt<Applied>> {
        let owner = owner(self)?;
        let change = match domain::apply(&ctx.store, &owner, &self.spec).await {
            Ok(Outcome::Applied(change)) => change,
            Ok(Outcome::Blocked(blocked)) => return Ok(Attempt::Blocked(Ready::blocked(&blocked))),
            Err(e) => return Ok(Attempt::Failed(e.into())),
        };
        let previous = self.status.as_ref().map_or(&[][..], |s| &s.conditions);
        let generation = self.metadata.generation;
        let keys = ctx.store.dkim_keys(&self.spec.domain).await?;
        let mut records = dns::domain_records(&self.spec, &ctx.hosts, &keys);
        let mut conditions = Vec::new();
        let mut requeue = Self::RESYNC;
        if let Some(server) = ctx.settings.dns_check_server {
            Checker::new(server, DNS_TIMEOUT).check(&mut records).await;
            let (published, reason, message) = published_summary(&records);
            if !published {
                requeue = DNS_RECHECK;
            }
            conditions.push(status::condition(
                DNS_CONDITION,
                previous,
                generation,
                published,
                reason,
                &message,
            ));
        }
        if ctx.settings.external_dns {
            conditions.push(dns_endpoint::publish(self, &records, previous, ctx).await?);
        }
        conditions.push(dkim_condition(&keys, previous, generation));
        Ok(Attempt::Done(Applied {
            change,
            records,
            conditions,
            requeue,
        }))
    }

    fn applied_message(&self, done: &Applied) -> String {
        format!(
            "domain {} is served; publish the {} records in status.dnsRecords",
            self.spec.domain,
            done.records.len()
        )
    }

    /// Blocked, the records are withdrawn; failed, the last known ones stay.
    fn fill_status(
        &self,
        status: &mut MailDomainStatus,
        previous: &MailDomainStatus,
        stage: Stage<'_, Applied>,
    ) {
        status.dns_records = match stage {
            Stage::Applied(done) => {
                status.conditions.extend(done.conditions.iter().cloned());
                done.records.clone()
            }
            Stage::Blocked => Vec::new(),
            Stage::Failed => previous.dns_records.clone(),
        };
    }

    fn applied_events(&self, done: &Applied) -> Vec<(&'static str, String)> {
        let domain = &self.spec.domain;
        change_events(
            done.change,
            format!("domain {domain} added to the directory"),
            format!("domain {domain} updated"),
        )
    }

    fn requeue(done: &Applied) -> Duration {
        done.requeue
    }

    /// Removes the row this resource holds; a row held by another (we lost a conflict)
    /// stays.
    async fn cleanup(&self, ctx: &Context) -> Result<Option<String>> {
        let owner = owner(self)?;
        let removed = domain::delete(&ctx.store, &owner, &self.spec.domain).await?;
        Ok(removed.then(|| format!("domain {} removed from the directory", self.spec.domain)))
    }
}

/// Whether mail submitted for the domain leaves signed: `DkimSigning` is False while the
/// domain has no enabled DkimKey (it still sends, unsigned, and the smtp log warns).
fn dkim_condition(
    keys: &[postbay_store::DkimKeyRow],
    previous: &[Condition],
    generation: Option<i64>,
) -> Condition {
    let enabled: Vec<&str> = keys
        .iter()
        .filter(|k| k.enabled)
        .map(|k| k.selector.as_str())
        .collect();
    if enabled.is_empty() {
        status::condition(
            DKIM_CONDITION,
            previous,
            generation,
            false,
            "NoKey",
            "no DkimKey for this domain: submitted mail is sent unsigned",
        )
    } else {
        status::condition(
            DKIM_CONDITION,
            previous,
            generation,
            true,
            "Signing",
            &format!(
                "submitted mail is signed with selector(s) {}",
                enabled.join(", ")
            ),
        )
    }
}

/// The DNS condition from the records' `published` flags.
fn published_summary(records: &[DnsRecord]) -> (bool, &'static str, String) {
    let missing: Vec<&str> = records
        .iter()
        .filter(|r| r.published == Some(false))
        .map(|r| r.purpose.as_str())
        .collect();
    let unknown = records.iter().filter(|r| r.published.is_none()).count();
    if !missing.is_empty() {
        let message = format!("missing or different: {}", missing.join(", "));
        (false, "NotPublished", message)
    } else if unknown > 0 {
        let message = format!("{unknown} lookups failed; see status.dnsRecords");
        (false, "LookupFailed", message)
    } else {
        (
            true,
            "Published",
            "every record is published as listed".into(),
        )
    }
}

/// MailDomains to look at again when `changed` (created, updated or deleted): those claiming
/// the same domain elsewhere, which may now win, or lose.
pub fn rivals(
    changed: &MailDomain,
    all: &[Arc<MailDomain>],
) -> Vec<kube::runtime::reflector::ObjectRef<MailDomain>> {
    all.iter()
        .filter(|d| d.spec.domain == changed.spec.domain && d.metadata.uid != changed.metadata.uid)
        .map(|d| kube::runtime::reflector::ObjectRef::from_obj(&**d))
        .collect()
}

/// MailDomains whose DNS records list `key`'s domain: same namespace, same domain.
pub fn for_domain(
    namespace: Option<&str>,
    domain: &str,
    all: &[Arc<MailDomain>],
) -> Vec<kube::runtime::reflector::ObjectRef<MailDomain>> {
    all.iter()
        .filter(|d| d.spec.domain == domain && d.metadata.namespace.as_deref() == namespace)
        .map(|d| kube::runtime::reflector::ObjectRef::from_obj(&**d))
        .collect()
}

#[cfg(test)]
mod tests;
