//! DKIM key rows: the public half and where the private key lives, per domain and selector.

use sqlx::Row;

use crate::{Backend, Result, Store};

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

impl Store {
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
}
