//! Flag changes: STORE with CONDSTORE's `UNCHANGEDSINCE` (RFC 7162 §3.1.3), from rows read
//! here or from what an IMAP session already knows.

use sqlx::Row;

use super::read::{message_from_row, uid_ranges, MessageMeta, MESSAGE_COLUMNS};
use crate::db::batch::{Arg, Batch};
use crate::folders::bump_folder;
use crate::{Backend, Durability, Error, Result, Store, BATCH_ROWS};

/// How a STORE-like update changes a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagChange {
    Replace,
    Add,
    Remove,
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

impl Store {
    /// Changes the flags of the given UIDs; each changed message gets a new modseq. Returns
    /// the messages as they are afterwards, in UID order ([`Store::store_flags`] without
    /// the CONDSTORE details).
    pub async fn update_flags(
        &self,
        folder_id: i64,
        uids: &[i64],
        change: FlagChange,
        flags: &[String],
    ) -> Result<Vec<FlagState>> {
        let update = self
            .store_flags(folder_id, uids, change, flags, None)
            .await?;
        let mut out = update.changed;
        out.extend(update.unchanged);
        out.sort_by_key(|m| m.uid);
        Ok(out)
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
}

/// Flags compare case-insensitively (RFC 3501 §2.3.2) but keep the spelling first given.
pub fn apply_flag_change(current: &[String], change: FlagChange, flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match change {
        FlagChange::Replace => Vec::new(),
        _ => current.to_vec(),
    };
    match change {
        FlagChange::Replace | FlagChange::Add => {
            for f in flags {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(f)) {
                    out.push(f.clone());
                }
            }
        }
        FlagChange::Remove => out.retain(|o| !flags.iter().any(|f| f.eq_ignore_ascii_case(o))),
    }
    out
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|x| b.iter().any(|y| y.eq_ignore_ascii_case(x)))
}
