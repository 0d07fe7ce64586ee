//! The Mailbox controller: the `mailboxes` row with the password from the referenced Secret
//! (hashed; the hash follows when the Secret changes), and the alias rows of
//! `spec.aliases`. A missing Secret or domain is a condition, never a crash loop.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use postbay_api::{Mailbox, MailboxStatus};
use postbay_reconcile::{mailbox, Change, Outcome};

use crate::context::{key, owner, Context};
use crate::status::{self, Ready, FINALIZER};
use crate::{Error, Result};

pub const KIND: &str = "Mailbox";
/// How soon a blocked mailbox looks again; Secret and MailDomain watches usually come first.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(300);
pub const RESYNC: Duration = Duration::from_secs(3600);

pub async fn reconcile(obj: Arc<Mailbox>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let owner = owner(&*obj)?;
    let retry_key = key(&*obj);
    let api: Api<Mailbox> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(m) => apply(&m, &api, &ctx).await,
            Event::Cleanup(m) => cleanup(&m, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&retry_key);
    Ok(action)
}

pub fn error_policy(obj: Arc<Mailbox>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(address = %obj.spec.address, %error, "Mailbox reconcile failed");
    ctx.metrics.failure(KIND, error.metric_label());
    ctx.backoff(key(&*obj))
}

/// What came of one attempt, before status is written.
enum Attempt {
    Done(Change),
    Blocked(Ready),
}

async fn apply(m: &Mailbox, api: &Api<Mailbox>, ctx: &Context) -> Result<Action> {
    let previous = m.status.clone().unwrap_or_default();
    let generation = m.metadata.generation;
    let attempt = attempt(m, ctx).await;
    let (ready, result) = match attempt {
        Ok(Attempt::Done(change)) => {
            let message = format!("mailbox {} is in the directory", m.spec.address);
            (Ready::yes("Applied", message), Ok(Some(change)))
        }
        Ok(Attempt::Blocked(ready)) => {
            ctx.metrics
                .blocked(KIND, status::reason_label(&ready.reason));
            (ready, Ok(None))
        }
        Err(e) => (Ready::no("ReconcileFailed", e.to_string()), Err(e)),
    };
    let status = MailboxStatus {
        conditions: vec![status::ready(&previous.conditions, generation, &ready)],
        observed_generation: generation,
    };
    status::apply(api, m, m.status.as_ref(), &status).await?;
    let change = result?;
    match change {
        Some(Change::Created) => {
            let note = format!("mailbox {} created", m.spec.address);
            ctx.event(m, EventType::Normal, "Created", "Apply", note)
                .await;
        }
        Some(Change::Updated) => {
            let note = format!(
                "mailbox {} updated (password, quota, aliases or enabled)",
                m.spec.address
            );
            ctx.event(m, EventType::Normal, "Updated", "Apply", note)
                .await;
        }
        None if ready.is_news(&previous.conditions) => {
            ctx.event(
                m,
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

/// Reads the password and writes the rows. `Err` only for what a retry may fix.
async fn attempt(m: &Mailbox, ctx: &Context) -> Result<Attempt> {
    let owner = owner(m)?;
    let reference = &m.spec.password_secret_ref;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Attempt::Blocked(Ready::no(
            "SecretNotFound",
            format!(
                "Secret {:?} (spec.passwordSecretRef) not found in namespace {:?}",
                reference.name, owner.namespace
            ),
        )));
    };
    let Some(password) = secret_value(&secret, &reference.key) else {
        return Ok(Attempt::Blocked(Ready::no(
            "SecretKeyNotFound",
            format!("Secret {:?} has no key {:?}", reference.name, reference.key),
        )));
    };
    match mailbox::apply(&ctx.store, &owner, &m.spec, &password).await {
        Ok(Outcome::Applied(change)) => Ok(Attempt::Done(change)),
        Ok(Outcome::Blocked(blocked)) => Ok(Attempt::Blocked(Ready::no(
            blocked.reason(),
            blocked.to_string(),
        ))),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Attempt::Blocked(Ready::no("InvalidSpec", e.to_string()))),
    }
}

/// Removes the row (if this resource holds it) and the aliases it declared.
async fn cleanup(m: &Mailbox, ctx: &Context) -> Result<Action> {
    let owner = owner(m)?;
    if mailbox::delete(&ctx.store, &owner, &m.spec.address).await? {
        let note = format!("mailbox {} removed from the directory", m.spec.address);
        ctx.event(m, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(Action::await_change())
}

/// A Secret value from `data`, or from `stringData` on objects not yet normalised by an
/// API server (as in tests).
pub fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.as_bytes().to_vec())
        })
}

/// Mailboxes that read `secret`: same namespace, `passwordSecretRef.name` equal.
pub fn reading_secret(secret: &Secret, all: &[Arc<Mailbox>]) -> Vec<ObjectRef<Mailbox>> {
    all.iter()
        .filter(|m| {
            m.metadata.namespace == secret.metadata.namespace
                && Some(&m.spec.password_secret_ref.name) == secret.metadata.name.as_ref()
        })
        .map(|m| ObjectRef::from_obj(&**m))
        .collect()
}

/// Mailboxes with an address or alias under `domain` in `namespace`.
pub fn under_domain(
    namespace: Option<&str>,
    domain: &str,
    all: &[Arc<Mailbox>],
) -> Vec<ObjectRef<Mailbox>> {
    all.iter()
        .filter(|m| {
            m.metadata.namespace.as_deref() == namespace
                && mailbox::domains(&m.spec).iter().any(|d| d == domain)
        })
        .map(|m| ObjectRef::from_obj(&**m))
        .collect()
}

#[cfg(test)]
mod tests;
