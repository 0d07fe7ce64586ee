//! Rate limit counters (migration 0010): how many messages a key (a client, a sender, a
//! recipient, a login) sent in a rule's period, kept in the database so every filter replica
//! counts the same messages (issue 13: state replicas share lives in the database).
//!
//! Each (rule, key) is a bucket with one row per fixed window of the rule's period; the
//! rate is the sliding-window estimate of the last two windows (Cloudflare's): the current
//! window's count plus the previous one's weighted by how much of it the sliding period
//! still covers.

use sqlx::Row;

use crate::db::Backend;
use crate::{Durability, Result, Store};

/// One counter a message must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's name (the filter's SHA-256 hex of the rule and the key), at most 64
    /// characters.
    pub id: String,
    /// Period in seconds (> 0).
    pub period: i64,
    /// Messages allowed per period.
    pub limit: i64,
}

impl Store {
    /// Counts one message in every bucket of `buckets` at `now` (Unix seconds), in one
    /// transaction: when any bucket would go over its limit, nothing is counted anywhere and
    /// the answer lists the positions of the buckets that are over (empty: admitted and
    /// counted). Each bucket's row is incremented with an upsert before it is read, so the
    /// row is locked from the first statement (MariaDB) or the database is (SQLite):
    /// two replicas counting at once both count, one after the other. Buckets are taken in
    /// a fixed order so two messages sharing buckets cannot deadlock.
    pub async fn ratelimit(&self, buckets: &[Bucket], now: i64) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..buckets.len())
            .filter(|&i| buckets[i].period > 0)
            .collect();
        order.sort_by(|&a, &b| {
            (&buckets[a].id, buckets[a].period).cmp(&(&buckets[b].id, buckets[b].period))
        });
        if order.is_empty() {
            return Ok(Vec::new());
        }
        let upsert = match self.backend() {
            Backend::Sqlite => {
                "INSERT INTO ratelimit (bucket, window_start, count, expires) VALUES (?, ?, 1, ?) \
                 ON CONFLICT (bucket, window_start) DO UPDATE SET count = count + 1"
            }
            Backend::MySql => {
                "INSERT INTO ratelimit (bucket, window_start, count, expires) VALUES (?, ?, 1, ?) \
                 ON DUPLICATE KEY UPDATE count = count + 1"
            }
        };
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        for &i in &order {
            let b = &buckets[i];
            let start = now - now.rem_euclid(b.period);
            sqlx::query(upsert)
                .bind(&b.id)
                .bind(start)
                .bind(start.saturating_add(b.period.saturating_mul(2)))
                .execute(&mut *tx)
                .await?;
        }
        let mut over = Vec::new();
        for &i in &order {
            let b = &buckets[i];
            let start = now - now.rem_euclid(b.period);
            // Our own upsert's row is visible to this read whatever the isolation level,
            // and it already holds the other replicas' committed increments.
            let rows = sqlx::query(
                "SELECT window_start, count FROM ratelimit \
                 WHERE bucket = ? AND window_start IN (?, ?)",
            )
            .bind(&b.id)
            .bind(start)
            .bind(start - b.period)
            .fetch_all(&mut *tx)
            .await?;
            let (mut current, mut previous) = (0i64, 0i64);
            for row in rows {
                if row.get::<i64, _>("window_start") == start {
                    current = row.get::<i64, _>("count");
                } else {
                    previous = row.get::<i64, _>("count");
                }
            }
            // current + previous * (period - elapsed) / period > limit, in integers.
            let elapsed = now - start;
            let weighted = i128::from(current) * i128::from(b.period)
                + i128::from(previous) * i128::from(b.period - elapsed);
            if weighted > i128::from(b.limit) * i128::from(b.period) {
                over.push(i);
            }
        }
        if over.is_empty() {
            tx.commit().await?;
        } else {
            over.sort_unstable();
            tx.rollback().await?;
        }
        Ok(over)
    }

    /// Removes windows that no longer count at `now`; how many went.
    pub async fn ratelimit_prune(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        let done = sqlx::query("DELETE FROM ratelimit WHERE expires <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
