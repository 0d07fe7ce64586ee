//! The reconcile all four kinds share: the finalizer, the metrics timer, the retry state, the
//! Ready condition in status, Events and the requeue. A kind implements [`Kind`] with only
//! what differs: how it writes its rows, what its messages say, and its other status fields.
//! One copy of this flow means a fix to it (when status is written, which Event is sent)
//! reaches every kind at once.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event};
use kube::Resource;
use postbay_api::{
    Condition, DkimKey, DkimKeyStatus, MailAlias, MailAliasStatus, MailDomain, MailDomainStatus,
    Mailbox, MailboxStatus,
};
use postbay_reconcile::Change;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{key, owner, Context};
use crate::status::{self, Ready, FINALIZER};
use crate::{Error, Result};

/// The status of a kind. All four keep `status: Option<S>` with `S.conditions`, so one
/// macro writes these accessors instead of each kind.
pub trait Observed {
    type Status: Serialize + Clone + Default + Send + Sync;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    /// A status with these conditions (Ready first) and nothing else set.
    fn with_conditions(conditions: Vec<Condition>, generation: Option<i64>) -> Self::Status;
}

macro_rules! observed {
    ($($kind:ty => $status:ident),* $(,)?) => {$(
        impl Observed for $kind {
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn conditions(status: &$status) -> &[Condition] {
                &status.conditions
            }
            // `..Default::default()` is for the statuses with more fields; for the
            // others it is needless, which is fine.
            #[allow(clippy::needless_update)]
            fn with_conditions(conditions: Vec<Condition>, generation: Option<i64>) -> $status {
                $status {
                    conditions,
                    observed_generation: generation,
                    ..Default::default()
                }
            }
        }
    )*};
}

observed!(
    MailDomain => MailDomainStatus,
    Mailbox => MailboxStatus,
    MailAlias => MailAliasStatus,
    DkimKey => DkimKeyStatus,
);

/// One resource kind as the shared reconcile sees it.
pub trait Kind:
    Observed
    + Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The `kind` label of the metrics.
    const KIND: &'static str;
    /// Requeue after an applied reconcile: a re-check against drift in the database.
    const RESYNC: Duration = Duration::from_secs(3600);
    /// Requeue after a blocked one: how soon it looks again when no watch event comes
    /// first.
    const BLOCKED_RETRY: Duration = Duration::from_secs(300);

    /// What an applied attempt hands on to the Ready message, status and Events.
    type Done: Send + Sync;

    /// What the object declares, for logs (`example.test`, `alice@example.test`).
    fn subject(&self) -> String;

    /// Writes the rows. An `Err` fails the reconcile without a word in status (the error
    /// policy retries it); a failure status should show is [`Attempt::Failed`].
    fn attempt(&self, ctx: &Context) -> impl Future<Output = Result<Attempt<Self::Done>>> + Send;
    /// The message of the Ready=True condition.
    fn applied_message(&self, done: &Self::Done) -> String;
    /// Sets what `status` carries besides Ready and `observedGeneration`; most kinds carry
    /// nothing more.
    fn fill_status(
        &self,
        _status: &mut Self::Status,
        _previous: &Self::Status,
        _stage: Stage<'_, Self::Done>,
    ) {
    }
    /// The Normal Events `(reason, note)` of an applied attempt, in order.
    fn applied_events(&self, done: &Self::Done) -> Vec<(&'static str, String)>;
    /// Requeue after an applied reconcile; a kind may look again sooner.
    fn requeue(_done: &Self::Done) -> Duration {
        Self::RESYNC
    }
    /// Removes the rows the object holds; the note of a `Deleted` Event when it removed
    /// something.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// What came of one attempt, before status is written.
pub enum Attempt<D> {
    Done(D),
    /// Waiting for a change elsewhere (a Secret, a domain, another claimant); not an error.
    Blocked(Ready),
    /// A failure a retry may fix: shown as `ReconcileFailed`, then retried with backoff.
    Failed(Error),
}

impl<D> Attempt<D> {
    /// `result` with every error shown in status.
    pub fn reported(result: Result<Attempt<D>>) -> Attempt<D> {
        result.unwrap_or_else(Attempt::Failed)
    }
}

/// Which status [`Kind::fill_status`] is asked for.
pub enum Stage<'a, D> {
    Applied(&'a D),
    Blocked,
    Failed,
}

/// The `Created` or `Updated` Event of a change; none when nothing changed.
pub fn change_events(
    change: Change,
    created: String,
    updated: String,
) -> Vec<(&'static str, String)> {
    match change {
        Change::Created => vec![("Created", created)],
        Change::Updated => vec![("Updated", updated)],
        Change::Unchanged => Vec::new(),
    }
}

/// The reconcile of every kind: rows and status behind the finalizer, or cleanup when the
/// object is being deleted. A success forgets the object's failures.
pub async fn reconcile<K: Kind>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(K::KIND);
    let owner = owner(&*obj)?;
    let retry_key = key(&*obj);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(obj) => apply(&*obj, &api, &ctx).await,
            Event::Cleanup(obj) => cleanup(&*obj, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&retry_key);
    Ok(action)
}

