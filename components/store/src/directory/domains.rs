//! Local domains: a domain not listed here is not ours, whatever the aliases say.

use sqlx::Row;

use crate::{now_unix, Backend, Result, Store};

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

impl Store {
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
    /// Removes the domain row and its filter overrides.
    pub async fn delete_domain(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM domains WHERE name = ?")
            .bind(name.to_ascii_lowercase())
            .execute(&self.pool)
            .await?;
        self.put_domain_filter(name, None).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn is_local_domain(&self, name: &str) -> Result<bool> {
        Ok(self.domain(name).await?.is_some_and(|d| d.enabled))
    }
}
