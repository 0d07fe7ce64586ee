//! Expunge: removing messages, recording their tombstones with a fresh modseq so other
//! sessions learn of it, freeing their quota, and their blobs once that is on disk.

use sqlx::Row;

use crate::db::batch::{Arg, Batch};
use crate::folders::bump_folder;
use crate::{Backend, Durability, Error, Result, Store, BATCH_ROWS};

/// What an expunge removed, in UID order, and the modseq it committed (none when nothing
/// was removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expunged {
    pub uids: Vec<i64>,
    pub modseq: Option<i64>,
}

impl Store {
    /// Removes messages by UID and records them as expunged with a fresh modseq, so other
    /// sessions (on any replica) learn about it. Returns the UIDs actually removed. Each
    /// message row owns its blob (COPY hard-links), so blobs are deleted after commit.
    pub async fn expunge(&self, folder_id: i64, uids: &[i64]) -> Result<Vec<i64>> {
        Ok(self
            .expunge_where(folder_id, Expunge::Uids(uids))
            .await?
            .uids)
    }

    /// Expunges the messages flagged `\Deleted` (only those among `among`, when given),
    /// choosing them inside the expunging transaction so a flag changed concurrently is
    /// honoured either entirely or not at all.
    pub async fn expunge_deleted(&self, folder_id: i64, among: Option<&[i64]>) -> Result<Expunged> {
        self.expunge_where(folder_id, Expunge::Deleted(among)).await
    }

    /// Expunges those of `uids` that are flagged `\Deleted`, for a caller that knows which
    /// messages are (an IMAP session's view of its folder), which saves looking for them.
    /// The flag is still tested in the expunging transaction: a message whose `\Deleted` was
    /// removed meanwhile stays.
    pub async fn expunge_flagged(&self, folder_id: i64, uids: &[i64]) -> Result<Expunged> {
        self.expunge_where(folder_id, Expunge::Flagged(uids)).await
    }

    async fn expunge_where(&self, folder_id: i64, which: Expunge<'_>) -> Result<Expunged> {
        if matches!(which, Expunge::Uids([]) | Expunge::Flagged([])) {
            return Ok(Expunged::default());
        }
        if self.backend == Backend::Sqlite {
            return self.expunge_batched(folder_id, which).await;
        }
        let backend = self.backend;
        let done = self
            .write(Durability::Synced, async |tx| {
                let bumped = bump_folder(tx, backend, folder_id, 0).await?;
                let gone: Vec<(i64, String, i64)> = expunge_candidates(tx, folder_id, &which)
                    .await?
                    .into_iter()
                    .map(|c| (c.uid, c.blob_path, c.size))
                    .collect();
                if gone.is_empty() {
                    // Nothing to remove: give the modseq back so idle sessions are not woken.
                    return Ok(None);
                }
                for chunk in gone.chunks(crate::IN_LIST_CHUNK) {
                    let sql = format!(
                        "DELETE FROM messages WHERE folder_id = ? AND uid IN ({})",
                        crate::placeholders(chunk.len())
                    );
                    let mut delete = sqlx::query(&sql).bind(folder_id);
                    for (uid, _, _) in chunk {
                        delete = delete.bind(*uid);
                    }
                    delete.execute(&mut **tx).await?;
                    let sql = format!(
                        "INSERT INTO expunged (folder_id, uid, modseq) VALUES {}",
                        vec!["(?, ?, ?)"; chunk.len()].join(", ")
                    );
                    let mut insert = sqlx::query(&sql);
                    for (uid, _, _) in chunk {
                        insert = insert.bind(folder_id).bind(*uid).bind(bumped.modseq);
                    }
                    insert.execute(&mut **tx).await?;
                }
                let freed: i64 = gone.iter().map(|g| g.2).sum();
                sqlx::query("UPDATE mailboxes SET used_bytes = CASE WHEN used_bytes >= ? THEN used_bytes - ? ELSE 0 END WHERE id = ?")
                    .bind(freed)
                    .bind(freed)
                    .bind(bumped.mailbox_id)
                    .execute(&mut **tx)
                    .await?;
                tx.commit_in_place().await?;
                Ok::<_, Error>(Some((bumped.modseq, gone)))
            })
            .await?;
        let Some((modseq, gone)) = done else {
            return Ok(Expunged::default());
        };
        self.changes.committed(folder_id, modseq);
        Ok(self.reclaim(gone, modseq).await)
    }

