//! The DkimKey controller: the key pair (from `spec.secretRef`, or generated into a Secret
//! this DkimKey owns, so it goes away with it through ownerReferences), the `dkim_keys` row,
//! and the TXT record to publish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use postbay_api::{DkimKey, DkimKeyStatus};
use postbay_reconcile::dkim::{KeyMaterial, GENERATED_SECRET_KEY, SECRET_KEYS};
use postbay_reconcile::{dkim, dns, Change, DkimPrivateKey, Outcome, Owner};

use crate::context::{key, owner, Context};
use crate::mailbox::secret_value;
use crate::status::{self, Ready, FINALIZER, MANAGER};
use crate::{Error, Result};

pub const KIND: &str = "DkimKey";
pub const BLOCKED_RETRY: Duration = Duration::from_secs(300);
/// Also how soon a changed `spec.secretRef` Secret is noticed: only generated Secrets are
/// watched.
pub const RESYNC: Duration = Duration::from_secs(600);
/// Label on generated Secrets; the controller watches Secrets with it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "postbay-operator");

pub async fn reconcile(obj: Arc<DkimKey>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let owner = owner(&*obj)?;
    let retry_key = key(&*obj);
    let api: Api<DkimKey> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let action = finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(k) => apply(&k, &api, &ctx).await,
            Event::Cleanup(k) => cleanup(&k, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.succeeded(&retry_key);
    Ok(action)
}

pub fn error_policy(obj: Arc<DkimKey>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(domain = %obj.spec.domain, selector = %obj.spec.selector, %error, "DkimKey reconcile failed");
    ctx.metrics.failure(KIND, error.metric_label());
    ctx.backoff(key(&*obj))
}

/// The name of the Secret a generated key goes into.
pub fn generated_secret_name(k: &DkimKey) -> String {
    format!("{}-dkim", k.metadata.name.as_deref().unwrap_or_default())
}

enum Attempt {
    Done {
        change: Change,
        generated: bool,
        public_key: String,
    },
    Blocked(Ready),
}

async fn apply(k: &DkimKey, api: &Api<DkimKey>, ctx: &Context) -> Result<Action> {
    let previous = k.status.clone().unwrap_or_default();
    let generation = k.metadata.generation;
    let (ready, record, result) = match attempt(k, ctx).await {
        Ok(Attempt::Done {
            change,
            generated,
            public_key,
        }) => {
            let record = dns::dkim_record(
                &k.spec.domain,
                &k.spec.selector,
                k.spec.algorithm,
                &public_key,
            );
            let message = format!("publish the TXT record {} (status.dnsRecord)", record.name);
            (
                Ready::yes("Applied", message),
                Some(record),
                Ok(Some((change, generated))),
            )
        }
        Ok(Attempt::Blocked(ready)) => {
            ctx.metrics
                .blocked(KIND, status::reason_label(&ready.reason));
            (ready, None, Ok(None))
        }
        Err(e) => (Ready::no("ReconcileFailed", e.to_string()), None, Err(e)),
    };
    let status = DkimKeyStatus {
        conditions: vec![status::ready(&previous.conditions, generation, &ready)],
        observed_generation: generation,
        dns_record: record,
    };
    status::apply(api, k, k.status.as_ref(), &status).await?;
    match result? {
        Some((change, generated)) => {
            if generated {
                let note = format!("generated a key into Secret {}", generated_secret_name(k));
                ctx.event(k, EventType::Normal, "KeyGenerated", "Apply", note)
                    .await;
            }
            if change != Change::Unchanged {
                let note = format!(
                    "key {}._domainkey.{} {}",
                    k.spec.selector,
                    k.spec.domain,
                    change.verb()
                );
                ctx.event(k, EventType::Normal, "Applied", "Apply", note)
                    .await;
            }
        }
        None if ready.is_news(&previous.conditions) => {
            ctx.event(
                k,
                EventType::Warning,
                &ready.reason,
                "Apply",
                ready.message.clone(),
            )
            .await;
        }
        None => {}
    }
    Ok(Action::requeue(if ready.ok {
        RESYNC
    } else {
        BLOCKED_RETRY
    }))
}

async fn attempt(k: &DkimKey, ctx: &Context) -> Result<Attempt> {
    let owner = owner(k)?;
    if let Some(blocked) = dkim::check(&ctx.store, &owner, &k.spec).await? {
        return Ok(Attempt::Blocked(Ready::no(
            blocked.reason(),
            blocked.to_string(),
        )));
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
        Ok(Outcome::Applied(change)) => Ok(Attempt::Done {
            change,
            generated,
            public_key,
        }),
        Ok(Outcome::Blocked(blocked)) => Ok(Attempt::Blocked(Ready::no(
            blocked.reason(),
            blocked.to_string(),
        ))),
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

/// Removes the row; a generated Secret goes with the DkimKey by ownerReferences.
async fn cleanup(k: &DkimKey, ctx: &Context) -> Result<Action> {
    let owner = owner(k)?;
    if dkim::delete(&ctx.store, &owner, &k.spec.domain, &k.spec.selector).await? {
        let note = format!(
            "key {}._domainkey.{} removed",
            k.spec.selector, k.spec.domain
        );
        ctx.event(k, EventType::Normal, "Deleted", "Cleanup", note)
            .await;
    }
    Ok(Action::await_change())
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
