//! Delivery: a new message's blob first (durable), then its row, with a fresh UID and the
//! quota charged in the same transaction; the header section is cached with the row.
//!
//! UID allocation is the heart of replica safety. A delivery increments the folder's
//! `uidnext` and `highest_modseq` with an `UPDATE` as the first statement of its transaction,
//! which takes the row lock in MariaDB and the write lock in SQLite; the new message row is
//! inserted before commit. Two replicas delivering into the same folder therefore serialise
//! on that row and can never hand out the same UID, and a UID is never reused because
//! `uidnext` only grows. A `delivery_key` (queue id + recipient) with a unique index makes a
//! retried delivery a no-op instead of a duplicate.

use sqlx::Row;

use crate::blobs::bytes_owned::Part;
use crate::db::batch::{Arg, Batch};
use crate::db::write::WriteTx;
use crate::folders::{bump_folder, FolderInfo};
use crate::{Backend, Durability, Error, Result, Store};

/// Outcome of a delivery into a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub uid: i64,
    pub uidvalidity: i64,
    /// The folder's modseq this delivery committed (0 for a duplicate).
    pub modseq: i64,
    /// The same delivery key had already been stored: nothing new was written.
    pub duplicate: bool,
}

/// A message to store: its bytes (in parts), arrival time, initial flags and idempotency key.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub parts: Vec<Part>,
    pub internal_date: i64,
    pub flags: Vec<String>,
    pub delivery_key: Option<String>,
}

impl NewMessage {
    pub fn size(&self) -> i64 {
        self.parts.iter().map(|p| p.as_slice().len() as i64).sum()
    }

    /// The header section (through the blank line that ends it), for the header cache;
    /// `None` if it is longer than [`HEADER_CACHE_MAX`]. A message without a body is all
    /// header.
    pub fn header(&self) -> Option<Vec<u8>> {
        let mut header = Vec::new();
        for part in &self.parts {
            // Never more than the cache takes (plus the blank line): a 50 MB body is not copied.
            let room = (HEADER_CACHE_MAX + 4).saturating_sub(header.len());
            let bytes = &part.as_slice()[..part.as_slice().len().min(room)];
            // Search from a little before the join, where "\r\n\r\n" may straddle parts.
            let from = header.len().saturating_sub(3);
            header.extend_from_slice(bytes);
            if let Some(at) = find_blank_line(&header[from..]) {
                header.truncate(from + at + 4);
                return (header.len() <= HEADER_CACHE_MAX).then_some(header);
            }
            if header.len() > HEADER_CACHE_MAX {
                return None;
            }
        }
        Some(header)
    }
}

/// Longest header section kept in the header cache; longer ones are read from the blob.
pub const HEADER_CACHE_MAX: usize = 16 * 1024;

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The message row a delivery inserts, once its blob is written.
struct NewRow<'a> {
    blob_path: &'a str,
    size: i64,
    header: Option<Vec<u8>>,
    flags: &'a [String],
    internal_date: i64,
    delivery_key: Option<&'a str>,
}

impl Store {
    /// Stores a message into `folder` of the mailbox `address`: blob first (durable), then the
    /// metadata row in one transaction that allocates the UID and charges the quota.
    pub async fn deliver(
        &self,
        address: &str,
        folder: &str,
        message: NewMessage,
    ) -> Result<Delivered> {
        let (mailbox, folder_info) = self.mailbox_and_folder(address, folder).await?;
        let size = message.size();
        // A retried delivery (same key) is normally caught here without touching the
        // volume; a race between two replicas is caught by the unique index below.
        if let Some(key) = &message.delivery_key {
            if let Some(uid) = self.uid_for_delivery_key(folder_info.id, key).await? {
                return Ok(Delivered {
                    uid,
                    uidvalidity: folder_info.uidvalidity,
                    modseq: 0,
                    duplicate: true,
                });
            }
        }
        if mailbox.quota_bytes > 0 && mailbox.used_bytes + size > mailbox.quota_bytes {
            return Err(over_quota(&mailbox, size));
        }
        let target = Target {
            mailbox_id: mailbox.id,
            home: &mailbox.home,
            folder: &folder_info,
        };
        match self.deliver_to(&target, message).await {
            Err(Refused::OverQuota) => Err(over_quota(&mailbox, size)),
            Err(Refused::Store(e)) => Err(e),
            Ok(delivered) => Ok(delivered),
        }
    }

