//! Greylisting triplets (migration 0006): whether a (client network, sender, recipients)
//! triplet has come back after the delay, kept in the database so every filter replica
//! agrees (issue 13: state replicas share lives in the database).

use sqlx::Row;

use crate::db::Backend;
use crate::{Durability, Result, Store};

/// What greylisting says of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grey {
    /// Known and passed: accept.
    Pass,
    /// New, or back too soon: try again in this many seconds.
    Wait(i64),
}

impl Store {
    /// Records an attempt of `triplet` at `now` (Unix seconds): new triplets wait `delay`
    /// seconds; one retried after that passes, and stays passed while it is seen at least
    /// once per `lifetime` seconds. One transaction, so two replicas seeing the same triplet
    /// agree.
    pub async fn greylist(
        &self,
        triplet: &str,
        now: i64,
        delay: i64,
        lifetime: i64,
    ) -> Result<Grey> {
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        // The row is created or locked exclusive in one statement. `INSERT IGNORE` would
        // take only a shared lock on an existing row, and two replicas then asking for it
        // exclusive deadlock each other (InnoDB error 1213; a test does exactly that).
        // SQLite's write transaction holds the database lock already.
        let (upsert, lock) = match self.backend() {
            Backend::Sqlite => (" ON CONFLICT (triplet) DO NOTHING", ""),
            Backend::MySql => (
                " ON DUPLICATE KEY UPDATE last_seen = last_seen",
                " FOR UPDATE",
            ),
        };
        sqlx::query(&format!(
            "INSERT INTO greylist (triplet, first_seen, passed, last_seen) VALUES (?, ?, 0, ?){upsert}"
        ))
        .bind(triplet)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT first_seen, passed, last_seen FROM greylist WHERE triplet = ?{lock}"
        ))
        .bind(triplet)
        .fetch_one(&mut *tx)
        .await?;
        let (mut first, mut passed, last) = (
            row.get::<i64, _>("first_seen"),
            row.get::<i64, _>("passed") != 0,
            row.get::<i64, _>("last_seen"),
        );
        if last.saturating_add(lifetime) < now {
            // Not seen for its lifetime: a stranger again.
            first = now;
            passed = false;
        }
        let verdict = if passed || now - first >= delay {
            passed = true;
            Grey::Pass
        } else {
            Grey::Wait(delay - (now - first))
        };
        sqlx::query(
            "UPDATE greylist SET first_seen = ?, passed = ?, last_seen = ? WHERE triplet = ?",
        )
        .bind(first)
        .bind(i64::from(passed))
        .bind(now)
        .bind(triplet)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(verdict)
    }

    /// Removes triplets not seen since `before`; how many went.
    pub async fn greylist_prune(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        let done = sqlx::query("DELETE FROM greylist WHERE last_seen < ?")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
