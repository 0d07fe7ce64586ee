//! The MailAlias controller: one alias row per destination.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use postbay_api::{MailAlias, MailAliasStatus};
use postbay_reconcile::{alias, Change, Outcome};
use postbay_store::directory::split_address;

use crate::context::{key, owner, Context};
use crate::status::{self, Ready, FINALIZER};
use crate::{Error, Result};

pub const KIND: &str = "MailAlias";
pub const BLOCKED_RETRY: Duration = Duration::from_secs(300);
pub const RESYNC: Duration = Duration::from_secs(3600);

pub async fn reconcile(obj: Arc<MailAlias>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let owner = owner(&*obj)?;
    let retry_key = key(&*obj);
    let api: Api<MailAlias> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(a) => apply(&a, &api, &ctx).await,
            Event::Cleanup(a) => cleanup(&a, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&retry_key);
    Ok(action)
}

pub fn error_policy(obj: Arc<MailAlias>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(address = %obj.spec.address, %error, "MailAlias reconcile failed");
    ctx.metrics.failure(KIND, error.metric_label());
    ctx.backoff(key(&*obj))
}

async fn apply(a: &MailAlias, api: &Api<MailAlias>, ctx: &Context) -> Result<Action> {
    let owner = owner(a)?;
    let previous = a.status.clone().unwrap_or_default();
    let generation = a.metadata.generation;
    let (ready, result) = match alias::apply(&ctx.store, &owner, &a.spec).await {
        Ok(Outcome::Applied(change)) => {
            let message = format!(
                "{} forwards to {} destination(s)",
                a.spec.address,
                a.spec.destinations.len()
            );
            (Ready::yes("Applied", message), Ok(Some(change)))
        }
        Ok(Outcome::Blocked(blocked)) => {
            ctx.metrics.blocked(KIND, blocked.reason());
            (Ready::no(blocked.reason(), blocked.to_string()), Ok(None))
        }
        Err(e) => (
            Ready::no("ReconcileFailed", e.to_string()),
            Err(Error::from(e)),
        ),
    };
    let status = MailAliasStatus {
        conditions: vec![status::ready(&previous.conditions, generation, &ready)],
        observed_generation: generation,
    };
    status::apply(api, a, a.status.as_ref(), &status).await?;
    match result? {
        Some(Change::Created) => {
            let note = format!("alias {} created", a.spec.address);
            ctx.event(a, EventType::Normal, "Created", "Apply", note)
                .await;
        }
        Some(Change::Updated) => {
            let note = format!("alias {} updated", a.spec.address);
            ctx.event(a, EventType::Normal, "Updated", "Apply", note)
                .await;
        }
        None if ready.is_news(&previous.conditions) => {
            ctx.event(
                a,
                EventType::Warning,
                &ready.reason,
                "Apply",
                ready.message.clone(),
            )
            .await;
        }
        _ => {}
    }
    Ok(Action::requeue(if ready.ok {
        RESYNC
    } else {
        BLOCKED_RETRY
    }))
}

async fn cleanup(a: &MailAlias, ctx: &Context) -> Result<Action> {
    let owner = owner(a)?;
    if alias::delete(&ctx.store, &owner).await? {
        let note = format!("alias {} removed from the directory", a.spec.address);
        ctx.event(a, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(Action::await_change())
}

/// Aliases under `domain` in `namespace`, to retry when the domain appears.
pub fn under_domain(
    namespace: Option<&str>,
    domain: &str,
    all: &[Arc<MailAlias>],
) -> Vec<ObjectRef<MailAlias>> {
    all.iter()
        .filter(|a| {
            a.metadata.namespace.as_deref() == namespace
                && split_address(&a.spec.address).is_some_and(|(_, d)| d == domain)
        })
        .map(|a| ObjectRef::from_obj(&**a))
        .collect()
}

#[cfg(test)]
mod tests;