    /// [`Store::deliver`] into a folder the caller has already looked up: an IMAP session
    /// appending to the folder it has selected saves the lookup. What the caller knows may
    /// be stale, which is harmless: the quota and the folder's existence are checked by
    /// the inserting transaction, and a refusal reports the mailbox's current usage.
    pub async fn deliver_known(
        &self,
        mailbox_id: i64,
        home: &str,
        folder: &FolderInfo,
        message: NewMessage,
    ) -> Result<Delivered> {
        let size = message.size();
        let target = Target {
            mailbox_id,
            home,
            folder,
        };
        match self.deliver_to(&target, message).await {
            Err(Refused::OverQuota) => Err(self.over_quota_of(mailbox_id, size).await?),
            Err(Refused::Store(e)) => Err(e),
            Ok(delivered) => Ok(delivered),
        }
    }

    /// Stores several messages into a folder as one: every blob first (durable), then all
    /// rows in one transaction, so either all of them are in the folder or none is (IMAP
    /// MULTIAPPEND, RFC 3502 §6.3.11: "If the server is unable to append all of the
    /// messages, then it MUST not append any of them"). UIDs ascend in the given order.
    pub async fn deliver_all_known(
        &self,
        mailbox_id: i64,
        home: &str,
        folder: &FolderInfo,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Delivered>> {
        let started = std::time::Instant::now();
        let mut rows = Vec::with_capacity(messages.len());
        let mut blobs = Vec::with_capacity(messages.len());
        let mut written = Ok(());
        for message in messages {
            let (size, header) = (message.size(), message.header());
            match self.blobs.write(home, message.parts).await {
                Ok(path) => {
                    blobs.push(path.clone());
                    rows.push((path, size, header, message.flags, message.internal_date));
                }
                Err(e) => {
                    written = Err(e);
                    break;
                }
            }
        }
        let backend = self.backend;
        let inserted = match written {
            Err(e) => Err(InsertError::Store(e)),
            Ok(()) => {
                self.write(Durability::Synced, async |tx| {
                    let mut delivered = Vec::with_capacity(rows.len());
                    for (blob_path, size, header, flags, internal_date) in &rows {
                        let row = NewRow {
                            blob_path,
                            size: *size,
                            header: header.clone(),
                            flags,
                            internal_date: *internal_date,
                            delivery_key: None,
                        };
                        delivered.push(
                            Self::insert_message_in(tx, backend, mailbox_id, folder, &row).await?,
                        );
                    }
                    tx.commit_in_place().await?;
                    Ok::<_, InsertError>(delivered)
                })
                .await
            }
        };
        postbay_telemetry::store_latency("deliver", started.elapsed());
        match inserted {
            Ok(delivered) => {
                if let Some(last) = delivered.last() {
                    self.changes.committed(folder.id, last.modseq);
                }
                Ok(delivered)
            }
            Err(e) => {
                // Nothing committed: none of the blobs is reachable.
                for blob_path in &blobs {
                    if let Err(cleanup) = self.blobs.remove(blob_path).await {
                        tracing::warn!(%cleanup, blob_path, "could not remove orphan blob");
                    }
                }
                match e {
                    InsertError::OverQuota => {
                        let size: i64 = rows.iter().map(|r| r.1).sum();
                        Err(self.over_quota_of(mailbox_id, size).await?)
                    }
                    InsertError::Store(e) => Err(e),
                    // Appends carry no delivery key, so no row can collide on one.
                    InsertError::DuplicateKey => Err(Error::Database(sqlx::Error::Protocol(
                        "duplicate delivery key on a keyless append".into(),
                    ))),
                }
            }
        }
    }

    /// The over-quota error for a mailbox known by id, with its usage as it is now.
    async fn over_quota_of(&self, mailbox_id: i64, size: i64) -> Result<Error> {
        let row = sqlx::query(
            "SELECT id, address, domain, local_part, password_hash, quota_bytes, used_bytes, \
             enabled, home, owner FROM mailboxes WHERE id = ?",
        )
        .bind(mailbox_id)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or_else(|| Error::NoSuchMailbox(format!("mailbox #{mailbox_id}")))?;
        Ok(over_quota(&crate::directory::mailbox_from_row(&row), size))
    }

    /// Writes the blob, then the row; removes the blob again if the row is refused.
    /// Times [`Store::write_message`] for `postbay_store_seconds{operation="deliver"}`.
    async fn deliver_to(
        &self,
        target: &Target<'_>,
        message: NewMessage,
    ) -> std::result::Result<Delivered, Refused> {
        let started = std::time::Instant::now();
        let delivered = self.write_message(target, message).await;
        postbay_telemetry::store_latency("deliver", started.elapsed());
        delivered
    }

    /// Writes the blob (fsync'd), then its rows in one transaction.
    async fn write_message(
        &self,
        target: &Target<'_>,
        message: NewMessage,
    ) -> std::result::Result<Delivered, Refused> {
        let (mailbox_id, folder_info) = (target.mailbox_id, target.folder);
        let size = message.size();
        let header = message.header();
        let blob_path = self.blobs.write(target.home, message.parts).await?;
        tracing::debug!(
            blob_path,
            key = message.delivery_key.as_deref(),
            "blob written"
        );
        match self
            .insert_message_row(
                mailbox_id,
                folder_info,
                &NewRow {
                    blob_path: &blob_path,
                    size,
                    header,
                    flags: &message.flags,
                    internal_date: message.internal_date,
                    delivery_key: message.delivery_key.as_deref(),
                },
            )
            .await
        {
            Ok(delivered) => Ok(delivered),
            Err(e) => {
                // The row never committed: the blob is unreachable, remove it.
                if let Err(cleanup) = self.blobs.remove(&blob_path).await {
                    tracing::warn!(%cleanup, blob_path, "could not remove orphan blob");
                }
                match (e, message.delivery_key) {
                    (InsertError::DuplicateKey, Some(key)) => {
                        let uid = self
                            .uid_for_delivery_key(folder_info.id, &key)
                            .await?
                            .unwrap_or(0);
                        Ok(Delivered {
                            uid,
                            uidvalidity: folder_info.uidvalidity,
                            modseq: 0,
                            duplicate: true,
                        })
                    }
                    (InsertError::DuplicateKey, None) => unreachable!("no key, no duplicate"),
                    (InsertError::OverQuota, _) => Err(Refused::OverQuota),
                    (InsertError::Store(e), _) => Err(Refused::Store(e)),
                }
            }
        }
    }

    /// The mailbox row and one of its folders in a single query (the delivery hot path).
    async fn mailbox_and_folder(
        &self,
        address: &str,
        folder: &str,
    ) -> Result<(crate::MailboxRow, FolderInfo)> {
        let address = crate::directory::canonical_address(address);
        let row = sqlx::query(
            "SELECT b.id, b.address, b.domain, b.local_part, b.password_hash, b.quota_bytes, b.used_bytes, b.enabled, \
             b.home, b.owner, f.id AS f_id, f.name AS f_name, f.special_use AS f_special_use, f.recent_uid AS f_recent_uid, \
             f.uidvalidity AS f_uidvalidity, f.uidnext AS f_uidnext, f.highest_modseq AS f_highest_modseq \
             FROM mailboxes b LEFT JOIN folders f ON f.mailbox_id = b.id AND f.name = ? WHERE b.address = ?",
        )
        .bind(folder)
        .bind(&address)
        .fetch_optional(&mut *self.reader().await?)
        .await?
        .ok_or_else(|| Error::NoSuchMailbox(address.clone()))?;
        let mailbox = crate::directory::mailbox_from_row(&row);
        let folder_id: Option<i64> = row.get("f_id");
        let Some(folder_id) = folder_id else {
            return Err(Error::NoSuchFolder(folder.to_string()));
        };
        let folder = FolderInfo {
            id: folder_id,
            mailbox_id: mailbox.id,
            name: row.get("f_name"),
            special_use: row.get("f_special_use"),
            uidvalidity: row.get("f_uidvalidity"),
            uidnext: row.get("f_uidnext"),
            highest_modseq: row.get("f_highest_modseq"),
            recent_uid: row.get("f_recent_uid"),
        };
        Ok((mailbox, folder))
    }

    async fn uid_for_delivery_key(&self, folder_id: i64, key: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT uid FROM messages WHERE folder_id = ? AND delivery_key = ?")
            .bind(folder_id)
            .bind(key)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.map(|r| r.get("uid")))
    }

