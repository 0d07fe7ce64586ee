//! Files made durable on the shared volume: written, fsync'd, and (where a reader finds them
//! by listing a directory) renamed into place with the directory fsync'd. Message blobs
//! and the SMTP queue both write through these.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `parts` to `path` so that it is complete and on stable storage when this returns:
/// temp file, fsync, rename, fsync of the directory (and of directories it had to create).
pub fn write_file_durably(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let dir = path.parent().expect("durable file path has a parent");
    create_dir_durably(dir)?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("durable file path has a utf-8 file name");
    let tmp = dir.join(format!(".tmp-{file_name}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(Error::io(&tmp))?;
    for part in parts {
        file.write_all(part).map_err(Error::io(&tmp))?;
    }
    file.sync_all().map_err(Error::io(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(Error::io(path))?;
    sync_dir(dir)
}

/// Creates `path`, which must not exist, with `parts` and fsyncs it. The directory is not
/// fsync'd: ext4, XFS and btrfs make a new file's directory entry durable with the file's
/// own fsync (same journal transaction, or ext4's parent sync without a journal), and NFS
/// creates synchronously. Directories it had to create are fsync'd in their parents.
/// For files that are read by listing a directory (the SMTP queue), where a half-written
/// file must never appear, use [`write_file_durably`].
pub fn create_file_durably(path: &Path, parts: &[&[u8]]) -> Result<()> {
    if let Some(dir) = path.parent() {
        create_dir_durably(dir)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(Error::io(path))?;
    for part in parts {
        file.write_all(part).map_err(Error::io(path))?;
    }
    file.sync_all().map_err(Error::io(path))
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entry list changed.
pub fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(dir)(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}
