//! The DkimKey controller: the key pair (from `spec.secretRef`, or generated into a Secret
//! this DkimKey owns, so it goes away with it through ownerReferences), the `dkim_keys` row,
//! the private key's entry in the mirror the smtp pods sign with (`key_mirror`), and the
//! TXT record to publish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use postbay_api::{DkimKey, DkimKeyStatus, DnsRecord};
use postbay_reconcile::dkim::{KeyMaterial, GENERATED_SECRET_KEY, SECRET_KEYS};
use postbay_reconcile::{dkim, dns, Change, DkimPrivateKey, Outcome, Owner};

use crate::context::{owner, Context};
use crate::controller::{Attempt, Kind, Stage};
use crate::key_mirror;
use crate::mailbox::secret_value;
use crate::status::{Ready, MANAGER};
use crate::Result;

/// Label on generated Secrets; the controller watches Secrets with it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "postbay-operator");

/// The name of the Secret a generated key goes into.
pub fn generated_secret_name(k: &DkimKey) -> String {
    format!("{}-dkim", k.metadata.name.as_deref().unwrap_or_default())
}

/// An applied key: the TXT record to publish, and whether its key was made just now.
pub struct Applied {
    change: Change,
    generated: bool,
    record: DnsRecord,
}

impl Kind for DkimKey {
    const KIND: &'static str = "DkimKey";
    /// Also how soon a changed `spec.secretRef` Secret is noticed: only generated Secrets are
    /// watched.
    const RESYNC: Duration = Duration::from_secs(600);
    type Done = Applied;

    fn subject(&self) -> String {
        format!("{}._domainkey.{}", self.spec.selector, self.spec.domain)
    }

    async fn attempt(&self, ctx: &Context) -> Result<Attempt<Applied>> {
        Ok(Attempt::reported(write(self, ctx).await))
    }

    fn applied_message(&self, done: &Applied) -> String {
        format!(
            "publish the TXT record {} (status.dnsRecord)",
            done.record.name
        )
    }

    fn fill_status(
        &self,
        status: &mut DkimKeyStatus,
        _: &DkimKeyStatus,
        stage: Stage<'_, Applied>,
    ) {
        if let Stage::Applied(done) = stage {
            status.dns_record = Some(done.record.clone());
        }
    }

    fn applied_events(&self, done: &Applied) -> Vec<(&'static str, String)> {
        let mut events = Vec::new();
        if done.generated {
            let note = format!(
                "generated a key into Secret {}",
                generated_secret_name(self)
            );
            events.push(("KeyGenerated", note));
        }
        if done.change != Change::Unchanged {
            let note = format!("key {} {}", self.subject(), done.change.verb());
            events.push(("Applied", note));
        }
        events
    }

    /// Removes the mirror entry, then the row; a generated Secret goes with the DkimKey by
    /// ownerReferences. The entry goes first and always, so a retry after a failed removal
    /// still finds the row and reports the deletion.
    async fn cleanup(&self, ctx: &Context) -> Result<Option<String>> {
        let owner = owner(self)?;
        key_mirror::remove(ctx, self).await?;
        let spec = &self.spec;
        let removed = dkim::delete(&ctx.store, &owner, &spec.domain, &spec.selector).await?;
        Ok(removed.then(|| format!("key {} removed", self.subject())))
    }
}

