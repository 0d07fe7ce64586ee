//! Store operations the IMAP server needs beyond delivery: folder management with stable
//! UIDVALIDITY, change detection by modseq (so sessions on any replica see each other's work),
//! conditional flag updates (CONDSTORE), COPY and MOVE.
//!
//! Every write transaction starts with an `UPDATE` so it takes the row lock (MariaDB) or the
//! write lock (SQLite) before it reads anything: a read-then-upgrade transaction could fail
//! with a stale snapshot under SQLite WAL and would race under MariaDB. Locks are taken in a
//! fixed order — folder rows by ascending id, then the mailbox row — so two concurrent
//! operations never deadlock.

use sqlx::Row;

use crate::db::batch::{Arg, Batch};
use crate::db::write::WriteTx;
use crate::fs::{create_dir_durably, sync_dir};
use crate::mailstore::{
    apply_flag_change, bump_folder, folder_from_row, message_from_row, FlagChange, FOLDER_COLUMNS,
};
use crate::{Backend, Durability, Error, FolderInfo, MessageMeta, Result, Store, BATCH_ROWS};

const MESSAGE_COLUMNS: &str = "id, uid, modseq, blob_path, size, internal_date, flags";

/// A copy of the message row `id` under a new folder, UID, modseq, blob and flags; the
/// cached header goes along (INSERT … SELECT, which MariaDB allows on the same table).
const COPY_ROW: &str =
    "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, internal_date, flags, delivery_key, header) \
     SELECT ?, ?, ?, ?, ?, ?, ?, NULL, header FROM messages WHERE id = ?";

/// What changed in a folder between two modseqs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// Messages added or whose flags changed, in UID order, as they are now.
    pub changed: Vec<MessageMeta>,
    /// UIDs removed.
    pub expunged: Vec<i64>,
}

/// Counters for STATUS (RFC 9051 §6.3.11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderStats {
    pub messages: i64,
    pub unseen: i64,
    pub deleted: i64,
    pub size: i64,
}

/// A message's flags and the modseq of their last change: what a STORE reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagState {
    pub uid: i64,
    pub modseq: i64,
    pub flags: Vec<String>,
}

impl From<&MessageMeta> for FlagState {
    fn from(meta: &MessageMeta) -> FlagState {
        FlagState {
            uid: meta.uid,
            modseq: meta.modseq,
            flags: meta.flags.clone(),
        }
    }
}

/// Outcome of a conditional flag update (RFC 7162 §3.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    /// Messages whose flags changed, with their new modseq.
    pub changed: Vec<FlagState>,
    /// Messages that already had the requested flags.
    pub unchanged: Vec<FlagState>,
    /// UIDs skipped because their modseq was above `UNCHANGEDSINCE`.
    pub modified: Vec<i64>,
}

/// Result of COPY or MOVE: the target folder's UIDVALIDITY and (source, target) UID pairs,
/// in source UID order (RFC 4315 COPYUID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    pub uidvalidity: i64,
    pub pairs: Vec<(i64, i64)>,
}

