//! The TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, UIDL, RETR, TOP, DELE, RSET, NOOP.

use std::io::ErrorKind;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, Step};
use crate::command::Command;
use crate::maildrop::Missing;
use crate::message::{Encoder, Extent};
use crate::response::{write_lines, Code, Status};

/// Message bytes queued before each flush while sending RETR or TOP.
const SEND_CHUNK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn transaction(&mut self, command: Command) -> Step {
        let Some(maildrop) = self.maildrop_mut() else {
            return Ok(None);
        };
        let (status, listing) = match command {
            Command::Stat => {
                let (count, size) = maildrop.stat();
                (Status::ok(format!("{count} {size}")), None)
            }
            Command::List(None) => {
                let (count, size) = maildrop.stat();
                let lines = maildrop.live().map(|(n, e)| format!("{n} {}", e.size));
                (
                    Status::ok(format!("{count} messages ({size} octets)")),
                    Some(lines.collect::<Vec<_>>()),
                )
            }
            Command::List(Some(n)) => match maildrop.get(n) {
                Ok(entry) => (Status::ok(format!("{n} {}", entry.size)), None),
                Err(missing) => (missing_status(n, missing), None),
            },
            Command::Uidl(None) => {
                let lines = maildrop
                    .live()
                    .map(|(n, e)| format!("{n} {}", maildrop.unique_id(e)));
                (
                    Status::ok("Unique-id listing follows"),
                    Some(lines.collect()),
                )
            }
            Command::Uidl(Some(n)) => match maildrop.get(n) {
                Ok(entry) => (
                    Status::ok(format!("{n} {}", maildrop.unique_id(entry))),
                    None,
                ),
                Err(missing) => (missing_status(n, missing), None),
            },
            Command::Dele(n) => match maildrop.delete(n) {
                Ok(()) => (Status::ok(format!("Message {n} deleted")), None),
                Err(missing) => (missing_status(n, missing), None),
            },
            Command::Rset => {
                maildrop.reset();
                let (count, size) = maildrop.stat();
                let text = format!("Maildrop has {count} messages ({size} octets)");
                (Status::ok(text), None)
            }
            Command::Noop => (Status::ok(""), None),
            Command::Retr(n) => return self.send_message(n, Extent::Whole).await,
            Command::Top { message, lines } => {
                return self.send_message(message, Extent::Top(lines)).await
            }
            // Authorization-state commands never get here (see `dispatch`).
            _ => return Ok(None),
        };
        self.reply(status);
        if let Some(lines) = listing {
            write_lines(self.wire.output_buffer(), lines);
        }
        Ok(None)
    }

    /// RETR and TOP: the message from its blob, CRLF-normalised and byte-stuffed.
    async fn send_message(&mut self, n: u32, extent: Extent) -> Step {
        let Some(maildrop) = self.maildrop_mut() else {
            return Ok(None);
        };
        let folder_id = maildrop.folder_id;
        let (path, size, uid) = match maildrop.get(n) {
            Ok(entry) => (entry.blob_path.clone(), entry.size, entry.uid),
            Err(missing) => {
                self.reply(missing_status(n, missing));
                return Ok(None);
            }
        };
        // An expunged message's blob outlives its row until the expunge is on disk: the
        // row says whether it is still there.
        let present = match self.ctx.store.has_message(folder_id, uid).await {
            Ok(present) => present,
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "could not look up message");
                self.reply(Status::err_code(
                    Code::SysTemp,
                    "Temporary failure, try again",
                ));
                return Ok(None);
            }
        };
        let read = if present {
            self.ctx.store.blobs().read(&path).await
        } else {
            Err(postbay_store::Error::Io {
                path: path.clone().into(),
                source: ErrorKind::NotFound.into(),
            })
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(postbay_store::Error::Io { source, .. })
                if source.kind() == ErrorKind::NotFound =>
            {
                // Expunged by another session (IMAP, another POP3 client) since login.
                self.reply(Status::err(format!(
                    "Message {n} was removed by another session"
                )));
                return Ok(None);
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, path, error = %e, "could not read message");
                self.reply(Status::err_code(
                    Code::SysTemp,
                    "Unable to read message, try again later",
                ));
                return Ok(None);
            }
        };
        match extent {
            Extent::Whole => {
                if let Some(maildrop) = self.maildrop_mut() {
                    maildrop.mark_retrieved(n);
                }
                self.reply(Status::ok(format!("{size} octets")));
            }
            Extent::Top(_) => self.reply(Status::ok("Top of message follows")),
        }
        let mut encoder = Encoder::new(&bytes, extent);
        while !encoder.fill(self.wire.output_buffer(), SEND_CHUNK) {
            self.flush().await?;
        }
        Ok(None)
    }
}

fn missing_status(n: u32, missing: Missing) -> Status {
    match missing {
        Missing::NoSuchMessage => Status::err(format!("No such message {n}")),
        Missing::Deleted => Status::err(format!("Message {n} already deleted")),
    }
}
