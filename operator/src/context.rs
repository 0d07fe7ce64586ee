//! What every reconcile gets: the API client, the store, settings, metrics, the event
//! recorder, and the per-object retry state of the error policy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use postbay_reconcile::MailHosts;
use postbay_store::Store;

use crate::metrics::Metrics;
use crate::settings::Settings;

/// First retry after a failed reconcile; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: Client,
    pub store: Store,
    pub settings: Settings,
    /// Host names for DNS guidance, settled once at start.
    pub hosts: MailHosts,
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    /// Consecutive failures per object (`Kind/namespace/name`), reset by a success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        store: Store,
        settings: Settings,
        hosts: MailHosts,
        metrics: Arc<Metrics>,
    ) -> Context {
        let reporter = Reporter {
            controller: "postbay-operator".into(),
            instance: Some(settings.identity.clone()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            store,
            settings,
            hosts,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an Event on `obj`. Events are for people; failing to send one is logged,
    /// never a reason to fail the reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an Event failed");
        }
    }

    /// Exponential backoff for the error policy: 2 s, 4 s, ... 5 min.
    pub fn backoff(&self, key: String) -> Action {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let delay = FIRST_BACKOFF
            .saturating_mul(1u32 << (*n - 1).min(16))
            .min(MAX_BACKOFF);
        Action::requeue(delay)
    }

    /// Forgets the failures of an object that reconciled cleanly.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The retry-state key of an object.
pub fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// The owner string rows of `obj` carry: `namespace/name`, as `postbay apply` writes it.
pub fn owner<K: Resource<DynamicType = ()>>(obj: &K) -> crate::Result<postbay_reconcile::Owner> {
    let name = obj.meta().name.clone().unwrap_or_default();
    let namespace = obj
        .meta()
        .namespace
        .clone()
        .ok_or_else(|| crate::Error::NoNamespace(format!("{} {name}", K::kind(&()))))?;
    Ok(postbay_reconcile::Owner::new(namespace, name))
}
