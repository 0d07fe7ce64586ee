//! The directory: which domains are local, which mailboxes and aliases exist, which DKIM keys
//! sign for a domain. Rows are shaped so Postfix's and Dovecot's SQL lookups can read them too
//! (docs/classic-stack.md).

use sqlx::Row;

use crate::{now_unix, Backend, Durability, Result, Store};

/// Alias expansion stops this deep, so a loop in the data cannot hang a delivery.
const MAX_ALIAS_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    pub name: String,
    /// Address (or bare local part) that receives mail for unknown users of the domain.
    pub catch_all: Option<String>,
    pub enabled: bool,
    /// `namespace/name` of the resource that declared the row, so two declarers conflict
    /// visibly instead of silently overwriting each other.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    pub id: i64,
    pub address: String,
    pub domain: String,
    pub local_part: String,
    pub password_hash: String,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub enabled: bool,
    /// Directory of the mailbox's blobs, relative to the mail root (`domain/local`).
    pub home: String,
    pub owner: Option<String>,
}

/// What a caller declares about a mailbox; ids, usage and home are the store's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSpec {
    pub address: String,
    pub password_hash: String,
    pub quota_bytes: i64,
    pub enabled: bool,
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeyRow {
    pub domain: String,
    pub selector: String,
    pub algorithm: String,
    /// Base64 public key as published in the `p=` tag.
    pub public_key: String,
    /// Where the private key lives: `secret:NAMESPACE/NAME/KEY` or `file:PATH`.
    pub private_key_ref: String,
    pub enabled: bool,
    pub owner: Option<String>,
}

/// Where mail for one address goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// A local mailbox, by its canonical address.
    Local(String),
    /// An address on another domain (alias forwarding); the outbound queue carries it.
    Remote(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not ours: accepting would make us a relay.
    NonLocalDomain,
    /// The domain is ours but nobody by that name lives here.
    Unknown,
    /// Deliver to these (aliases fan out; duplicates removed).
    Deliver(Vec<Recipient>),
}

/// Splits `local@domain` at the last `@` and lowercases the domain.
pub fn split_address(address: &str) -> Option<(&str, String)> {
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some((local, domain.to_ascii_lowercase()))
}

/// The canonical form used as key everywhere: local part and domain lowercased.
pub fn canonical_address(address: &str) -> String {
    address.trim().to_lowercase()
}

impl Store {
    // === domains ===

