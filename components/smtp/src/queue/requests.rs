//! Admin requests to a queue (`postbay queue retry|delete|bounce`): a file
//! `requests/<id>.<action>` (or `requests/all.retry`) in the queue's directory. Only the
//! replica that owns the queue touches its messages, so the command never races a delivery
//! in flight; the runner carries a request out at its next scan and removes the file, and
//! a request for a queue whose owner is down waits for whoever runs it next (the owner
//! restarting, or a replica adopting it).

use std::path::{Path, PathBuf};

use super::QueueError;

/// What an admin asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Try at once, whatever the retry schedule says.
    Retry,
    /// Remove without delivering and without a bounce.
    Delete,
    /// Fail every recipient left: the sender gets a DSN.
    Bounce,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Delete => "delete",
            Action::Bounce => "bounce",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        match s {
            "retry" => Some(Action::Retry),
            "delete" => Some(Action::Delete),
            "bounce" => Some(Action::Bounce),
            _ => None,
        }
    }
}

/// One pending request; `id` is `None` for "every message".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Option<String>,
    pub action: Action,
    pub path: PathBuf,
}

/// A queue id as [`super::Queue::new_id`] makes them (ULID: Crockford base32), so a request
/// file name can never point outside the directory.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn dir_of(queue_dir: &Path) -> PathBuf {
    queue_dir.join("requests")
}

/// Files a request (durably) in the queue directory `queue_dir`; returns its path.
pub fn file(queue_dir: &Path, id: Option<&str>, action: Action) -> Result<PathBuf, QueueError> {
    let name = match id {
        Some(id) if valid_id(id) => id,
        Some(id) => return Err(QueueError::BadRequest(format!("{id:?} is not a queue id"))),
        None if action == Action::Retry => "all",
        None => {
            return Err(QueueError::BadRequest(format!(
                "{} needs a queue id",
                action.name()
            )))
        }
    };
    let dir = dir_of(queue_dir);
    postbay_store::fs::create_dir_durably(&dir)?;
    let path = dir.join(format!("{name}.{}", action.name()));
    postbay_store::fs::write_file_durably(&path, &[b""])?;
    Ok(path)
}

/// The pending requests of the queue in `queue_dir`, oldest id first.
pub fn pending(queue_dir: &Path) -> Vec<Request> {
    let Ok(entries) = std::fs::read_dir(dir_of(queue_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<Request> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (id, action) = name.rsplit_once('.')?;
            let action = Action::parse(action)?;
            let id = match id {
                "all" if action == Action::Retry => None,
                id if valid_id(id) => Some(id.to_string()),
                _ => return None,
            };
            Some(Request {
                id,
                action,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_refuse_paths() {
        let dir = tempfile::tempdir().unwrap();
        file(dir.path(), Some("01JABC"), Action::Bounce).unwrap();
        file(dir.path(), None, Action::Retry).unwrap();
        assert!(file(dir.path(), Some("../x"), Action::Delete).is_err());
        assert!(file(dir.path(), None, Action::Delete).is_err());
        std::fs::write(dir.path().join("requests/junk.txt"), b"").unwrap();
        let got: Vec<_> = pending(dir.path())
            .into_iter()
            .map(|r| (r.id, r.action))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, Action::Retry),
                (Some("01JABC".into()), Action::Bounce)
            ]
        );
    }
}
