//! The MailDomain controller: the `domains` row, the DNS records to publish (with the
//! domain's DKIM keys), and optionally external-dns `DNSEndpoint` objects.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event};
use postbay_api::{MailDomain, MailDomainStatus};
use postbay_reconcile::{dns, domain, Change, Outcome};

use crate::context::{key, owner, Context};
use crate::dns_check::Checker;
use crate::status::{self, Ready, FINALIZER};
use crate::{dns_endpoint, Error, Result};

pub const KIND: &str = "MailDomain";
/// How soon a blocked domain looks again, e.g. whether the other claimant went away.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(120);
/// Periodic re-check of a healthy domain, against drift in the database.
pub const RESYNC: Duration = Duration::from_secs(3600);
/// Re-check while DNS records are known to be missing, so status follows the zone.
pub const DNS_RECHECK: Duration = Duration::from_secs(300);
/// Per-lookup timeout of the published check.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// The condition the published check reports.
pub const DNS_CONDITION: &str = "DNSRecordsPublished";

pub async fn reconcile(obj: Arc<MailDomain>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let owner = owner(&*obj)?;
    let retry_key = key(&*obj);
    let api: Api<MailDomain> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(d) => apply(&d, &api, &ctx).await,
            Event::Cleanup(d) => cleanup(&d, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&retry_key);
    Ok(action)
}

pub fn error_policy(obj: Arc<MailDomain>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(domain = %obj.spec.domain, %error, "MailDomain reconcile failed");
    ctx.metrics.failure(KIND, error.metric_label());
    ctx.backoff(key(&*obj))
}

async fn apply(d: &MailDomain, api: &Api<MailDomain>, ctx: &Context) -> Result<Action> {
    let owner = owner(d)?;
    let previous = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation;
    let outcome = match domain::apply(&ctx.store, &owner, &d.spec).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let ready = Ready::no("ReconcileFailed", e.to_string());
            let status = MailDomainStatus {
                conditions: vec![status::ready(&previous.conditions, generation, &ready)],
                observed_generation: generation,
                ..previous.clone()
            };
            if let Err(patch) = status::apply(api, d, d.status.as_ref(), &status).await {
                tracing::warn!(error = %patch, "could not report the failure in status");
            }
            return Err(e.into());
        }
    };

    let (ready, records, change, action) = match outcome {
        Outcome::Applied(change) => {
            let keys = ctx.store.dkim_keys(&d.spec.domain).await?;
            let mut records = dns::domain_records(&d.spec, &ctx.hosts, &keys);
            if let Some(server) = ctx.settings.dns_check_server {
                Checker::new(server, DNS_TIMEOUT).check(&mut records).await;
            }
            let message = format!(
                "domain {} is served; publish the {} records in status.dnsRecords",
                d.spec.domain,
                records.len()
            );
            (
                Ready::yes("Applied", message),
                records,
                Some(change),
                Action::requeue(RESYNC),
            )
        }
        Outcome::Blocked(blocked) => {
            ctx.metrics.blocked(KIND, blocked.reason());
            (
                Ready::no(blocked.reason(), blocked.to_string()),
                Vec::new(),
                None,
                Action::requeue(BLOCKED_RETRY),
            )
        }
    };

    let mut conditions = vec![status::ready(&previous.conditions, generation, &ready)];
    let mut action = action;
    if ctx.settings.dns_check_server.is_some() && ready.ok {
        let (published, reason, message) = published_summary(&records);
        if !published {
            action = Action::requeue(DNS_RECHECK);
        }
        conditions.push(status::condition(
            DNS_CONDITION,
            &previous.conditions,
            generation,
            published,
            reason,
            &message,
        ));
    }
    if ctx.settings.external_dns && ready.ok {
        conditions.push(dns_endpoint::publish(d, &records, &previous.conditions, ctx).await?);
    }
    let status = MailDomainStatus {
        conditions,
        observed_generation: generation,
        dns_records: records,
    };
    status::apply(api, d, d.status.as_ref(), &status).await?;

    match change {
        Some(Change::Created) => {
            let note = format!("domain {} added to the directory", d.spec.domain);
            ctx.event(d, EventType::Normal, "Created", "Apply", note)
                .await;
        }
        Some(Change::Updated) => {
            let note = format!("domain {} updated", d.spec.domain);
            ctx.event(d, EventType::Normal, "Updated", "Apply", note)
                .await;
        }
        None if ready.is_news(&previous.conditions) => {
            ctx.event(
                d,
                EventType::Warning,
                &ready.reason,
                "Apply",
                ready.message.clone(),
            )
            .await;
        }
        _ => {}
    }
    Ok(action)
}

/// The DNS condition from the records' `published` flags.
fn published_summary(records: &[postbay_api::DnsRecord]) -> (bool, &'static str, String) {
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

/// Removes the row this resource holds; a row held by another (we lost a conflict) stays.
async fn cleanup(d: &MailDomain, ctx: &Context) -> Result<Action> {
    let owner = owner(d)?;
    if domain::delete(&ctx.store, &owner, &d.spec.domain).await? {
        let note = format!("domain {} removed from the directory", d.spec.domain);
        ctx.event(d, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(Action::await_change())
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
