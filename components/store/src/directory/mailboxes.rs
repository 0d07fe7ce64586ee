//! Mailboxes: the accounts mail is delivered to and users log in as.

use sqlx::Row;

use super::{canonical_address, split_address};
use crate::{now_unix, Backend, Durability, Result, Store};

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
    /// The SCRAM-SHA-256 credential (`{SCRAM-SHA-256}...`), if one was derived.
    pub scram_sha256: Option<String>,
    /// What the user may send, besides the address and its aliases.
    pub sending: Sending,
}

/// Sending rights and limits of a mailbox (submission). `None` limits mean the server's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sending {
    /// Further sender addresses (`@domain` allows a whole domain), lowercased.
    pub send_as: Vec<String>,
    pub max_messages_per_hour: Option<u32>,
    pub max_recipients_per_hour: Option<u32>,
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

impl Store {
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

    /// Sets a mailbox's SCRAM credential and sending rights (apart from [`put_mailbox`],
    /// which older callers use without knowing about sending). `false` if no such mailbox.
    ///
    /// [`put_mailbox`]: Store::put_mailbox
    pub async fn set_mailbox_sending(
        &self,
        address: &str,
        scram_sha256: Option<&str>,
        sending: &Sending,
    ) -> Result<bool> {
        let send_as: Vec<String> = sending.send_as.iter().map(|a| a.to_lowercase()).collect();
        let done = sqlx::query(
            "UPDATE mailboxes SET scram_sha256 = ?, send_as = ?, max_messages_per_hour = ?, \
             max_recipients_per_hour = ? WHERE address = ?",
        )
        .bind(scram_sha256.map(str::to_string))
        .bind((!send_as.is_empty()).then(|| send_as.join(" ")))
        .bind(sending.max_messages_per_hour.map(i64::from))
        .bind(sending.max_recipients_per_hour.map(i64::from))
        .bind(canonical_address(address))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every address `mailbox` may send as besides its own: the ones that forward to it
    /// (alias rows naming it as a destination, which is how a Mailbox's `spec.aliases` and
    /// MailAliases are stored) and its `send_as` list. Takes the row the caller already
    /// read at login, so only the alias rows are queried.
    pub async fn sender_addresses(&self, mailbox: &MailboxRow) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT address FROM aliases WHERE destination = ? ORDER BY address")
                .bind(canonical_address(&mailbox.address))
                .fetch_all(&mut *self.reader().await?)
                .await?;
        let mut out: Vec<String> = rows.iter().map(|r| r.get("address")).collect();
        out.extend(mailbox.sending.send_as.iter().cloned());
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub async fn mailbox(&self, address: &str) -> Result<Option<MailboxRow>> {
        let row = sqlx::query(
            "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, enabled, home, owner, scram_sha256, send_as, max_messages_per_hour, max_recipients_per_hour \
             FROM mailboxes WHERE address = ?",
        )
        .bind(canonical_address(address))
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| mailbox_from_row(&r)))
    }

    pub async fn list_mailboxes(&self, domain: Option<&str>) -> Result<Vec<MailboxRow>> {
        let sql = "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, enabled, home, owner, scram_sha256, send_as, max_messages_per_hour, max_recipients_per_hour FROM mailboxes";
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
        for sql in [
            "DELETE FROM folders WHERE mailbox_id = ?",
            "DELETE FROM subscriptions WHERE mailbox_id = ?",
        ] {
            sqlx::query(sql).bind(mb.id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM mailboxes WHERE id = ?")
            .bind(mb.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
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
        // Hot paths (delivery) select only the columns they need; the sending columns are
        // then left at their defaults.
        scram_sha256: optional(r, "scram_sha256"),
        sending: Sending {
            send_as: optional::<String>(r, "send_as")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            max_messages_per_hour: limit(optional(r, "max_messages_per_hour")),
            max_recipients_per_hour: limit(optional(r, "max_recipients_per_hour")),
        },
    }
}

/// A nullable column that a query may leave out (then `None`). A value that does not decode
/// is logged, not hidden: on MariaDB a TEXT column once arrived as bytes and read as empty.
fn optional<T>(r: &sqlx::any::AnyRow, column: &str) -> Option<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    match r.try_get::<Option<T>, _>(column) {
        Ok(value) => value,
        Err(sqlx::Error::ColumnNotFound(_)) => None,
        Err(e) => {
            tracing::error!(column, error = %e, "mailbox column does not decode");
            None
        }
    }
}

fn limit(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}
