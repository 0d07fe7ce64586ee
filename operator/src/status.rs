//! Status: the Ready condition and the server-side-apply patch that writes it.
//!
//! All status goes through one field manager, and a patch is only sent when the status
//! differs from what the object already carries. `lastTransitionTime` moves only when the
//! condition's status flips, so a reconcile that finds nothing new writes nothing and cannot
//! wake itself up (the trap controller-rs fell into with a timestamp in status).

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use postbay_api::condition::READY;
use postbay_api::{Condition, ConditionStatus};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Error, Result};

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "postbay-operator";
/// Guards the rows a resource wrote: removed only after they are gone.
pub const FINALIZER: &str = "postbay.dev/cleanup";

/// What the Ready condition should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub ok: bool,
    /// CamelCase, e.g. `Applied`, `Conflict`, `SecretNotFound`.
    pub reason: String,
    pub message: String,
}

impl Ready {
    pub fn yes(reason: &str, message: impl Into<String>) -> Ready {
        Ready {
            ok: true,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn no(reason: &str, message: impl Into<String>) -> Ready {
        Ready {
            ok: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// Ready=False for a resource the core refused to write (conflict, missing domain).
    pub fn blocked(blocked: &postbay_reconcile::Blocked) -> Ready {
        Ready::no(blocked.reason(), blocked.to_string())
    }

    /// Whether this differs from the Ready condition in `previous` (status or reason): the
    /// moments worth an Event.
    pub fn is_news(&self, previous: &[Condition]) -> bool {
        match previous.iter().find(|c| c.type_ == READY) {
            Some(c) => c.status != self.status() || c.reason != self.reason,
            None => true,
        }
    }

    fn status(&self) -> ConditionStatus {
        if self.ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// A condition of `type_`, keeping the previous transition time unless the status flipped.
pub fn condition(
    type_: &str,
    previous: &[Condition],
    generation: Option<i64>,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(last),
        observed_generation: generation,
    }
}

/// The Ready condition for `ready`.
pub fn ready(previous: &[Condition], generation: Option<i64>, ready: &Ready) -> Condition {
    condition(
        READY,
        previous,
        generation,
        ready.ok,
        &ready.reason,
        &ready.message,
    )
}

/// Writes `desired` as the object's status by server-side apply, unless it already is.
pub async fn apply<K>(
    api: &Api<K>,
    obj: &K,
    current: Option<&impl Serialize>,
    desired: &impl Serialize,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let desired = serde_json::to_value(desired).map_err(Error::Json)?;
    let current = match current {
        Some(c) => serde_json::to_value(c).map_err(Error::Json)?,
        None => Value::Null,
    };
    if current == desired {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

/// The metrics label of a blocked reason, from the fixed set the controllers report (labels
/// must not grow without bound).
pub fn reason_label(reason: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "Conflict",
        "DomainNotFound",
        "DomainInOtherNamespace",
        "SecretNotFound",
        "SecretKeyNotFound",
        "SecretNotOwned",
        "InvalidKey",
        "InvalidSpec",
        "ReconcileFailed",
    ];
    KNOWN.into_iter().find(|k| *k == reason).unwrap_or("Other")
}

/// RFC 3339 in whole seconds, as `metav1.Time` is written.
fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = ready(&[], Some(1), &Ready::no("SecretNotFound", "no Secret"));
        let t0 = first.last_transition_time.clone().unwrap();
        assert!(t0.ends_with('Z') && t0.len() == 20, "{t0}");
        let mut old = first.clone();
        old.last_transition_time = Some("2020-01-01T00:00:00Z".into());
        let same = ready(&[old.clone()], Some(2), &Ready::no("DomainNotFound", "x"));
        assert_eq!(
            same.last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
        assert_eq!(same.observed_generation, Some(2));
        let flipped = ready(&[old.clone()], Some(2), &Ready::yes("Applied", "ok"));
        assert_ne!(
            flipped.last_transition_time.as_deref(),
            Some("2020-01-01T00:00:00Z")
        );
        assert!(Ready::yes("Applied", "").is_news(&[old.clone()]));
        assert!(Ready::no("Other", "").is_news(&[old.clone()]));
        assert!(!Ready::no("SecretNotFound", "changed text").is_news(&[old]));
    }
}