    async fn insert_message_row(
        &self,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let backend = self.backend;
        if backend == Backend::Sqlite {
            let delivered = self.insert_message_batched(mailbox_id, folder, row).await?;
            self.changes.committed(folder.id, delivered.modseq);
            return Ok(delivered);
        }
        let delivered = self
            .write(Durability::Synced, async |tx| {
                let delivered =
                    Self::insert_message_in(tx, backend, mailbox_id, folder, row).await?;
                tx.commit_in_place().await?;
                Ok::<_, InsertError>(delivered)
            })
            .await?;
        self.changes.committed(folder.id, delivered.modseq);
        Ok(delivered)
    }

    /// [`Store::insert_message_in`] as one SQLite batch: charge the quota (only if the
    /// folder exists), then reserve the UID and modseq, then insert, each step only if the
    /// one before changed its row. Nothing applies when the quota is exceeded.
    async fn insert_message_batched(
        &self,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let mut batch = Batch::transaction();
        batch.push(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE id = ? \
             AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes) \
             AND EXISTS (SELECT 1 FROM folders WHERE id = ? AND name = ?)",
            [
                Arg::Int(row.size),
                Arg::Int(mailbox_id),
                Arg::Int(row.size),
                Arg::Int(folder.id),
                Arg::Text(folder.name.clone()),
            ],
        );
        batch.push(
            "UPDATE folders SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1 \
             WHERE id = ? AND changes() = 1",
            [Arg::Int(folder.id)],
        );
        batch.push(
            "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, header, internal_date, flags, delivery_key) \
             SELECT id, uidnext - 1, highest_modseq, ?, ?, ?, ?, ?, ? FROM folders WHERE id = ? AND changes() = 1 \
             RETURNING uid, modseq, (SELECT uidvalidity FROM folders WHERE id = ?) AS uidvalidity",
            [
                Arg::Text(row.blob_path.to_string()),
                Arg::Int(row.size),
                Arg::OptBlob(row.header.clone()),
                Arg::Int(row.internal_date),
                Arg::Text(row.flags.join(" ")),
                Arg::OptText(row.delivery_key.map(str::to_string)),
                Arg::Int(folder.id),
                Arg::Int(folder.id),
            ],
        );
        let rows = match self.write_batch(Durability::Synced, &batch.commit()).await {
            Ok(rows) => rows,
            Err(Error::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                return Err(InsertError::DuplicateKey)
            }
            Err(e) => return Err(e.into()),
        };
        let Some(row) = rows.first() else {
            // Gone, or renamed since the caller looked (it may then look again by name).
            return Err(match self.folder_by_id(folder.id).await? {
                Some(f) if f.name == folder.name => InsertError::OverQuota,
                _ => InsertError::Store(Error::NoSuchFolder(folder.name.clone())),
            });
        };
        Ok(Delivered {
            uid: row.get("uid"),
            uidvalidity: row.get("uidvalidity"),
            modseq: row.get("modseq"),
            duplicate: false,
        })
    }

    async fn insert_message_in(
        tx: &mut WriteTx,
        backend: Backend,
        mailbox_id: i64,
        folder: &FolderInfo,
        row: &NewRow<'_>,
    ) -> Result<Delivered, InsertError> {
        let bumped = bump_folder(tx, backend, folder.id, 1).await?;
        if bumped.name != folder.name {
            // Renamed since the caller looked (it may then look again by name).
            return Err(InsertError::Store(Error::NoSuchFolder(folder.name.clone())));
        }
        let uid = bumped.uidnext - 1;
        let modseq = bumped.modseq;
        let uidvalidity = bumped.uidvalidity;
        let charged = sqlx::query(
            "UPDATE mailboxes SET used_bytes = used_bytes + ? WHERE id = ? AND (quota_bytes = 0 OR used_bytes + ? <= quota_bytes)",
        )
        .bind(row.size)
        .bind(mailbox_id)
        .bind(row.size)
        .execute(&mut **tx)
        .await
        .map_err(Error::from)?;
        if charged.rows_affected() == 0 {
            return Err(InsertError::OverQuota);
        }
        let inserted = sqlx::query(
            "INSERT INTO messages (folder_id, uid, modseq, blob_path, size, header, internal_date, flags, delivery_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(folder.id)
        .bind(uid)
        .bind(modseq)
        .bind(row.blob_path)
        .bind(row.size)
        .bind(row.header.as_deref())
        .bind(row.internal_date)
        .bind(row.flags.join(" "))
        .bind(row.delivery_key)
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(InsertError::DuplicateKey)
            }
            Err(e) => return Err(InsertError::Store(e.into())),
        }
        Ok(Delivered {
            uid,
            uidvalidity,
            modseq,
            duplicate: false,
        })
    }
}