impl Store {
    pub async fn folder_by_id(&self, folder_id: i64) -> Result<Option<FolderInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?"
        ))
        .bind(folder_id)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| folder_from_row(&r)))
    }

    /// The folder and all its messages as one consistent snapshot (one read transaction), so
    /// a session's starting point and its `highest_modseq` agree.
    pub async fn folder_snapshot(
        &self,
        folder_id: i64,
    ) -> Result<Option<(FolderInfo, Vec<MessageMeta>)>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?"
        ))
        .bind(folder_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let folder = folder_from_row(&row);
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? ORDER BY uid"
        ))
        .bind(folder_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((folder, rows.iter().map(message_from_row).collect())))
    }

    /// Follows the folder's modseq as this process learns of changes (local commits at
    /// once, other replicas' through the poller); `modseq` is where the caller's snapshot stands.
    pub fn watch_folder(&self, folder_id: i64, modseq: i64) -> crate::FolderWatch {
        self.changes.ensure_poller(&self.readers);
        self.changes.watch(folder_id, modseq)
    }

    /// How often this process reads the modseqs of watched folders, which bounds how late
    /// it notices changes made by other replicas.
    pub fn set_change_poll_interval(&self, interval: std::time::Duration) {
        self.changes.set_poll_interval(interval);
    }

    /// Publishes the current modseq of every watched folder now (tests; the poller does
    /// this every interval).
    pub async fn poll_changes(&self) -> Result<()> {
        self.changes.poll_once(&self.readers).await
    }

    /// Changes with `since < modseq <= upto`. Modseqs are handed out under the folder row
    /// lock, so once a reader has seen `highest_modseq = upto` every change up to it has
    /// committed and none can appear below it later.
    pub async fn folder_changes(
        &self,
        folder_id: i64,
        since: i64,
        upto: i64,
    ) -> Result<FolderChanges> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND modseq > ? AND modseq <= ? ORDER BY uid"
        ))
        .bind(folder_id)
        .bind(since)
        .bind(upto)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        let gone = sqlx::query(
            "SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? AND modseq <= ? ORDER BY uid",
        )
        .bind(folder_id)
        .bind(since)
        .bind(upto)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(FolderChanges {
            changed: rows.iter().map(message_from_row).collect(),
            expunged: gone.iter().map(|r| r.get("uid")).collect(),
        })
    }

    /// [`Store::messages_in_uid_range`] with each message's cached header section (`None`
    /// where there is none: read the blob), for fetches that need only headers.
    pub async fn messages_with_headers(
        &self,
        folder_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<(MessageMeta, Option<Vec<u8>>)>> {
        let rows = self
            .uid_range_rows(", header", folder_id, first, last)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (message_from_row(r), r.get::<Option<Vec<u8>>, _>("header")))
            .collect())
    }

    /// Rows of the messages with `first <= uid <= last`, in UID order: the message columns
    /// and `extra` ones.
    async fn uid_range_rows(
        &self,
        extra: &str,
        folder_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<sqlx::any::AnyRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS}{extra} FROM messages WHERE folder_id = ? AND uid >= ? AND uid <= ? ORDER BY uid"
        ))
        .bind(folder_id)
        .bind(first)
        .bind(last)
        .fetch_all(&mut *self.reader().await?)
        .await?)
    }

    /// Messages with `first <= uid <= last`, in UID order.
    pub async fn messages_in_uid_range(
        &self,
        folder_id: i64,
        first: i64,
        last: i64,
    ) -> Result<Vec<MessageMeta>> {
        let rows = self.uid_range_rows("", folder_id, first, last).await?;
        Ok(rows.iter().map(message_from_row).collect())
    }

    pub async fn folder_stats(&self, folder_id: i64) -> Result<FolderStats> {
        let rows = sqlx::query("SELECT size, flags FROM messages WHERE folder_id = ?")
            .bind(folder_id)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        let mut stats = FolderStats::default();
        for row in &rows {
            let flags: String = row.get("flags");
            let has = |f: &str| flags.split_whitespace().any(|x| x.eq_ignore_ascii_case(f));
            stats.messages += 1;
            stats.size += row.get::<i64, _>("size");
            if !has("\\Seen") {
                stats.unseen += 1;
            }
            if has("\\Deleted") {
                stats.deleted += 1;
            }
        }
        Ok(stats)
    }

    /// Creates a folder with a UIDVALIDITY larger than any the mailbox's folders have or had,
    /// so a client that cached a deleted folder of the same name resynchronises.
    pub async fn create_folder_unique(
        &self,
        mailbox_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderInfo> {
        let mut tx = self.begin_write(Durability::Synced).await?;
        let uidvalidity = next_uidvalidity(&mut tx, mailbox_id).await?;
        let inserted = sqlx::query(
            "INSERT INTO folders (mailbox_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq) \
             VALUES (?, ?, ?, 1, ?, 1, 1)",
        )
        .bind(mailbox_id)
        .bind(name)
        .bind(special_use)
        .bind(uidvalidity)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::FolderExists(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.folder(mailbox_id, name)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(name.to_string()))
    }

    /// Deletes a folder, its messages and their blobs; frees their quota.
    pub async fn delete_folder(&self, folder_id: i64) -> Result<()> {
        let folder = self
            .folder_by_id(folder_id)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(folder_id.to_string()))?;
        let mut tx = self.begin_write(Durability::Synced).await?;
        sqlx::query(
            "UPDATE mailboxes SET uidvalidity_floor = CASE WHEN uidvalidity_floor < ? THEN ? ELSE uidvalidity_floor END WHERE id = ?",
        )
        .bind(folder.uidvalidity)
        .bind(folder.uidvalidity)
        .bind(folder.mailbox_id)
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query("SELECT blob_path, size FROM messages WHERE folder_id = ?")
            .bind(folder_id)
            .fetch_all(&mut *tx)
            .await?;
        let freed: i64 = rows.iter().map(|r| r.get::<i64, _>("size")).sum();
        for sql in [
            "DELETE FROM messages WHERE folder_id = ?",
            "DELETE FROM expunged WHERE folder_id = ?",
            "DELETE FROM folders WHERE id = ?",
        ] {
            sqlx::query(sql).bind(folder_id).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE mailboxes SET used_bytes = CASE WHEN used_bytes >= ? THEN used_bytes - ? ELSE 0 END WHERE id = ?")
            .bind(freed)
            .bind(freed)
            .bind(folder.mailbox_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.changes.gone(folder_id);
        for row in rows {
            let blob: String = row.get("blob_path");
            if let Err(e) = self.blobs.remove(&blob).await {
                tracing::warn!(error = %e, blob, "could not remove blob of deleted folder");
            }
        }
        Ok(())
    }

    /// Renames `from` and every folder below it (`from/...`) to `to`; `delimiter` separates
    /// hierarchy levels. A renamed folder whose UIDVALIDITY could equal that of a folder once
    /// deleted under the new name gets a fresh one.
    pub async fn rename_folder(
        &self,
        mailbox_id: i64,
        from: &str,
        to: &str,
        delimiter: char,
    ) -> Result<()> {
        let mut tx = self.begin_write(Durability::Synced).await?;
        // Lock the mailbox row first: renames of one mailbox serialise.
        sqlx::query("UPDATE mailboxes SET uidvalidity_floor = uidvalidity_floor WHERE id = ?")
            .bind(mailbox_id)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ?"
        ))
        .bind(mailbox_id)
        .fetch_all(&mut *tx)
        .await?;
        let folders: Vec<FolderInfo> = rows.iter().map(folder_from_row).collect();
        let prefix = format!("{from}{delimiter}");
        let moving: Vec<&FolderInfo> = folders
            .iter()
            .filter(|f| f.name == from || f.name.starts_with(&prefix))
            .collect();
        if !moving.iter().any(|f| f.name == from) {
            return Err(Error::NoSuchFolder(from.to_string()));
        }
        for f in &moving {
            let new_name = format!("{to}{}", &f.name[from.len()..]);
            if folders.iter().any(|o| o.name == new_name) {
                return Err(Error::FolderExists(new_name));
            }
        }
        let floor: i64 = sqlx::query("SELECT uidvalidity_floor FROM mailboxes WHERE id = ?")
            .bind(mailbox_id)
            .fetch_one(&mut *tx)
            .await?
            .get("uidvalidity_floor");
        for f in &moving {
            let new_name = format!("{to}{}", &f.name[from.len()..]);
            let uidvalidity = if f.uidvalidity <= floor {
                next_uidvalidity(&mut tx, mailbox_id).await?
            } else {
                f.uidvalidity
            };
            sqlx::query("UPDATE folders SET name = ?, uidvalidity = ? WHERE id = ?")
                .bind(&new_name)
                .bind(uidvalidity)
                .bind(f.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_subscribed(&self, folder_id: i64, subscribed: bool) -> Result<()> {
        sqlx::query("UPDATE folders SET subscribed = ? WHERE id = ?")
            .bind(subscribed as i64)
            .bind(folder_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the message `uid` is (still) in the folder.
    pub async fn has_message(&self, folder_id: i64, uid: i64) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS present FROM messages WHERE folder_id = ? AND uid = ?")
            .bind(folder_id)
            .bind(uid)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.is_some())
    }

    /// Changes flags of `uids`. Messages whose flags do not change keep their modseq, and
    /// the folder's modseq moves only if something changed, so a no-op STORE wakes nobody.
    /// With `unchanged_since`, messages modified after it are left alone and reported.
    pub async fn store_flags(
        &self,
        folder_id: i64,
        uids: &[i64],
        change: FlagChange,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagUpdate> {
        if self.backend != Backend::Sqlite {
            return self
                .store_flags_locked(folder_id, uids, change, flags, unchanged_since)
                .await;
        }
        let current = self
            .metas_for_uids(folder_id, uids)
            .await?
            .iter()
            .map(FlagState::from)
            .collect();
        self.store_flags_known(folder_id, current, change, flags, unchanged_since)
            .await
    }

    /// [`Store::store_flags`] for a caller that knows the messages' current flags (an IMAP
    /// session's view of its selected folder), which saves reading them. If that knowledge
    /// is stale for a message (someone else changed it since), the message is redone with
    /// its actual flags, so a stale view costs time, never a lost flag.
    pub async fn store_flags_known(
        &self,
        folder_id: i64,
        current: Vec<FlagState>,
        change: FlagChange,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagUpdate> {
        if self.backend == Backend::Sqlite {
            return self
                .store_flags_batched(folder_id, current, change, flags, unchanged_since)
                .await;
        }
        let uids: Vec<i64> = current.iter().map(|m| m.uid).collect();
        self.store_flags_locked(folder_id, &uids, change, flags, unchanged_since)
            .await
    }

    /// SQLite: from the flags read (or known) before the gate, the changes are written in
    /// one batch per [`BATCH_ROWS`] messages, each update conditional on the message's
    /// modseq being the one read. A message changed by someone else in between is redone
    /// by [`Store::store_flags_locked`]. A STORE that changes nothing writes nothing.
    async fn store_flags_batched(
        &self,
        folder_id: i64,
        current: Vec<FlagState>,
        change: FlagChange,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagUpdate> {
        let mut out = FlagUpdate::default();
        let mut planned: Vec<FlagState> = Vec::new();
        for state in current {
            if unchanged_since.is_some_and(|u| state.modseq > u) {
                out.modified.push(state.uid);
                continue;
            }
            let new_flags = apply_flag_change(&state.flags, change, flags);
            if same_flags(&new_flags, &state.flags) {
                out.unchanged.push(state);
            } else {
                planned.push(FlagState {
                    flags: new_flags,
                    ..state
                });
            }
        }
        let mut lost = Vec::new();
        for chunk in planned.chunks(BATCH_ROWS) {
            let mut batch = Batch::transaction();
            batch.push(
                "UPDATE folders SET highest_modseq = highest_modseq + 1 WHERE id = ?",
                [Arg::Int(folder_id)],
            );
            for state in chunk {
                batch.push(
                    "UPDATE messages SET flags = ?, modseq = (SELECT highest_modseq FROM folders WHERE id = ?) \
                     WHERE folder_id = ? AND uid = ? AND modseq = ? RETURNING uid, modseq",
                    [
                        Arg::Text(state.flags.join(" ")),
                        Arg::Int(folder_id),
                        Arg::Int(folder_id),
                        Arg::Int(state.uid),
                        Arg::Int(state.modseq),
                    ],
                );
            }
            let rows = self
                .write_batch(Durability::Relaxed, &batch.commit())
                .await?;
            let done: std::collections::HashMap<i64, i64> = rows
                .iter()
                .map(|r| (r.get("uid"), r.get("modseq")))
                .collect();
            for state in chunk {
                match done.get(&state.uid) {
                    Some(modseq) => out.changed.push(FlagState {
                        modseq: *modseq,
                        ..state.clone()
                    }),
                    None => lost.push(state.uid),
                }
            }
            if let Some(modseq) = done.values().max() {
                self.changes.committed(folder_id, *modseq);
            }
        }
        if !lost.is_empty() {
            let redone = self
                .store_flags_locked(folder_id, &lost, change, flags, unchanged_since)
                .await?;
            out.changed.extend(redone.changed);
            out.unchanged.extend(redone.unchanged);
            out.modified.extend(redone.modified);
        }
        out.changed.sort_by_key(|m| m.uid);
        out.unchanged.sort_by_key(|m| m.uid);
        out.modified.sort_unstable();
        Ok(out)
    }

    /// [`Store::store_flags`] in a transaction holding the folder lock throughout.
    async fn store_flags_locked(
        &self,
        folder_id: i64,
        uids: &[i64],
        change: FlagChange,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagUpdate> {
        let backend = self.backend;
        let (modseq, out) = self
            .write(Durability::Relaxed, async |tx| {
                let modseq = bump_folder(tx, backend, folder_id, 0).await?.modseq;
                let mut out = FlagUpdate::default();
                for chunk in uid_ranges(uids) {
                    let rows = sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE folder_id = ? AND uid >= ? AND uid <= ? ORDER BY uid"
                    ))
                    .bind(folder_id)
                    .bind(chunk.0)
                    .bind(chunk.1)
                    .fetch_all(&mut **tx)
                    .await?;
                    for row in rows {
                        let row = message_from_row(&row);
                        let mut meta = FlagState::from(&row);
                        if unchanged_since.is_some_and(|u| meta.modseq > u) {
                            out.modified.push(meta.uid);
                            continue;
                        }
                        let new_flags = apply_flag_change(&meta.flags, change, flags);
                        if same_flags(&new_flags, &meta.flags) {
                            out.unchanged.push(meta);
                            continue;
                        }
                        sqlx::query("UPDATE messages SET flags = ?, modseq = ? WHERE id = ?")
                            .bind(new_flags.join(" "))
                            .bind(modseq)
                            .bind(row.id)
                            .execute(&mut **tx)
                            .await?;
                        meta.flags = new_flags;
                        meta.modseq = modseq;
                        out.changed.push(meta);
                    }
                }
                // Nothing changed: the transaction is left open and rolled back, giving the modseq
                // back so idle sessions are not woken.
                if !out.changed.is_empty() {
                    tx.commit_in_place().await?;
                }
                Ok::<_, Error>((modseq, out))
            })
            .await?;
        if !out.changed.is_empty() {
            self.changes.committed(folder_id, modseq);
        }
        Ok(out)
    }

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
            match self.link_blob(&meta.blob_path, &home).await {
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

    async fn metas_for_uids(&self, folder_id: i64, uids: &[i64]) -> Result<Vec<MessageMeta>> {
        let mut out = Vec::new();
        for (first, last) in uid_ranges(uids) {
            out.extend(self.messages_in_uid_range(folder_id, first, last).await?);
        }
        Ok(out)
    }

    /// A new blob path under `home` sharing `rel`'s bytes.
    async fn link_blob(&self, rel: &str, home: &str) -> Result<String> {
        let new_rel = format!(
            "{home}/{}/{}.eml",
            crate::blobs::month_dir(),
            ulid::Ulid::new()
        );
        let src = self.blobs.path(rel);
        let dst = self.blobs.path(&new_rel);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let dir = dst.parent().expect("blob path has a parent");
            create_dir_durably(dir)?;
            if std::fs::hard_link(&src, &dst).is_err() {
                // Another filesystem or no link support: copy durably instead.
                let bytes = std::fs::read(&src).map_err(Error::io(&src))?;
                crate::fs::write_file_durably(&dst, &[&bytes])?;
            }
            sync_dir(dir)
        })
        .await
        .expect("blob link task panicked")?;
        Ok(new_rel)
    }

    async fn remove_blobs(&self, rels: &[String]) {
        for rel in rels {
            if let Err(e) = self.blobs.remove(rel).await {
                tracing::warn!(error = %e, rel, "could not remove blob");
            }
        }
    }
}

/// Reserves a UIDVALIDITY for a new folder of the mailbox: at least the current time, and
/// above every value its folders have or had (the floor remembers deleted ones). The first
/// statement writes, so the mailbox row is locked before anything is read.
async fn next_uidvalidity(tx: &mut WriteTx, mailbox_id: i64) -> Result<i64> {
    sqlx::query("UPDATE mailboxes SET uidvalidity_floor = uidvalidity_floor WHERE id = ?")
        .bind(mailbox_id)
        .execute(&mut **tx)
        .await?;
    let floor: i64 = sqlx::query("SELECT uidvalidity_floor FROM mailboxes WHERE id = ?")
        .bind(mailbox_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| Error::NoSuchMailbox(mailbox_id.to_string()))?
        .get("uidvalidity_floor");
    let highest: Option<i64> =
        sqlx::query("SELECT MAX(uidvalidity) AS m FROM folders WHERE mailbox_id = ?")
            .bind(mailbox_id)
            .fetch_one(&mut **tx)
            .await?
            .get("m");
    let value = crate::now_unix()
        .max(floor + 1)
        .max(highest.unwrap_or(0) + 1);
    sqlx::query("UPDATE mailboxes SET uidvalidity_floor = ? WHERE id = ?")
        .bind(value)
        .bind(mailbox_id)
        .execute(&mut **tx)
        .await?;
    Ok(value)
}

/// Compresses UIDs into inclusive ranges of consecutive values, so large sets cost few
/// queries.
fn uid_ranges(uids: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for uid in sorted {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == uid => *last = uid,
            _ => out.push((uid, uid)),
        }
    }
    out
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests {
    use super::uid_ranges;

    #[test]
    fn ranges_merge_consecutive_uids() {
        assert_eq!(
            uid_ranges(&[5, 1, 2, 3, 9, 10, 3]),
            vec![(1, 3), (5, 5), (9, 10)]
        );
        assert!(uid_ranges(&[]).is_empty());
    }
}
