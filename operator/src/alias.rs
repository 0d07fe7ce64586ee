//! The MailAlias controller: one alias row per destination.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;
use postbay_api::MailAlias;
use postbay_reconcile::{alias, Change, Outcome};
use postbay_store::directory::split_address;

use crate::context::{owner, Context};
use crate::controller::{change_events, Attempt, Kind};
use crate::status::Ready;
use crate::Result;

impl Kind for MailAlias {
    const KIND: &'static str = "MailAlias";
    type Done = Change;

    fn subject(&self) -> String {
        self.spec.address.clone()
    }

    async fn attempt(&self, ctx: &Context) -> Result<Attempt<Change>> {
        let owner = owner(self)?;
        Ok(match alias::apply(&ctx.store, &owner, &self.spec).await {
            Ok(Outcome::Applied(change)) => Attempt::Done(change),
            Ok(Outcome::Blocked(blocked)) => Attempt::Blocked(Ready::blocked(&blocked)),
            Err(e) => Attempt::Failed(e.into()),
        })
    }

    fn applied_message(&self, _: &Change) -> String {
        format!(
            "{} forwards to {} destination(s)",
            self.spec.address,
            self.spec.destinations.len()
        )
    }

    fn applied_events(&self, change: &Change) -> Vec<(&'static str, String)> {
        let address = &self.spec.address;
        change_events(
            *change,
            format!("alias {address} created"),
            format!("alias {address} updated"),
        )
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Option<String>> {
        let owner = owner(self)?;
        let removed = alias::delete(&ctx.store, &owner).await?;
        Ok(removed.then(|| format!("alias {} removed from the directory", self.spec.address)))
    }
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
