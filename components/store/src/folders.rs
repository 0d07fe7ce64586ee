//! Folders of a mailbox: create, look up, list, rename, delete, count, and the
//! counters (UIDNEXT, HIGHESTMODSEQ, UIDVALIDITY) every change to a folder moves first.

use sqlx::Row;

use crate::db::write::WriteTx;
use crate::{now_unix, Backend, Durability, Error, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub id: i64,
    pub mailbox_id: i64,
    pub name: String,
    pub special_use: Option<String>,
    pub uidvalidity: i64,
    pub uidnext: i64,
    pub highest_modseq: i64,
    /// Messages above this UID are new to every session: IMAP4rev1's `\Recent`.
    pub recent_uid: i64,
}

/// Counters for STATUS (RFC 9051 §6.3.11).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderStats {
    pub messages: i64,
    pub unseen: i64,
    pub deleted: i64,
    pub size: i64,
}

/// Folders every new mailbox gets, with their RFC 6154 special-use attribute.
pub const DEFAULT_FOLDERS: &[(&str, Option<&str>)] = &[
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

pub(crate) const FOLDER_COLUMNS: &str =
    "id, mailbox_id, name, special_use, uidvalidity, uidnext, highest_modseq, recent_uid";

/// A folder's counters right after [`bump_folder`] moved them, read under its lock.
pub(crate) struct Bumped {
    pub uidnext: i64,
    pub modseq: i64,
    pub uidvalidity: i64,
    pub mailbox_id: i64,
    pub name: String,
}

/// The first statement of every transaction that changes a folder: reserves `new_uids` UIDs
/// and one modseq, which takes the folder's row lock (MariaDB) or the write lock (SQLite)
/// before anything is read, and returns the counters after the change. SQLite answers in
/// the same statement (`RETURNING`); MariaDB, which has no `UPDATE … RETURNING`, reads the
/// row it now holds locked.
pub(crate) async fn bump_folder(
    tx: &mut WriteTx,
    backend: Backend,
    folder_id: i64,
    new_uids: i64,
) -> Result<Bumped> {
    const BUMP: &str =
        "UPDATE folders SET uidnext = uidnext + ?, highest_modseq = highest_modseq + 1 WHERE id = ?";
    const COUNTERS: &str = "uidnext, highest_modseq, uidvalidity, mailbox_id, name";
    let row = match backend {
        Backend::Sqlite => {
            sqlx::query(&format!("{BUMP} RETURNING {COUNTERS}"))
                .bind(new_uids)
                .bind(folder_id)
                .fetch_optional(&mut **tx)
                .await?
        }
        Backend::MySql => {
            sqlx::query(BUMP)
                .bind(new_uids)
                .bind(folder_id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(&format!("SELECT {COUNTERS} FROM folders WHERE id = ?"))
                .bind(folder_id)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    let row = row.ok_or_else(|| Error::NoSuchFolder(folder_id.to_string()))?;
    Ok(Bumped {
        uidnext: row.get("uidnext"),
        modseq: row.get("highest_modseq"),
        uidvalidity: row.get("uidvalidity"),
        mailbox_id: row.get("mailbox_id"),
        name: row.get("name"),
    })
}

impl Store {
    /// RFC 3501 §2.3.2: makes the messages up to `upto` not new for anyone else, and returns
    /// the UIDs `(after, upto]` this caller is the first to see (its `\Recent` ones), or
    /// `None` when another session saw them all first. A compare-and-set on `recent_uid`, so
    /// two sessions on two replicas never both get a message as \Recent.
    pub async fn claim_recent(&self, folder_id: i64, upto: i64) -> Result<Option<(i64, i64)>> {
        loop {
            let seen: i64 = sqlx::query("SELECT recent_uid FROM folders WHERE id = ?")
                .bind(folder_id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| Error::NoSuchFolder(folder_id.to_string()))?
                .get("recent_uid");
            if seen >= upto {
                return Ok(None);
            }
            let done =
                sqlx::query("UPDATE folders SET recent_uid = ? WHERE id = ? AND recent_uid = ?")
                    .bind(upto)
                    .bind(folder_id)
                    .bind(seen)
                    .execute(&self.pool)
                    .await?;
            if done.rows_affected() == 1 {
                return Ok(Some((seen, upto)));
            }
        }
    }

    /// Messages no session has seen yet: STATUS (RECENT) of a folder not selected.
    pub async fn recent_count(&self, folder_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages m JOIN folders f ON f.id = m.folder_id \
             WHERE f.id = ? AND m.uid > f.recent_uid",
        )
        .bind(folder_id)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(row.get("n"))
    }

    pub(crate) async fn ensure_default_folders(&self, mailbox_id: i64) -> Result<()> {
        for (name, special_use) in DEFAULT_FOLDERS {
            if self.folder(mailbox_id, name).await?.is_none() {
                // A new mailbox's folders start subscribed; CREATE's do not.
                match self.create_folder(mailbox_id, name, *special_use).await {
                    Ok(_) => self.subscribe(mailbox_id, name).await?,
                    Err(Error::FolderExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    pub async fn create_folder(
        &self,
        mailbox_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<FolderInfo> {
        let mut tx = self.begin_write(Durability::Synced).await?;
        let version = crate::changes::bump_list_version(&mut tx, mailbox_id).await?;
        let result = sqlx::query(
            "INSERT INTO folders (mailbox_id, name, special_use, uidvalidity, uidnext, highest_modseq) \
             VALUES (?, ?, ?, ?, 1, 1)",
        )
        .bind(mailbox_id)
        .bind(name)
        .bind(special_use)
        .bind(now_unix())
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::FolderExists(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.changes.list_committed(mailbox_id, version);
        self.folder(mailbox_id, name)
            .await?
            .ok_or_else(|| Error::NoSuchFolder(name.to_string()))
    }

    pub async fn folder(&self, mailbox_id: i64, name: &str) -> Result<Option<FolderInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? AND name = ?"
        ))
        .bind(mailbox_id)
        .bind(name)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| folder_from_row(&r)))
    }

    pub async fn folders(&self, mailbox_id: i64) -> Result<Vec<FolderInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? ORDER BY name"
        ))
        .bind(mailbox_id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        Ok(rows.iter().map(folder_from_row).collect())
    }

    pub async fn folder_by_id(&self, folder_id: i64) -> Result<Option<FolderInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?"
        ))
        .bind(folder_id)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|r| folder_from_row(&r)))
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
        let version = crate::changes::bump_list_version(&mut tx, mailbox_id).await?;
        let inserted = sqlx::query(
            "INSERT INTO folders (mailbox_id, name, special_use, uidvalidity, uidnext, highest_modseq) \
             VALUES (?, ?, ?, ?, 1, 1)",
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
        self.changes.list_committed(mailbox_id, version);
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
        let version = crate::changes::bump_list_version(&mut tx, folder.mailbox_id).await?;
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
        self.changes.list_committed(folder.mailbox_id, version);
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
        crate::subscriptions::rename_subscriptions(&mut tx, mailbox_id, from, to, delimiter)
            .await?;
        let version = crate::changes::bump_list_version(&mut tx, mailbox_id).await?;
        tx.commit().await?;
        self.changes.list_committed(mailbox_id, version);
        Ok(())
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

pub(crate) fn folder_from_row(r: &sqlx::any::AnyRow) -> FolderInfo {
    FolderInfo {
        id: r.get("id"),
        mailbox_id: r.get("mailbox_id"),
        name: r.get("name"),
        special_use: r.get("special_use"),
        uidvalidity: r.get("uidvalidity"),
        uidnext: r.get("uidnext"),
        highest_modseq: r.get("highest_modseq"),
        recent_uid: r.get("recent_uid"),
    }
}
