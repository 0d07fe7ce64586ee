//! Reading message rows: a folder's snapshot (its row and all its messages), UID ranges
//! (with or without the cached header), what changed since a modseq, and counts.

use sqlx::Row;

use crate::folders::{folder_from_row, FolderInfo, FOLDER_COLUMNS};
use crate::{Result, Store};

pub(super) const MESSAGE_COLUMNS: &str = "id, uid, modseq, blob_path, size, internal_date, flags";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub id: i64,
    pub uid: i64,
    pub modseq: i64,
    pub blob_path: String,
    pub size: i64,
    pub internal_date: i64,
    pub flags: Vec<String>,
}

/// What changed in a folder between two modseqs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderChanges {
    /// Messages added or whose flags changed, in UID order, as they are now.
    pub changed: Vec<MessageMeta>,
    /// UIDs removed.
    pub expunged: Vec<i64>,
}

impl Store {
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

    /// UIDs expunged from a folder with `modseq > since`, ascending: what QRESYNC's
    /// `VANISHED (EARLIER)` reports (RFC 7162 §3.2.5.1, §3.2.6). The `expunged` table keeps
    /// every expunge of a live folder, so the answer is complete for any `since`.
    pub async fn expunged_since(&self, folder_id: i64, since: i64) -> Result<Vec<i64>> {
        let rows =
            sqlx::query("SELECT uid FROM expunged WHERE folder_id = ? AND modseq > ? ORDER BY uid")
                .bind(folder_id)
                .bind(since)
                .fetch_all(&mut *self.reader().await?)
                .await?;
        Ok(rows.iter().map(|r| r.get("uid")).collect())
    }

    /// All messages of a folder in UID order.
    pub async fn messages(&self, folder_id: i64) -> Result<Vec<MessageMeta>> {
        let rows = sqlx::query(
            "SELECT id, uid, modseq, blob_path, size, internal_date, flags FROM messages WHERE folder_id = ? ORDER BY uid",
        )
        .bind(folder_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows.iter().map(message_from_row).collect())
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

    /// Whether the message `uid` is (still) in the folder.
    pub async fn has_message(&self, folder_id: i64, uid: i64) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS present FROM messages WHERE folder_id = ? AND uid = ?")
            .bind(folder_id)
            .bind(uid)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.is_some())
    }

    pub(super) async fn metas_for_uids(
        &self,
        folder_id: i64,
        uids: &[i64],
    ) -> Result<Vec<MessageMeta>> {
        let mut out = Vec::new();
        for (first, last) in uid_ranges(uids) {
            out.extend(self.messages_in_uid_range(folder_id, first, last).await?);
        }
        Ok(out)
    }

    /// Number of messages in a mailbox's folder; a cheap check for tests and benchmarks.
    pub async fn count_messages(&self, address: &str, folder: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages m JOIN folders f ON f.id = m.folder_id \
             JOIN mailboxes b ON b.id = f.mailbox_id WHERE b.address = ? AND f.name = ?",
        )
        .bind(crate::directory::canonical_address(address))
        .bind(folder)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(row.get("n"))
    }

    /// Total number of stored messages across all mailboxes.
    pub async fn count_all_messages(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM messages")
            .fetch_one(&mut *self.reader().await?)
            .await?;
        Ok(row.get("n"))
    }
}

pub(crate) fn message_from_row(r: &sqlx::any::AnyRow) -> MessageMeta {
    let flags: String = r.get("flags");
    MessageMeta {
        id: r.get("id"),
        uid: r.get("uid"),
        modseq: r.get("modseq"),
        blob_path: r.get("blob_path"),
        size: r.get("size"),
        internal_date: r.get("internal_date"),
        flags: flags.split_whitespace().map(str::to_string).collect(),
    }
}

/// Compresses UIDs into inclusive ranges of consecutive values, so large sets cost few
/// queries.
pub(super) fn uid_ranges(uids: &[i64]) -> Vec<(i64, i64)> {
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
