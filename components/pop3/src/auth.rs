//! Checking a user name and password against the directory.
//!
//! Hash verification (Argon2id at 64 MiB, SHA-crypt's 5000 rounds) is CPU- and memory-heavy,
//! so it runs on the blocking pool and at most one verification per core runs at a time: a
//! burst of logins queues instead of exhausting memory or starving the async workers.

use std::sync::Arc;

use postbay_store::{MailboxRow, Store};
use tokio::sync::Semaphore;

use crate::command::Secret;

/// What the directory says about a login.
#[derive(Debug)]
pub enum Verdict {
    Accepted(MailboxRow),
    /// Wrong password, unknown or disabled user; `reason` is for the log only, the client
    /// never learns which.
    Rejected {
        reason: &'static str,
    },
    /// The check itself failed (database down, unreadable hash): not the user's fault.
    Unavailable {
        reason: String,
    },
}

#[derive(Debug)]
pub struct Verifier {
    slots: Arc<Semaphore>,
}

impl Default for Verifier {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Verifier {
            slots: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Verifier {
    pub async fn check(&self, store: &Store, user: &str, password: &Secret) -> Verdict {
        let mailbox = match store.mailbox(user).await {
            Ok(Some(mailbox)) => mailbox,
            Ok(None) => {
                return Verdict::Rejected {
                    reason: "no such mailbox",
                }
            }
            Err(e) => {
                return Verdict::Unavailable {
                    reason: format!("directory lookup failed: {e}"),
                }
            }
        };
        if !mailbox.enabled {
            return Verdict::Rejected {
                reason: "mailbox disabled",
            };
        }
        let Ok(_slot) = self.slots.acquire().await else {
            return Verdict::Unavailable {
                reason: "verifier closed".into(),
            };
        };
        let stored = mailbox.password_hash.clone();
        let password = password.clone();
        let verified =
            tokio::task::spawn_blocking(move || postbay_passwd::verify(password.expose(), &stored))
                .await;
        match verified {
            Ok(Ok(true)) => Verdict::Accepted(mailbox),
            Ok(Ok(false)) => Verdict::Rejected {
                reason: "wrong password",
            },
            // A hash we cannot read is a broken directory entry: say so loudly in the log
            // (PasswdError never carries the hash) instead of passing it off as a wrong password.
            Ok(Err(e)) => Verdict::Unavailable {
                reason: format!("stored password of {} is unusable: {e}", mailbox.address),
            },
            Err(e) => Verdict::Unavailable {
                reason: format!("password check task failed: {e}"),
            },
        }
    }
}
