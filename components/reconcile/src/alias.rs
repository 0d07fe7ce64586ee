//! `MailAlias` → alias rows (one per destination), and the alias rows of a Mailbox's
//! `spec.aliases`.

use std::collections::{BTreeMap, BTreeSet};

use postbay_api::MailAliasSpec;
use postbay_store::directory::{canonical_address, split_address};
use postbay_store::Store;
use sqlx::Row;

use crate::{domain, Blocked, Change, Outcome, Owner, Result};

/// Address → destinations, both canonical.
type AliasMap = BTreeMap<String, BTreeSet<String>>;

/// Whether `owner` (a stored owner string) may declare `address`: not when alias rows of
/// another owner, or rows made outside Postbay, already exist for it.
pub async fn check_address(store: &Store, owner: &str, address: &str) -> Result<Option<Blocked>> {
    let rows = sqlx::query("SELECT owner FROM aliases WHERE address = ?")
        .bind(canonical_address(address))
        .fetch_all(store.pool())
        .await?;
    for row in rows {
        let held: Option<String> = row.try_get("owner")?;
        if held.as_deref() != Some(owner) {
            return Ok(Some(Blocked::Conflict {
                what: format!("alias {}", canonical_address(address)),
                owner: held.unwrap_or_else(|| "a row without owner".into()),
            }));
        }
    }
    Ok(None)
}

/// Writes the alias rows, unless the domain is not usable or the address is held.
pub async fn apply(store: &Store, owner: &Owner, spec: &MailAliasSpec) -> Result<Outcome> {
    if let Some(blocked) = check(store, owner, spec).await? {
        return Ok(Outcome::Blocked(blocked));
    }
    let destinations = spec.destinations.clone();
    let change = replace_owned(
        store,
        &owner.to_string(),
        [(spec.address.as_str(), destinations)],
    )
    .await?;
    tracing::info!(address = %spec.address, %owner, ?change, "alias applied");
    Ok(Outcome::Applied(change))
}

/// The read-only part of [`apply`].
pub async fn check(store: &Store, owner: &Owner, spec: &MailAliasSpec) -> Result<Option<Blocked>> {
    if let Some((_, domain)) = split_address(&spec.address) {
        if let Some(blocked) = domain::check_usable(store, owner, &domain).await? {
            return Ok(Some(blocked));
        }
    }
    check_address(store, &owner.to_string(), &spec.address).await
}

/// Removes every alias row the MailAlias declared.
pub async fn delete(store: &Store, owner: &Owner) -> Result<bool> {
    Ok(delete_owned(store, &owner.to_string()).await? > 0)
}

/// Makes the rows held by `owner` exactly `entries`: addresses no longer declared (an alias
/// renamed, a Mailbox alias dropped) lose their rows.
pub(crate) async fn replace_owned<'a>(
    store: &Store,
    owner: &str,
    entries: impl IntoIterator<Item = (&'a str, Vec<String>)>,
) -> Result<Change> {
    let mut desired = AliasMap::new();
    for (address, destinations) in entries {
        desired
            .entry(canonical_address(address))
            .or_default()
            .extend(destinations.iter().map(|d| canonical_address(d)));
    }
    let current = owned(store, owner).await?;
    if current == desired {
        return Ok(Change::Unchanged);
    }
    for address in current.keys().filter(|a| !desired.contains_key(*a)) {
        store.set_alias(address, &[], Some(owner)).await?;
    }
    for (address, destinations) in &desired {
        if current.get(address) != Some(destinations) {
            let list: Vec<String> = destinations.iter().cloned().collect();
            store.set_alias(address, &list, Some(owner)).await?;
        }
    }
    Ok(if current.is_empty() {
        Change::Created
    } else {
        Change::Updated
    })
}

pub(crate) async fn delete_owned(store: &Store, owner: &str) -> Result<u64> {
    Ok(store.delete_aliases_of_owner(owner).await?)
}

async fn owned(store: &Store, owner: &str) -> Result<AliasMap> {
    let rows = sqlx::query("SELECT address, destination FROM aliases WHERE owner = ?")
        .bind(owner)
        .fetch_all(store.pool())
        .await?;
    let mut map = AliasMap::new();
    for row in rows {
        let address: String = row.try_get("address")?;
        let destination: String = row.try_get("destination")?;
        map.entry(address).or_default().insert(destination);
    }
    Ok(map)
}
