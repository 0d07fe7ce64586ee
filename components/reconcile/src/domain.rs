//! `MailDomain` → one `domains` row.

use postbay_api::MailDomainSpec;
use postbay_store::{DomainRow, Store};

use crate::{Blocked, Change, Outcome, Owner, Result};

/// Whether `owner` may declare `domain`: not when another resource holds it. A row without
/// an owner (made by hand or by an older tool) is adopted.
pub async fn check_claim(store: &Store, owner: &Owner, domain: &str) -> Result<Option<Blocked>> {
    let existing = store.domain(domain).await?;
    Ok(existing
        .and_then(|row| row.owner)
        .filter(|held| *held != owner.to_string())
        .map(|held| Blocked::Conflict {
            what: format!("domain {domain}"),
            owner: held,
        }))
}

/// Whether a resource of `owner` may put addresses or keys under `domain`: the domain must
/// be declared, and by a MailDomain in the same namespace, so one tenant cannot create
/// mailboxes under another's domain.
pub async fn check_usable(store: &Store, owner: &Owner, domain: &str) -> Result<Option<Blocked>> {
    let Some(row) = store.domain(domain).await? else {
        return Ok(Some(Blocked::DomainNotFound {
            domain: domain.to_string(),
        }));
    };
    match row.owner {
        Some(held) if Owner::namespace_of(&held) != Some(owner.namespace.as_str()) => {
            Ok(Some(Blocked::DomainInOtherNamespace {
                domain: domain.to_string(),
                owner: held,
            }))
        }
        _ => Ok(None),
    }
}

/// Writes the domain row, unless another resource holds the domain.
pub async fn apply(store: &Store, owner: &Owner, spec: &MailDomainSpec) -> Result<Outcome> {
    if let Some(blocked) = check_claim(store, owner, &spec.domain).await? {
        return Ok(Outcome::Blocked(blocked));
    }
    let desired = DomainRow {
        name: spec.domain.to_ascii_lowercase(),
        catch_all: spec.catch_all.clone(),
        enabled: true,
        owner: Some(owner.to_string()),
    };
    // The filter overrides as the filter reads them (docs/filter.md), next to the row.
    let filter = spec
        .spam_filter
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(crate::Error::SpamFilter)?;
    if let Some(json) = filter.as_ref() {
        if json.len() > postbay_store::directory::MAX_DOMAIN_FILTER {
            return Err(crate::Error::SpamFilterTooLarge(json.len()));
        }
    }
    let stored_filter = store
        .domain_filters(std::slice::from_ref(&desired.name))
        .await?
        .pop()
        .map(|(_, settings)| settings);
    let change = match store.domain(&spec.domain).await? {
        None => Change::Created,
        Some(row) if row == desired && stored_filter == filter => {
            return Ok(Outcome::Applied(Change::Unchanged))
        }
        Some(_) => Change::Updated,
    };
    store.put_domain(&desired).await?;
    store
        .put_domain_filter(&desired.name, filter.as_deref())
        .await?;
    tracing::info!(domain = %desired.name, %owner, ?change, "domain applied");
    Ok(Outcome::Applied(change))
}

/// Removes the domain row if `owner` holds it. A row held by someone else, or by nobody,
/// stays (the resource being deleted was the losing side of a conflict, or never applied);
/// no row at all is success too.
/// Mailboxes, aliases and keys under the domain are removed by their own resources.
pub async fn delete(store: &Store, owner: &Owner, domain: &str) -> Result<bool> {
    match store.domain(domain).await? {
        Some(row) if row.owner == Some(owner.to_string()) => {
            let gone = store.delete_domain(domain).await?;
            tracing::info!(domain, %owner, "domain deleted");
            Ok(gone)
        }
        _ => Ok(false),
    }
}
