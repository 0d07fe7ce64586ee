//! IMAP subscriptions (migration 0008): a list of names per mailbox, apart from its folders
//! (RFC 3501 §6.3.6, RFC 9051 §6.3.7). SUBSCRIBE may name a folder that does not exist, and
//! DELETE leaves the name subscribed; RENAME moves the subscriptions of the names it moves
//! (as Dovecot does), and new mailboxes start with their default folders subscribed.

use sqlx::Row;

use crate::db::write::WriteTx;
use crate::{Durability, Error, Result, Store};

/// Subscriptions one mailbox may hold: bounds what a client can make LIST and LSUB walk.
pub const MAX_SUBSCRIPTIONS: i64 = 10_000;

impl Store {
    /// Subscribes `name`; subscribing twice is not an error (and moves no list version).
    pub async fn subscribe(&self, mailbox_id: i64, name: &str) -> Result<()> {
        let held: i64 = sqlx::query("SELECT COUNT(*) AS n FROM subscriptions WHERE mailbox_id = ?")
            .bind(mailbox_id)
            .fetch_one(&self.pool)
            .await?
            .get("n");
        if held >= MAX_SUBSCRIPTIONS {
            return Err(Error::TooManySubscriptions(MAX_SUBSCRIPTIONS));
        }
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        // The mailbox row first, as RENAME and DELETE lock it.
        let version = crate::changes::bump_list_version(&mut tx, mailbox_id).await?;
        let result = sqlx::query("INSERT INTO subscriptions (mailbox_id, name) VALUES (?, ?)")
            .bind(mailbox_id)
            .bind(name)
            .execute(&mut *tx)
            .await;
        match result {
            Ok(_) => {}
            // Already subscribed: the transaction rolls back, the version stays.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.changes.list_committed(mailbox_id, version);
        Ok(())
    }

    /// Unsubscribes `name`; returns whether it was subscribed.
    pub async fn unsubscribe(&self, mailbox_id: i64, name: &str) -> Result<bool> {
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        let version = crate::changes::bump_list_version(&mut tx, mailbox_id).await?;
        let done = sqlx::query("DELETE FROM subscriptions WHERE mailbox_id = ? AND name = ?")
            .bind(mailbox_id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            // Nothing changed: roll back rather than move the version.
            return Ok(false);
        }
        tx.commit().await?;
        self.changes.list_committed(mailbox_id, version);
        Ok(true)
    }

    /// The subscribed names of a mailbox, in name order.
    pub async fn subscriptions(&self, mailbox_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM subscriptions WHERE mailbox_id = ? ORDER BY name")
            .bind(mailbox_id)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        Ok(rows.iter().map(|r| r.get("name")).collect())
    }
}

/// Within a RENAME's transaction: `from` and the names below it (`from<delimiter>...`) become
/// the same names under `to`. A subscription already held under a new name is kept once.
pub(crate) async fn rename_subscriptions(
    tx: &mut WriteTx,
    mailbox_id: i64,
    from: &str,
    to: &str,
    delimiter: char,
) -> Result<()> {
    let prefix = format!("{from}{delimiter}");
    let names: Vec<String> = sqlx::query("SELECT name FROM subscriptions WHERE mailbox_id = ?")
        .bind(mailbox_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .filter(|n| n == from || n.starts_with(&prefix))
        .collect();
    for name in names {
        let new_name = format!("{to}{}", &name[from.len()..]);
        sqlx::query("DELETE FROM subscriptions WHERE mailbox_id = ? AND name = ?")
            .bind(mailbox_id)
            .bind(&new_name)
            .execute(&mut **tx)
            .await?;
        sqlx::query("UPDATE subscriptions SET name = ? WHERE mailbox_id = ? AND name = ?")
            .bind(&new_name)
            .bind(mailbox_id)
            .bind(&name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