/// Reads or makes the key pair and writes the row. `Err` only for what a retry may fix.
async fn write(k: &DkimKey, ctx: &Context) -> Result<Attempt<Applied>> {
    let owner = owner(k)?;
    if let Some(blocked) = dkim::check(&ctx.store, &owner, &k.spec).await? {
        return Ok(Attempt::Blocked(Ready::blocked(&blocked)));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let (material, generated) = match &k.spec.secret_ref {
        Some(reference) => match supplied(k, &owner, &secrets, &reference.name).await? {
            Ok(material) => (material, false),
            Err(ready) => return Ok(Attempt::Blocked(ready)),
        },
        None => match generated(k, &owner, &secrets).await? {
            Ok(found) => found,
            Err(ready) => return Ok(Attempt::Blocked(ready)),
        },
    };
    let public_key = material
        .key
        .public_key_base64()
        .map_err(postbay_reconcile::Error::Key)?;
    match dkim::apply(&ctx.store, &owner, &k.spec, &material).await {
        Ok(Outcome::Applied(change)) => {
            // Only once the row is ours: a blocked key must not overwrite the entry of the
            // DkimKey that holds the selector.
            let pem = material
                .key
                .to_pem()
                .map_err(postbay_reconcile::Error::Key)?;
            key_mirror::put(ctx, k, &pem).await?;
            Ok(Attempt::Done(Applied {
                change,
                generated,
                record: dns::dkim_record(
                    &k.spec.domain,
                    &k.spec.selector,
                    k.spec.algorithm,
                    &public_key,
                ),
            }))
        }
        Ok(Outcome::Blocked(blocked)) => Ok(Attempt::Blocked(Ready::blocked(&blocked))),
        Err(e) if e.is_transient() => Err(e.into()),
        Err(e) => Ok(Attempt::Blocked(Ready::no("InvalidKey", e.to_string()))),
    }
}

/// The key in the user's Secret (`tls.key` or `private.key`).
async fn supplied(
    k: &DkimKey,
    owner: &Owner,
    secrets: &Api<Secret>,
    name: &str,
) -> Result<Result<KeyMaterial, Ready>> {
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(Err(Ready::no(
            "SecretNotFound",
            format!(
                "Secret {name:?} (spec.secretRef) not found in namespace {:?}",
                owner.namespace
            ),
        )));
    };
    let Some((key_name, pem)) = SECRET_KEYS
        .iter()
        .find_map(|key| secret_value(&secret, key).map(|v| (*key, v)))
    else {
        return Ok(Err(Ready::no(
            "SecretKeyNotFound",
            format!("Secret {name:?} has neither {}", SECRET_KEYS.join(" nor ")),
        )));
    };
    let key = match DkimPrivateKey::from_pem(&String::from_utf8_lossy(&pem)) {
        Ok(key) if key.algorithm() == k.spec.algorithm => key,
        Ok(_) => {
            return Ok(Err(Ready::no(
                "InvalidKey",
                format!("the key in Secret {name:?} is not of spec.algorithm"),
            )))
        }
        Err(e) => {
            return Ok(Err(Ready::no(
                "InvalidKey",
                format!("Secret {name:?}: {e}"),
            )))
        }
    };
    Ok(Ok(KeyMaterial {
        key,
        private_key_ref: format!("secret:{}/{name}/{key_name}", owner.namespace),
    }))
}

/// The key in the Secret this DkimKey owns, made (or remade, when the algorithm changed) as
/// needed. A same-named Secret owned by something else is left alone and reported.
async fn generated(
    k: &DkimKey,
    owner: &Owner,
    secrets: &Api<Secret>,
) -> Result<Result<(KeyMaterial, bool), Ready>> {
    let name = generated_secret_name(k);
    let private_key_ref = format!("secret:{}/{name}/{GENERATED_SECRET_KEY}", owner.namespace);
    if let Some(secret) = secrets.get_opt(&name).await? {
        let ours = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == k.metadata.uid.as_ref());
        if !ours {
            return Ok(Err(Ready::no(
                "SecretNotOwned",
                format!("Secret {name:?} exists and is not owned by this DkimKey; delete it or set spec.secretRef"),
            )));
        }
        let existing = secret_value(&secret, GENERATED_SECRET_KEY)
            .and_then(|pem| DkimPrivateKey::from_pem(&String::from_utf8_lossy(&pem)).ok())
            .filter(|key| key.algorithm() == k.spec.algorithm);
        if let Some(key) = existing {
            return Ok(Ok((
                KeyMaterial {
                    key,
                    private_key_ref,
                },
                false,
            )));
        }
    }
    let key = DkimPrivateKey::generate(k.spec.algorithm).map_err(postbay_reconcile::Error::Key)?;
    let pem = key.to_pem().map_err(postbay_reconcile::Error::Key)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(owner.namespace.clone()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into())])),
            owner_references: k.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            GENERATED_SECRET_KEY.to_string(),
            ByteString(pem.into_bytes()),
        )])),
        ..Default::default()
    };
    secrets
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(Ok((
        KeyMaterial {
            key,
            private_key_ref,
        },
        true,
    )))
}

/// DkimKeys under `domain` in `namespace`, to retry when the domain appears.
pub fn under_domain(
    namespace: Option<&str>,
    domain: &str,
    all: &[Arc<DkimKey>],
) -> Vec<ObjectRef<DkimKey>> {
    all.iter()
        .filter(|k| k.metadata.namespace.as_deref() == namespace && k.spec.domain == domain)
        .map(|k| ObjectRef::from_obj(&**k))
        .collect()
}

#[cfg(test)]
mod tests;
