//! Per-domain spam filter overrides (migration 0007): the MailDomain's `spec.spamFilter` as
//! JSON, written by the reconcile core and read by `postbay filter`. The store keeps the
//! text; its meaning belongs to the filter.

use sqlx::Row;

use crate::db::Backend;
use crate::{placeholders, Result, Store, IN_LIST_CHUNK};

/// Longest overrides text kept (the MySQL column's size).
pub const MAX_DOMAIN_FILTER: usize = 8000;

impl Store {
    /// Sets (`Some`) or clears (`None`) the overrides of `domain`.
    pub async fn put_domain_filter(&self, domain: &str, settings: Option<&str>) -> Result<()> {
        let domain = domain.to_ascii_lowercase();
        let Some(settings) = settings else {
            sqlx::query("DELETE FROM domain_filter WHERE domain = ?")
                .bind(domain)
                .execute(&self.pool)
                .await?;
            return Ok(());
        };
        let sql = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO domain_filter (domain, settings) VALUES (?, ?) \
                 ON CONFLICT(domain) DO UPDATE SET settings = excluded.settings"
            }
            Backend::MySql => {
                "INSERT INTO domain_filter (domain, settings) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE settings = VALUES(settings)"
            }
        };
        sqlx::query(sql)
            .bind(domain)
            .bind(settings)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The overrides of those of `domains` that have any, as (domain, JSON) pairs.
    pub async fn domain_filters(&self, domains: &[String]) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for chunk in domains.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT domain, settings FROM domain_filter WHERE domain IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for domain in chunk {
                query = query.bind(domain.to_ascii_lowercase());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push((row.try_get("domain")?, row.try_get("settings")?));
            }
        }
        Ok(found)
    }
}
