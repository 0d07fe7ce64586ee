//! The Mailbox controller: the `mailboxes` row with the password from the referenced Secret
//! (hashed; the hash follows when the Secret changes), and the alias rows of
//! `spec.aliases`. A missing Secret or domain is a condition, never a crash loop.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use postbay_api::Mailbox;
use postbay_reconcile::{mailbox, Change, Outcome};

use crate::context::{owner, Context};
use crate::controller::{change_events, Attempt, Kind};
use crate::status::Ready;
use crate::Result;

impl Kind for Mailbox {
    const KIND: &'static str = "Mailbox";
    type Done = Change;

    fn subject(&self) -> String {
        self.spec.address.clone()
    }

    async fn attempt(&self, ctx: &Context) -> Result<Attempt<Change>> {
        Ok(Attempt::reported(write(self, ctx).await))
    }

    fn applied_message(&self, _: &Change) -> String {
        format!("mailbox {} is in the directory", self.spec.address)
    }

    fn applied_events(&self, change: &Change) -> Vec<(&'static str, String)> {
        let address = &self.spec.address;
        change_events(
            *change,
            format!("mailbox {address} created"),
            format!("mailbox {address} updated (password, quota, aliases or enabled)"),
        )
    }

    /// Removes the row (if this resource holds it) and the aliases it declared.
    async fn cleanup(&self, ctx: &Context) -> Result<Option<String>> {
        let owner = owner(self)?;
        let removed = mailbox::delete(&ctx.store, &owner, &self.spec.address).await?;
        Ok(removed.then(|| format!("mailbox {} removed from the directory", self.spec.address)))
    }
}

/// Reads the password and writes the rows. `Err` only for what a retry may fix.
async fn write(m: &Mailbox, ctx: &Context) -> Result<Attempt<Change>> {
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
        Ok(Outcome::Blocked(blocked)) => Ok(Attempt::Blocked(Ready::blocked(&blocked))),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Attempt::Blocked(Ready::no("InvalidSpec", e.to_string()))),
    }
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
