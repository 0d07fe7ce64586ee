//! Aliases: one row per destination, so several declarers can add to one address.

use sqlx::Row;

use super::canonical_address;
use crate::{Durability, Result, Store};

impl Store {
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
}
