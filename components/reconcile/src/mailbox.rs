//! `Mailbox` → one `mailboxes` row, plus one alias row per `spec.aliases` entry.

use postbay_api::MailboxSpec;
use postbay_store::directory::{canonical_address, split_address, MailboxSpec as MailboxRowSpec};
use postbay_store::{Sending, Store};

use crate::{alias, domain, password, Blocked, Change, Error, Outcome, Owner, Result};

/// Whether `owner` may write the mailbox: its domain must be usable and neither the address
/// nor any of its aliases may be held by another resource.
pub async fn check(store: &Store, owner: &Owner, spec: &MailboxSpec) -> Result<Option<Blocked>> {
    for domain in domains(spec) {
        if let Some(blocked) = domain::check_usable(store, owner, &domain).await? {
            return Ok(Some(blocked));
        }
    }
    check_claims(store, owner, spec).await
}

/// The ownership part of [`check`]: neither the address nor an alias held by another
/// resource. `postbay apply` calls it alone when the domain is declared in the same file.
pub async fn check_claims(
    store: &Store,
    owner: &Owner,
    spec: &MailboxSpec,
) -> Result<Option<Blocked>> {
    let address = canonical_address(&spec.address);
    if let Some(held) = store.mailbox(&address).await?.and_then(|row| row.owner) {
        if held != owner.to_string() {
            return Ok(Some(Blocked::Conflict {
                what: format!("mailbox {address}"),
                owner: held,
            }));
        }
    }
    let alias_owner = owner.mailbox_aliases();
    for alias in &spec.aliases {
        if let Some(blocked) = alias::check_address(store, &alias_owner, alias).await? {
            return Ok(Some(blocked));
        }
    }
    Ok(None)
}

/// Writes the mailbox row (hashing a cleartext `password`, see [`password::stored_hash`]) and
/// makes its alias rows exactly `spec.aliases`.
pub async fn apply(
    store: &Store,
    owner: &Owner,
    spec: &MailboxSpec,
    password: &[u8],
) -> Result<Outcome> {
    if let Some(blocked) = check(store, owner, spec).await? {
        return Ok(Outcome::Blocked(blocked));
    }
    let address = canonical_address(&spec.address);
    let quota = spec.quota_bytes().map_err(Error::Quota)?.unwrap_or(0);
    let quota = i64::try_from(quota).map_err(|_| Error::QuotaTooLarge(quota))?;
    let existing = store.mailbox(&address).await?;
    let desired = MailboxRowSpec {
        address: address.clone(),
        password_hash: password::stored_hash(
            password,
            existing.as_ref().map(|r| r.password_hash.as_str()),
        )?,
        quota_bytes: quota,
        enabled: spec.enabled,
        owner: Some(owner.to_string()),
    };
    let row_change = match &existing {
        None => Change::Created,
        Some(row)
            if row.password_hash == desired.password_hash
                && row.quota_bytes == desired.quota_bytes
                && row.enabled == desired.enabled
                && row.owner == desired.owner =>
        {
            Change::Unchanged
        }
        Some(_) => Change::Updated,
    };
    if row_change != Change::Unchanged {
        store.put_mailbox(&desired).await?;
    }
    let scram = password::stored_scram(
        password,
        &desired.password_hash,
        existing.as_ref().and_then(|r| r.scram_sha256.as_deref()),
    )?;
    let sending = Sending {
        send_as: spec.send_as.iter().map(|a| a.to_lowercase()).collect(),
        max_messages_per_hour: spec
            .sending_limits
            .as_ref()
            .and_then(|l| l.messages_per_hour),
        max_recipients_per_hour: spec
            .sending_limits
            .as_ref()
            .and_then(|l| l.recipients_per_hour),
    };
    let sending_change = match &existing {
        Some(row) if row.scram_sha256 == scram && row.sending == sending => Change::Unchanged,
        _ => {
            store
                .set_mailbox_sending(&address, scram.as_deref(), &sending)
                .await?;
            Change::Updated
        }
    };
    let row_change = match (row_change, sending_change) {
        (Change::Unchanged, Change::Updated) => Change::Updated,
        (row_change, _) => row_change,
    };
    let aliases_change = alias::replace_owned(
        store,
        &owner.mailbox_aliases(),
        spec.aliases
            .iter()
            .map(|a| (a.as_str(), vec![address.clone()])),
    )
    .await?;
    let change = match (row_change, aliases_change) {
        (Change::Unchanged, Change::Unchanged) => Change::Unchanged,
        (Change::Created, _) => Change::Created,
        _ => Change::Updated,
    };
    tracing::info!(%address, %owner, ?change, "mailbox applied");
    Ok(Outcome::Applied(change))
}

/// Removes the mailbox row (with its folders and message metadata; blobs stay for the
/// retention policy, docs/operator.md) if `owner` holds it, and the alias rows it declared.
pub async fn delete(store: &Store, owner: &Owner, address: &str) -> Result<bool> {
    let aliases = alias::delete_owned(store, &owner.mailbox_aliases()).await?;
    let row = match store.mailbox(address).await? {
        Some(row) if row.owner == Some(owner.to_string()) => {
            let gone = store.delete_mailbox(address).await?;
            tracing::info!(address, %owner, "mailbox deleted");
            gone
        }
        _ => false,
    };
    Ok(row || aliases > 0)
}

/// The domains the mailbox puts addresses under, address first, without repeats.
pub fn domains(spec: &MailboxSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for address in std::iter::once(&spec.address).chain(&spec.aliases) {
        if let Some((_, domain)) = split_address(address) {
            if !out.contains(&domain) {
                out.push(domain);
            }
        }
    }
    out
}