/// Counts and logs a failed reconcile and retries it with exponential backoff.
pub fn error_policy<K: Kind>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(subject = %obj.subject(), %error, "{} reconcile failed", K::KIND);
    ctx.metrics.failure(K::KIND, error.metric_label());
    ctx.backoff(key(&*obj))
}

async fn apply<K: Kind>(obj: &K, api: &Api<K>, ctx: &Context) -> Result<Action> {
    let previous = obj.status().cloned().unwrap_or_default();
    let before = K::conditions(&previous);
    let (ready, done) = match obj.attempt(ctx).await? {
        Attempt::Done(done) => (
            Ready::yes("Applied", obj.applied_message(&done)),
            Some(done),
        ),
        Attempt::Blocked(ready) => {
            ctx.metrics
                .blocked(K::KIND, status::reason_label(&ready.reason));
            (ready, None)
        }
        Attempt::Failed(e) => {
            let ready = Ready::no("ReconcileFailed", e.to_string());
            let status = new_status(obj, &previous, &ready, Stage::Failed);
            // The failure is what the error policy must see, not a failed report of it.
            if let Err(patch) = status::apply(api, obj, obj.status(), &status).await {
                tracing::warn!(error = %patch, "could not report the failure in status");
            }
            return Err(e);
        }
    };
    let stage = match &done {
        Some(done) => Stage::Applied(done),
        None => Stage::Blocked,
    };
    let status = new_status(obj, &previous, &ready, stage);
    status::apply(api, obj, obj.status(), &status).await?;
    match &done {
        Some(done) => {
            for (reason, note) in obj.applied_events(done) {
                ctx.event(obj, EventType::Normal, reason, "Apply", note)
                    .await;
            }
        }
        None if ready.is_news(before) => {
            ctx.event(
                obj,
                EventType::Warning,
                &ready.reason,
                "Apply",
                ready.message.clone(),
            )
            .await;
        }
        None => {}
    }
    Ok(Action::requeue(match &done {
        Some(done) => K::requeue(done),
        None => K::BLOCKED_RETRY,
    }))
}

/// The status to write: Ready, then what the kind adds.
fn new_status<K: Kind>(
    obj: &K,
    previous: &K::Status,
    ready: &Ready,
    stage: Stage<'_, K::Done>,
) -> K::Status {
    let generation = obj.meta().generation;
    let conditions = vec![status::ready(K::conditions(previous), generation, ready)];
    let mut status = K::with_conditions(conditions, generation);
    obj.fill_status(&mut status, previous, stage);
    status
}

async fn cleanup<K: Kind>(obj: &K, ctx: &Context) -> Result<Action> {
    if let Some(note) = obj.cleanup(ctx).await? {
        ctx.event(obj, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_change_is_an_event() {
        let events = |c| change_events(c, "made".into(), "changed".into());
        assert_eq!(events(Change::Created), [("Created", "made".to_string())]);
        assert_eq!(
            events(Change::Updated),
            [("Updated", "changed".to_string())]
        );
        assert!(events(Change::Unchanged).is_empty());
    }

    #[test]
    fn a_status_starts_from_its_conditions_alone() {
        let ready = status::ready(&[], Some(3), &Ready::yes("Applied", "ok"));
        let status = MailDomain::with_conditions(vec![ready.clone()], Some(3));
        assert_eq!(MailDomain::conditions(&status), [ready]);
        assert_eq!(status.observed_generation, Some(3));
        assert!(status.dns_records.is_empty());
    }
}
