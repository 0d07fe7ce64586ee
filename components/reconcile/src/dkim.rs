//! `DkimKey` → one `dkim_keys` row. The private key itself stays where the caller keeps it (a
//! Secret for the operator, a file for `postbay apply`); the row carries its public half and
//! a reference the signing component resolves.

use postbay_api::DkimKeySpec;
use postbay_store::{DkimKeyRow, Store};

use crate::keys::algorithm_name;
use crate::{domain, Blocked, Change, DkimPrivateKey, Error, KeyError, Outcome, Owner, Result};

/// Keys of a `spec.secretRef` Secret that may hold the PEM private key, in order of
/// preference (`tls.key` as in a kubernetes.io/tls Secret).
pub const SECRET_KEYS: [&str; 2] = ["tls.key", "private.key"];

/// The key under which the operator stores a generated private key in the Secret it owns.
pub const GENERATED_SECRET_KEY: &str = "private.key";

/// The private key of a DkimKey and where it is kept.
#[derive(Debug)]
pub struct KeyMaterial {
    pub key: DkimPrivateKey,
    /// `secret:NAMESPACE/NAME/KEY` or `file:PATH`, as the `private_key_ref` column expects.
    pub private_key_ref: String,
}

/// Whether `owner` may write the key row: its domain must be usable and the selector must
/// not be held by another resource.
pub async fn check(store: &Store, owner: &Owner, spec: &DkimKeySpec) -> Result<Option<Blocked>> {
    if let Some(blocked) = domain::check_usable(store, owner, &spec.domain).await? {
        return Ok(Some(blocked));
    }
    check_claim(store, owner, spec).await
}

/// The ownership part of [`check`]: the selector not held by another resource.
pub async fn check_claim(
    store: &Store,
    owner: &Owner,
    spec: &DkimKeySpec,
) -> Result<Option<Blocked>> {
    let held = existing(store, &spec.domain, &spec.selector)
        .await?
        .and_then(|row| row.owner)
        .filter(|held| *held != owner.to_string());
    Ok(held.map(|held| Blocked::Conflict {
        what: format!("DKIM selector {}._domainkey.{}", spec.selector, spec.domain),
        owner: held,
    }))
}

/// Writes the key row for `material`, whose algorithm must be the one the spec names.
pub async fn apply(
    store: &Store,
    owner: &Owner,
    spec: &DkimKeySpec,
    material: &KeyMaterial,
) -> Result<Outcome> {
    if material.key.algorithm() != spec.algorithm {
        return Err(Error::Key(KeyError::WrongAlgorithm {
            expected: algorithm_name(spec.algorithm),
            found: algorithm_name(material.key.algorithm()),
        }));
    }
    if let Some(blocked) = check(store, owner, spec).await? {
        return Ok(Outcome::Blocked(blocked));
    }
    let desired = DkimKeyRow {
        domain: spec.domain.to_ascii_lowercase(),
        selector: spec.selector.clone(),
        algorithm: algorithm_name(spec.algorithm).to_string(),
        public_key: material.key.public_key_base64().map_err(Error::Key)?,
        private_key_ref: material.private_key_ref.clone(),
        enabled: true,
        owner: Some(owner.to_string()),
    };
    let change = match existing(store, &spec.domain, &spec.selector).await? {
        None => Change::Created,
        Some(row) if row == desired => return Ok(Outcome::Applied(Change::Unchanged)),
        Some(_) => Change::Updated,
    };
    store.put_dkim_key(&desired).await?;
    tracing::info!(domain = %spec.domain, selector = %spec.selector, %owner, ?change, "DKIM key applied");
    Ok(Outcome::Applied(change))
}

/// Removes the key row if `owner` holds it.
pub async fn delete(store: &Store, owner: &Owner, domain: &str, selector: &str) -> Result<bool> {
    match existing(store, domain, selector).await? {
        Some(row) if row.owner == Some(owner.to_string()) => {
            let gone = store.delete_dkim_key(domain, selector).await?;
            tracing::info!(domain, selector, %owner, "DKIM key deleted");
            Ok(gone)
        }
        _ => Ok(false),
    }
}

/// The stored row for one selector.
pub async fn existing(store: &Store, domain: &str, selector: &str) -> Result<Option<DkimKeyRow>> {
    Ok(store
        .dkim_keys(domain)
        .await?
        .into_iter()
        .find(|row| row.selector == selector))
}