    pub async fn put_domain(&self, row: &DomainRow) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO domains (name, catch_all, enabled, owner, created_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT(name) DO UPDATE SET catch_all = excluded.catch_all, enabled = excluded.enabled, owner = excluded.owner"
            }
            Backend::MySql => {
                "INSERT INTO domains (name, catch_all, enabled, owner, created_at) VALUES (?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE catch_all = VALUES(catch_all), enabled = VALUES(enabled), owner = VALUES(owner)"
            }
        };
        sqlx::query(sql)
            .bind(row.name.to_ascii_lowercase())
            .bind(row.catch_all.clone())
            .bind(row.enabled as i64)
            .bind(row.owner.clone())
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        let row = sqlx::query("SELECT name, catch_all, enabled, owner FROM domains WHERE name = ?")
            .bind(name.to_ascii_lowercase())
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.map(|r| DomainRow {
            name: r.get("name"),
            catch_all: r.get("catch_all"),
            enabled: r.get::<i64, _>("enabled") != 0,
            owner: r.get("owner"),
        }))
    }

    pub async fn list_domains(&self) -> Result<Vec<DomainRow>> {
        let rows = sqlx::query("SELECT name, catch_all, enabled, owner FROM domains ORDER BY name")
            .fetch_all(&mut *self.reader().await?)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DomainRow {
                name: r.get("name"),
                catch_all: r.get("catch_all"),
                enabled: r.get::<i64, _>("enabled") != 0,
                owner: r.get("owner"),
            })
            .collect())
    }

    /// Deletes the domain row only; mailboxes and their mail are removed by their own
    /// resources (docs/operator.md states the policy). Returns whether a row went away.
    pub async fn delete_domain(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM domains WHERE name = ?")
            .bind(name.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn is_local_domain(&self, name: &str) -> Result<bool> {
        Ok(self.domain(name).await?.is_some_and(|d| d.enabled))
    }

    // === mailboxes ===

    /// Creates or updates a mailbox and makes sure its default folders exist.
    pub async fn put_mailbox(&self, spec: &MailboxSpec) -> Result<MailboxRow> {
        let address = canonical_address(&spec.address);
        let (local, domain) =
            split_address(&address).ok_or_else(|| crate::Error::NoSuchMailbox(address.clone()))?;
        let local = local.to_string();
        let home = format!("{domain}/{local}");
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO mailboxes (address, domain, local_part, password_hash, quota_bytes, enabled, home, owner, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(address) DO UPDATE SET password_hash = excluded.password_hash, quota_bytes = excluded.quota_bytes, \
                 enabled = excluded.enabled, owner = excluded.owner"
            }
            Backend::MySql => {
                "INSERT INTO mailboxes (address, domain, local_part, password_hash, quota_bytes, enabled, home, owner, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE password_hash = VALUES(password_hash), quota_bytes = VALUES(quota_bytes), \
                 enabled = VALUES(enabled), owner = VALUES(owner)"
            }
        };
        sqlx::query(sql)
            .bind(&address)
            .bind(&domain)
            .bind(&local)
            .bind(&spec.password_hash)
            .bind(spec.quota_bytes)
            .bind(spec.enabled as i64)
            .bind(&home)
            .bind(spec.owner.clone())
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        let row = self
            .mailbox(&address)
            .await?
            .ok_or_else(|| crate::Error::NoSuchMailbox(address.clone()))?;
        self.ensure_default_folders(row.id).await?;
        Ok(row)
    }

    pub async fn mailbox(&self, address: &str) -> Result<Option<MailboxRow>> {
        let row = sqlx::query(
            "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, enabled, home, owner \
             FROM mailboxes WHERE address = ?",
        )
        .bind(canonical_address(address))
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| mailbox_from_row(&r)))
    }

    pub async fn list_mailboxes(&self, domain: Option<&str>) -> Result<Vec<MailboxRow>> {
        let sql = "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, enabled, home, owner FROM mailboxes";
        let rows = match domain {
            Some(d) => {
                sqlx::query(&format!("{sql} WHERE domain = ? ORDER BY address"))
                    .bind(d.to_ascii_lowercase())
                    .fetch_all(&mut *self.reader().await?)
                    .await?
            }
            None => {
                sqlx::query(&format!("{sql} ORDER BY address"))
                    .fetch_all(&mut *self.reader().await?)
                    .await?
            }
        };
        Ok(rows.iter().map(mailbox_from_row).collect())
    }

    /// Removes the mailbox row, its folders and message metadata. Blobs stay on the volume
    /// for the caller's retention policy to remove (they are unreachable from then on).
    pub async fn delete_mailbox(&self, address: &str) -> Result<bool> {
        let Some(mb) = self.mailbox(address).await? else {
            return Ok(false);
        };
        let mut tx = self.begin_write(Durability::Synced).await?;
        sqlx::query(
            "DELETE FROM messages WHERE folder_id IN (SELECT id FROM folders WHERE mailbox_id = ?)",
        )
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM expunged WHERE folder_id IN (SELECT id FROM folders WHERE mailbox_id = ?)",
        )
        .bind(mb.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM folders WHERE mailbox_id = ?")
            .bind(mb.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mailboxes WHERE id = ?")
            .bind(mb.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    // === aliases ===

    /// Makes `destinations` the complete set of targets of `address` declared by `owner`.
    pub async fn set_alias(
        &self,
        address: &str,
        destinations: &[String],
        owner: Option<&str>,
    ) -> Result<()> {
        let address = canonical_address(address);
        let mut tx = self.begin_write(Durability::Synced).await?;
        match owner {
            Some(o) => {
                sqlx::query("DELETE FROM aliases WHERE address = ? AND owner = ?")
                    .bind(&address)
                    .bind(o)
                    .execute(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM aliases WHERE address = ? AND owner IS NULL")
                    .bind(&address)
                    .execute(&mut *tx)
                    .await?
            }
        };
        for destination in destinations {
            let exists = sqlx::query("SELECT 1 FROM aliases WHERE address = ? AND destination = ?")
                .bind(&address)
                .bind(canonical_address(destination))
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                sqlx::query("INSERT INTO aliases (address, destination, owner) VALUES (?, ?, ?)")
                    .bind(&address)
                    .bind(canonical_address(destination))
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes every alias row declared by `owner`.
    pub async fn delete_aliases_of_owner(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM aliases WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn alias_destinations(&self, address: &str) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT destination FROM aliases WHERE address = ? ORDER BY destination")
                .bind(canonical_address(address))
                .fetch_all(&mut *self.reader().await?)
                .await?;
        Ok(rows.iter().map(|r| r.get("destination")).collect())
    }

    // === DKIM keys ===

    pub async fn put_dkim_key(&self, key: &DkimKeyRow) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO dkim_keys (domain, selector, algorithm, public_key, private_key_ref, enabled, owner) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT(domain, selector) DO UPDATE SET algorithm = excluded.algorithm, public_key = excluded.public_key, \
                 private_key_ref = excluded.private_key_ref, enabled = excluded.enabled, owner = excluded.owner"
            }
            Backend::MySql => {
                "INSERT INTO dkim_keys (domain, selector, algorithm, public_key, private_key_ref, enabled, owner) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE algorithm = VALUES(algorithm), public_key = VALUES(public_key), \
                 private_key_ref = VALUES(private_key_ref), enabled = VALUES(enabled), owner = VALUES(owner)"
            }
        };
        sqlx::query(sql)
            .bind(key.domain.to_ascii_lowercase())
            .bind(&key.selector)
            .bind(&key.algorithm)
            .bind(&key.public_key)
            .bind(&key.private_key_ref)
            .bind(key.enabled as i64)
            .bind(key.owner.clone())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKeyRow>> {
        let rows = sqlx::query(
            "SELECT domain, selector, algorithm, public_key, private_key_ref, enabled, owner FROM dkim_keys WHERE domain = ? ORDER BY selector",
        )
        .bind(domain.to_ascii_lowercase())
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DkimKeyRow {
                domain: r.get("domain"),
                selector: r.get("selector"),
                algorithm: r.get("algorithm"),
                public_key: r.get("public_key"),
                private_key_ref: r.get("private_key_ref"),
                enabled: r.get::<i64, _>("enabled") != 0,
                owner: r.get("owner"),
            })
            .collect())
    }

    pub async fn delete_dkim_key(&self, domain: &str, selector: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dkim_keys WHERE domain = ? AND selector = ?")
            .bind(domain.to_ascii_lowercase())
            .bind(selector)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // === recipient resolution ===

    /// Resolves an envelope recipient the way Postfix's virtual maps would: mailbox, alias
    /// (recursively, fanning out), `user+tag` to `user`, then the domain's catch-all.
    pub async fn resolve(&self, address: &str) -> Result<Resolution> {
        let address = canonical_address(address);
        let Some((_, domain)) = split_address(&address) else {
            return Ok(Resolution::Unknown);
        };
        if !self.is_local_domain(&domain).await? {
            return Ok(Resolution::NonLocalDomain);
        }
        // The common case, a mailbox by its own address, in one more query.
        if let Some(mb) = self.mailbox(&address).await? {
            if mb.enabled {
                return Ok(Resolution::Deliver(vec![Recipient::Local(mb.address)]));
            }
        }
        let mut found = Vec::new();
        if self.expand(&address, 0, &mut found).await? {
            found.sort();
            found.dedup();
            Ok(Resolution::Deliver(found))
        } else {
            Ok(Resolution::Unknown)
        }
    }

    /// Appends the targets of `address` to `out`; false when the address names nobody.
    async fn expand(&self, address: &str, depth: usize, out: &mut Vec<Recipient>) -> Result<bool> {
        if depth > MAX_ALIAS_DEPTH {
            tracing::warn!(address, "alias expansion too deep, stopping");
            return Ok(false);
        }
        let Some((local, domain)) = split_address(address) else {
            return Ok(false);
        };
        if !self.is_local_domain(&domain).await? {
            out.push(Recipient::Remote(address.to_string()));
            return Ok(true);
        }
        if self.expand_exact(address, depth, out).await? {
            return Ok(true);
        }
        if let Some((base, _tag)) = local.split_once('+') {
            let stripped = format!("{base}@{domain}");
            if self.expand_exact(&stripped, depth, out).await? {
                return Ok(true);
            }
        }
        if let Some(catch_all) = self.domain(&domain).await?.and_then(|d| d.catch_all) {
            let target = if catch_all.contains('@') {
                canonical_address(&catch_all)
            } else {
                format!("{}@{domain}", catch_all.to_lowercase())
            };
            if target != address {
                return Box::pin(self.expand(&target, depth + 1, out)).await;
            }
        }
        Ok(false)
    }

    async fn expand_exact(
        &self,
        address: &str,
        depth: usize,
        out: &mut Vec<Recipient>,
    ) -> Result<bool> {
        if let Some(mb) = self.mailbox(address).await? {
            if mb.enabled {
                out.push(Recipient::Local(mb.address));
                return Ok(true);
            }
        }
        let destinations = self.alias_destinations(address).await?;
        let mut any = false;
        for destination in destinations {
            if destination == address {
                continue;
            }
            any |= Box::pin(self.expand(&destination, depth + 1, out)).await?;
        }
        Ok(any)
    }
}

pub(crate) fn mailbox_from_row(r: &sqlx::any::AnyRow) -> MailboxRow {
    MailboxRow {
        id: r.get("id"),
        address: r.get("address"),
        domain: r.get("domain"),
        local_part: r.get("local_part"),
        password_hash: r.get("password_hash"),
        quota_bytes: r.get("quota_bytes"),
        used_bytes: r.get("used_bytes"),
        enabled: r.get::<i64, _>("enabled") != 0,
        home: r.get("home"),
        owner: r.get("owner"),
    }
}
