//! Token counts of the filter's Bayes classifier (migration 0005), so every `postbay
//! filter` replica classifies with what any of them learnt (issue 13: state replicas share
//! lives in the database).

use sqlx::Row;

use crate::db::Backend;
use crate::{placeholders, Durability, Result, Store, IN_LIST_CHUNK};

/// What learning a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// First time: its tokens were counted.
    New,
    /// Learnt before as the other class: its tokens moved over.
    Relearned,
    /// Learnt before as this class: nothing changed.
    Already,
}

/// The `bayes_totals` row of the one global classifier; per-domain classifiers have rows
/// of their own (any other id), made when they first learn.
pub const GLOBAL_SCOPE: i64 = 1;

impl Store {
    /// (spam, ham) messages learnt by the classifier `scope`.
    pub async fn bayes_totals(&self, scope: i64) -> Result<(u64, u64)> {
        let row = sqlx::query("SELECT spam, ham FROM bayes_totals WHERE id = ?")
            .bind(scope)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.map_or((0, 0), |r| {
            (
                count(r.get::<i64, _>("spam")),
                count(r.get::<i64, _>("ham")),
            )
        }))
    }

    /// (spam, ham) per token, in the order given; tokens never seen count (0, 0).
    pub async fn bayes_counts(&self, tokens: &[u64]) -> Result<Vec<(u64, u64)>> {
        let mut found = std::collections::HashMap::with_capacity(tokens.len());
        let mut reader = self.reader().await?;
        for chunk in tokens.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT token, spam, ham FROM bayes_tokens WHERE token IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for t in chunk {
                query = query.bind(key(*t));
            }
            for row in query.fetch_all(&mut *reader).await? {
                found.insert(
                    row.get::<i64, _>("token"),
                    (
                        count(row.get::<i64, _>("spam")),
                        count(row.get::<i64, _>("ham")),
                    ),
                );
            }
        }
        Ok(tokens
            .iter()
            .map(|t| found.get(&key(*t)).copied().unwrap_or((0, 0)))
            .collect())
    }

    /// Counts one message's tokens as spam or ham, once per `message_key`: learning it again
    /// as the same class changes nothing, as the other class moves its counts over. One
    /// transaction, so replicas learning at once stay consistent.
    pub async fn bayes_learn(
        &self,
        scope: i64,
        message_key: &str,
        tokens: &[u64],
        spam: bool,
    ) -> Result<Learned> {
        let message_key = stored_key(message_key);
        let mut tokens: Vec<i64> = tokens.iter().map(|t| key(*t)).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let mut tx = self.begin_write(Durability::Relaxed).await?;
        let lock = match self.backend() {
            Backend::MySql => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        // Created or locked exclusive in one statement: `INSERT IGNORE`'s shared lock,
        // upgraded by `FOR UPDATE` below, deadlocks two replicas learning at once (InnoDB
        // error 1213), as it did in greylisting.
        let upsert = match self.backend() {
            Backend::MySql => " ON DUPLICATE KEY UPDATE spam = spam",
            Backend::Sqlite => " ON CONFLICT (id) DO NOTHING",
        };
        sqlx::query(&format!(
            "INSERT INTO bayes_totals (id, spam, ham) VALUES (?, 0, 0){upsert}"
        ))
        .bind(scope)
        .execute(&mut *tx)
        .await?;
        // The totals row is the lock that orders concurrent learners (MariaDB).
        sqlx::query(&format!("SELECT spam FROM bayes_totals WHERE id = ?{lock}"))
            .bind(scope)
            .fetch_optional(&mut *tx)
            .await?;
        let before = sqlx::query("SELECT spam FROM bayes_learned WHERE message_key = ?")
            .bind(&message_key)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.get::<i64, _>("spam") != 0);
        let outcome = match before {
            Some(was) if was == spam => return Ok(Learned::Already),
            Some(_) => Learned::Relearned,
            None => Learned::New,
        };
        let flag = i64::from(spam);
        if outcome == Learned::New {
            sqlx::query("INSERT INTO bayes_learned (message_key, spam) VALUES (?, ?)")
                .bind(&message_key)
                .bind(flag)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query("UPDATE bayes_learned SET spam = ? WHERE message_key = ?")
                .bind(flag)
                .bind(&message_key)
                .execute(&mut *tx)
                .await?;
        }
        // (added to spam, added to ham): a relearn takes one from the other class.
        let (to_spam, to_ham): (i64, i64) = match (outcome, spam) {
            (Learned::Relearned, true) => (1, -1),
            (Learned::Relearned, false) => (-1, 1),
            (_, true) => (1, 0),
            (_, false) => (0, 1),
        };
        let upsert = match self.backend() {
            Backend::Sqlite => "ON CONFLICT (token) DO UPDATE SET spam = MAX(bayes_tokens.spam + excluded.spam, 0), ham = MAX(bayes_tokens.ham + excluded.ham, 0)",
            Backend::MySql => "ON DUPLICATE KEY UPDATE spam = GREATEST(spam + VALUES(spam), 0), ham = GREATEST(ham + VALUES(ham), 0)",
        };
        for chunk in tokens.chunks(IN_LIST_CHUNK) {
            let values = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            let sql =
                format!("INSERT INTO bayes_tokens (token, spam, ham) VALUES {values} {upsert}");
            let mut query = sqlx::query(&sql);
            for t in chunk {
                query = query.bind(*t).bind(to_spam).bind(to_ham);
            }
            query.execute(&mut *tx).await?;
        }
        let totals = match self.backend() {
            Backend::Sqlite => "UPDATE bayes_totals SET spam = MAX(spam + ?, 0), ham = MAX(ham + ?, 0) WHERE id = ?",
            Backend::MySql => "UPDATE bayes_totals SET spam = GREATEST(spam + ?, 0), ham = GREATEST(ham + ?, 0) WHERE id = ?",
        };
        sqlx::query(totals)
            .bind(to_spam)
            .bind(to_ham)
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Tokens are 63-bit (decision 39), so they fit a signed column unchanged.
fn key(token: u64) -> i64 {
    (token & (u64::MAX >> 1)) as i64
}

fn count(n: i64) -> u64 {
    n.max(0) as u64
}

/// Keys fit the column (191 characters on MariaDB): a longer one is stored as its SHA-256.
fn stored_key(message_key: &str) -> String {
    use sha2::Digest;
    if message_key.len() <= 190 {
        return message_key.to_string();
    }
    let digest = sha2::Sha256::digest(message_key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("#{hex}")
}