    /// SQLite: one batch per [`BATCH_ROWS`] candidates frees their quota, records their
    /// tombstones and deletes them (for `\Deleted`, only those still so flagged, tested by
    /// each statement inside the batch's transaction). Candidates are read before the gate
    /// only when the caller does not know them. The batch commits relaxed, like Dovecot's
    /// expunges; the blobs go once a WAL flush made it durable.
    async fn expunge_batched(&self, folder_id: i64, which: Expunge<'_>) -> Result<Expunged> {
        let (uids, recheck_flag): (Vec<i64>, bool) = match which {
            Expunge::Uids(uids) => (uids.to_vec(), false),
            Expunge::Flagged(uids) => (uids.to_vec(), true),
            Expunge::Deleted(_) => {
                let mut conn = self.reader().await?;
                let candidates = expunge_candidates(&mut conn, folder_id, &which).await?;
                (candidates.iter().map(|c| c.uid).collect(), true)
            }
        };
        let flagged = if recheck_flag {
            " AND (' ' || LOWER(flags) || ' ') LIKE '% \\deleted %'"
        } else {
            ""
        };
        let mut gone: Vec<(i64, String, i64)> = Vec::new();
        let mut modseq = None;
        for chunk in uids.chunks(BATCH_ROWS) {
            let among =
                || std::iter::once(Arg::Int(folder_id)).chain(chunk.iter().map(|u| Arg::Int(*u)));
            let which = format!(
                "FROM messages WHERE folder_id = ? AND uid IN ({}){flagged}",
                crate::placeholders(chunk.len())
            );
            let mut batch = Batch::transaction();
            batch.push(
                "UPDATE folders SET highest_modseq = highest_modseq + 1 WHERE id = ? RETURNING highest_modseq",
                [Arg::Int(folder_id)],
            );
            batch.push(
                &format!(
                    "UPDATE mailboxes SET used_bytes = MAX(used_bytes - COALESCE((SELECT SUM(size) {which}), 0), 0) \
                     WHERE id = (SELECT mailbox_id FROM folders WHERE id = ?)"
                ),
                among().chain([Arg::Int(folder_id)]),
            );
            batch.push(
                &format!(
                    "INSERT INTO expunged (folder_id, uid, modseq) \
                     SELECT folder_id, uid, (SELECT highest_modseq FROM folders WHERE id = ?) {which}"
                ),
                std::iter::once(Arg::Int(folder_id)).chain(among()),
            );
            batch.push(
                &format!("DELETE {which} RETURNING uid, blob_path, size"),
                among(),
            );
            for row in self
                .write_batch(Durability::Relaxed, &batch.commit())
                .await?
            {
                match row.try_get::<i64, _>("highest_modseq") {
                    Ok(m) => modseq = Some(m),
                    Err(_) => gone.push((row.get("uid"), row.get("blob_path"), row.get("size"))),
                }
            }
        }
        let Some(modseq) = modseq.filter(|_| !gone.is_empty()) else {
            return Ok(Expunged::default());
        };
        self.changes.committed(folder_id, modseq);
        gone.sort_unstable_by_key(|g| g.0);
        Ok(self.reclaim(gone, modseq).await)
    }

    /// Hands the blobs of expunged messages (uid, blob, size) to the writer, which removes
    /// them once the expunge is on disk, and reports the UIDs.
    async fn reclaim(&self, gone: Vec<(i64, String, i64)>, modseq: i64) -> Expunged {
        let mut uids = Vec::with_capacity(gone.len());
        let mut paths = Vec::with_capacity(gone.len());
        for (uid, blob, _) in gone {
            uids.push(uid);
            paths.push(self.blobs.path(&blob));
        }
        self.writers.remove_when_durable(paths).await;
        Expunged {
            uids,
            modseq: Some(modseq),
        }
    }
}

/// A message an expunge means to remove.
struct Candidate {
    uid: i64,
    blob_path: String,
    size: i64,
}

/// The messages `which` selects, as they are now on `conn`.
async fn expunge_candidates(
    conn: &mut sqlx::AnyConnection,
    folder_id: i64,
    which: &Expunge<'_>,
) -> Result<Vec<Candidate>> {
    let candidate = |row: &sqlx::any::AnyRow| Candidate {
        uid: row.get("uid"),
        blob_path: row.get("blob_path"),
        size: row.get("size"),
    };
    let mut out = Vec::new();
    match which {
        Expunge::Uids(uids) => {
            for chunk in uids.chunks(crate::IN_LIST_CHUNK) {
                let sql = format!(
                    "SELECT id, uid, blob_path, size FROM messages WHERE folder_id = ? AND uid IN ({})",
                    crate::placeholders(chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(folder_id);
                for uid in chunk {
                    query = query.bind(*uid);
                }
                out.extend(query.fetch_all(&mut *conn).await?.iter().map(candidate));
            }
        }
        Expunge::Deleted(_) | Expunge::Flagged(_) => {
            let among: Option<std::collections::HashSet<i64>> = match which {
                Expunge::Deleted(among) => among.map(|a| a.iter().copied().collect()),
                Expunge::Flagged(uids) => Some(uids.iter().copied().collect()),
                Expunge::Uids(_) => None,
            };
            // LIKE narrows the scan (LOWER: MariaDB compares this column case-sensitively);
            // the exact test is done here.
            let rows = sqlx::query(
                "SELECT id, uid, blob_path, size, flags FROM messages WHERE folder_id = ? AND LOWER(flags) LIKE ?",
            )
            .bind(folder_id)
            .bind("%deleted%")
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let uid: i64 = row.get("uid");
                let flags: String = row.get("flags");
                let deleted = flags
                    .split_whitespace()
                    .any(|f| f.eq_ignore_ascii_case("\\Deleted"));
                if deleted && among.as_ref().is_none_or(|a| a.contains(&uid)) {
                    out.push(candidate(&row));
                }
            }
        }
    }
    out.sort_unstable_by_key(|c| c.uid);
    Ok(out)
}

/// Which messages [`Store::expunge_where`] removes.
enum Expunge<'a> {
    Uids(&'a [i64]),
    /// Those flagged `\Deleted`, optionally only among these UIDs.
    Deleted(Option<&'a [i64]>),
    /// These UIDs, which the caller believes flagged `\Deleted`; each goes only if it is.
    Flagged(&'a [i64]),
}