/// Where a new message goes: the mailbox (for its quota and blob directory) and folder.
struct Target<'a> {
    mailbox_id: i64,
    home: &'a str,
    folder: &'a FolderInfo,
}

/// Why a new message was not stored; the caller words the quota refusal.
enum Refused {
    OverQuota,
    Store(Error),
}

impl From<Error> for Refused {
    fn from(e: Error) -> Refused {
        Refused::Store(e)
    }
}

enum InsertError {
    DuplicateKey,
    OverQuota,
    Store(Error),
}

impl From<Error> for InsertError {
    fn from(e: Error) -> Self {
        InsertError::Store(e)
    }
}

fn over_quota(mailbox: &crate::MailboxRow, size: i64) -> Error {
    Error::OverQuota {
        address: mailbox.address.clone(),
        used: mailbox.used_bytes,
        size,
        quota: mailbox.quota_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::bytes_owned::Part;

    fn message(parts: &[&[u8]]) -> NewMessage {
        NewMessage {
            parts: parts.iter().map(|p| Part::Owned(p.to_vec())).collect(),
            internal_date: 0,
            flags: Vec::new(),
            delivery_key: None,
        }
    }

    #[test]
    fn header_is_the_section_through_the_blank_line() {
        let m = message(&[b"Subject: a\r\nTo: b\r\n\r\nbody\r\n\r\nmore\r\n"]);
        assert_eq!(
            m.header().as_deref(),
            Some(&b"Subject: a\r\nTo: b\r\n\r\n"[..])
        );
        // The blank line split across parts (a Received line prepended, then the data).
        let m = message(&[b"Received: x\r\n", b"Subject: a\r\n\r", b"\nbody\r\n"]);
        assert_eq!(
            m.header().as_deref(),
            Some(&b"Received: x\r\nSubject: a\r\n\r\n"[..])
        );
        // No body: all header.
        let m = message(&[b"Subject: a\r\n"]);
        assert_eq!(m.header().as_deref(), Some(&b"Subject: a\r\n"[..]));
        // Too long for the cache: none, so it is read from the blob.
        let long = format!("X-Long: {}\r\n\r\nbody", "y".repeat(HEADER_CACHE_MAX));
        assert!(message(&[long.as_bytes()]).header().is_none());
        let long_body = format!("Subject: a\r\n\r\n{}", "z".repeat(2 * HEADER_CACHE_MAX));
        assert_eq!(
            message(&[long_body.as_bytes()]).header().as_deref(),
            Some(&b"Subject: a\r\n\r\n"[..])
        );
    }
}
