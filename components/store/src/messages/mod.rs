//! Messages of a folder: delivery ([`deliver`]), flag changes ([`flags`]), expunge
//! ([`expunge`]), COPY and MOVE ([`copy`]) and reading their rows ([`read`]).
//!
//! Every write transaction starts with an `UPDATE` so it takes the row lock (MariaDB) or the
//! write lock (SQLite) before it reads anything: a read-then-upgrade transaction could fail
//! with a stale snapshot under SQLite WAL and would race under MariaDB. Locks are taken in a
//! fixed order — folder rows by ascending id, then the mailbox row — so two concurrent
//! operations never deadlock.

mod copy;
mod deliver;
mod expunge;
mod flags;
mod read;

pub use copy::Copied;
pub use deliver::{Delivered, NewMessage, HEADER_CACHE_MAX};
pub use expunge::Expunged;
pub use flags::{apply_flag_change, FlagChange, FlagState, FlagUpdate};
pub use read::{FolderChanges, MessageMeta};
