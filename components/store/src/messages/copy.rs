//! COPY (RFC 4315 COPYUID) and MOVE (RFC 6851) between folders of one mailbox.

use sqlx::Row;

use super::read::{message_from_row, uid_ranges, MessageMeta, MESSAGE_COLUMNS};
use crate::folders::{bump_folder, folder_from_row, FolderInfo, FOLDER_COLUMNS};
use crate::{Durability, Error, Result, Store};

/// A copy of the message row `id` under a new folder, UID, modseq, blob and flags; the
/// cached header goes along (INSERT … SELECT, which MariaDB allows on the same table).
const COPY_ROW: &str =
    "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, internal_date, flags, delivery_key, header) \
     SELECT ?, ?, ?, ?, ?, ?, ?, NULL, header FROM messages WHERE id = ?";

/// Result of COPY or MOVE: the target folder's UIDVALIDITY and (source, target) UID pairs,
/// in source UID order (RFC 4315 COPYUID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub uidvalidity: i64,
    pub pairs: Vec<(i64, i64)>,
}

impl Store {
    /// Copies messages into another folder (of the same mailbox). Each copy gets its own
    /// blob — a hard link where the volume allows, else a full copy — so expunging one copy
    /// never removes another's bytes. UIDs come from the target folder's counter under its
    /// row lock, exactly as deliveries do, and the copies are charged to the quota.
    pub async fn copy_messages(
        &self,
        source_folder: i64,
        uids: &[i64],
        target_folder: i64,
    ) -> Result<Copied> {
        let target = self
            .folder_by_id(target_folder)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(target_folder.to_string()))?;
        let home: String = sqlx::query("SELECT home FROM mailboxes WHERE id = ?")
            .bind(target.mailbox_id)
            .fetch_one(&mut *self.reader().await?)
            .await?
            .get("home");
        let sources = self.metas_for_uids(source_folder, uids).await?;
        if sources.is_empty() {
            return Ok(Copied {
                uidvalidity: target.uidvalidity,
                pairs: Vec::new(),
            });
        }
        let mut links = Vec::with_capacity(sources.len());
        for meta in &sources {
            match self.blobs.link(&meta.blob_path, &home).await {
                Ok(rel) => links.push(rel),
                Err(e) => {
                    self.remove_blobs(&links).await;
                    return Err(e);
                }
            }
        }
        match self.insert_copies(&target, &sources, &links).await {
            Ok(copied) => Ok(copied),
            Err(e) => {
                self.remove_blobs(&links).await;
                Err(e)
            }
        }
    }

    async fn insert_copies(
        &self,
        target: &FolderInfo,
        sources: &[MessageMeta],
        blobs: &[String],
    ) -> Result<Copied> {
        let n = sources.len() as i64;
        let size: i64 = sources.iter().map(|m| m.size).sum();
        let mut tx = self.begin_write(Durability::Synced).await?;
        let bumped = bump_folder(&mut tx, self.backend, target.id, n).await?;
        let first_uid = bumped.uidnext - n;
        let modseq = bumped.modseq;
        let uidvalidity = bumped.uidvalidity;
        let charged = sqlx::query(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE id = ? AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes)",
        )
        .bind(size)
        .bind(target.mailbox_id)
        .bind(size)
        .execute(&mut *tx)
        .await?;
        if charged.rows_affected() == 0 {
            let mb =
                sqlx::query("SELECT address, used_bytes, quota_bytes FROM mailboxes WHERE id = ?")
                    .bind(target.mailbox_id)
                    .fetch_one(&mut *tx)
                    .await?;
            return Err(Error::OverQuota {
                address: mb.get("address"),
                used: mb.get("used_bytes"),
                size,
                quota: mb.get("quota_bytes"),
            });
        }
        let mut pairs = Vec::with_capacity(sources.len());
        for (i, (meta, blob)) in sources.iter().zip(blobs).enumerate() {
            let uid = first_uid + i as i64;
            sqlx::query(COPY_ROW)
                .bind(target.id)
                .bind(uid)
                .bind(modseq)
                .bind(blob)
                .bind(meta.size)
                .bind(meta.internal_date)
                .bind(meta.flags.join(" "))
                .bind(meta.id)
                .execute(&mut *tx)
                .await?;
            pairs.push((meta.uid, uid));
        }
        tx.commit().await?;
        self.changes.committed(target.id, modseq);
        Ok(Copied { uidvalidity, pairs })
    }

    /// Moves messages atomically (RFC 6851): one transaction inserts them into the target
    /// with new UIDs and records them as expunged from the source. The blob moves with the
    /// row; usage does not change.
    pub async fn move_messages(
        &self,
        source_folder: i64,
        uids: &[i64],
        target_folder: i64,
    ) -> Result<Copied> {
        let mut tx = self.begin_write(Durability::Synced).await?;
        // Both folder rows, lowest id first, so opposite moves cannot deadlock.
        let (a, b) = if source_folder < target_folder {
            (source_folder, target_folder)
        } else {
            (target_folder, source_folder)
        };
        let mut modseqs = Vec::with_capacity(2);
        for id in [a, b] {
            modseqs.push((id, bump_folder(&mut tx, self.backend, id, 0).await?.modseq));
        }
        let target = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?"
        ))
        .bind(target_folder)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| folder_from_row(&r))
        .ok_or_else(|| Error::NoSuchFolder(target_folder.to_string()))?;
        let source_modseq: i64 = sqlx::query("SELECT highest_modseq FROM folders WHERE id = ?")
            .bind(source_folder)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(source_folder.to_string()))?
            .get("highest_modseq");
        let mut sources = Vec::new();
        for (first, last) in uid_ranges(uids) {
            let rows = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid >= ? AND uid <= ? ORDER BY uid"
            ))
            .bind(source_folder)
            .bind(first)
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            sources.extend(rows.iter().map(message_from_row));
        }
        if sources.is_empty() {
            tx.rollback().await?;
            return Ok(Copied {
                uidvalidity: target.uidvalidity,
                pairs: Vec::new(),
            });
        }
        let n = sources.len() as i64;
        sqlx::query("UPDATE folders SET uidnext = uidnext + ? WHERE id = ?")
            .bind(n)
            .bind(target_folder)
            .execute(&mut *tx)
            .await?;
        let first_uid = target.uidnext;
        let mut pairs = Vec::with_capacity(sources.len());
        for (i, meta) in sources.iter().enumerate() {
            let uid = first_uid + i as i64;
            sqlx::query(COPY_ROW)
                .bind(target_folder)
                .bind(uid)
                .bind(target.highest_modseq)
                .bind(&meta.blob_path)
                .bind(meta.size)
                .bind(meta.internal_date)
                .bind(meta.flags.join(" "))
                .bind(meta.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM messages WHERE id = ?")
                .bind(meta.id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)")
                .bind(source_folder)
                .bind(meta.uid)
                .bind(source_modseq)
                .execute(&mut *tx)
                .await?;
            pairs.push((meta.uid, uid));
        }
        tx.commit().await?;
        for (id, modseq) in modseqs {
            self.changes.committed(id, modseq);
        }
        Ok(Copied {
            uidvalidity: target.uidvalidity,
            pairs,
        })
    }

    async fn remove_blobs(&self, rels: &[String]) {
        for rel in rels {
            if let Err(e) = self.blobs.remove(rel).await {
                tracing::warn!(error = %e, rel, "could not remove blob");
            }
        }
    }
}
