//! A session's protocol state, free of I/O: command handlers (in [`crate::op`]) read and
//! change it and append responses to [`Protocol::out`]; the [`crate::session`] loop moves
//! the bytes.

use std::net::IpAddr;
use std::sync::Arc;

use imap_codec::imap_types::response::Code;
use postbay_store::FolderInfo;

use crate::auth::User;
use crate::names;
use crate::response;
use crate::selected::{self, Selected, SyncMode, Synced};
use crate::ImapContext;

/// Extensions the client turned on with ENABLE (RFC 5161) or implicitly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Enabled {
    /// RFC 7162: MODSEQ in unsolicited FETCH responses.
    pub condstore: bool,
    /// RFC 7162 §3.2: VANISHED instead of EXPUNGE, SELECT (QRESYNC ...), UID FETCH ...
    /// (VANISHED). Implies `condstore`.
    pub qresync: bool,
    /// RFC 9051: UTF-8 mailbox names, ESEARCH answers, no \Recent.
    pub rev2: bool,
}

pub struct Protocol {
    pub ctx: Arc<ImapContext>,
    /// Responses not yet written to the client.
    pub out: Vec<u8>,
    pub peer: IpAddr,
    pub tls_active: bool,
    /// STARTTLS is possible (a TLS provider exists and TLS is not active yet).
    pub starttls_available: bool,
    pub user: Option<User>,
    pub selected: Option<Selected>,
    pub enabled: Enabled,
    pub auth_failures: u32,
    /// COMPRESS=DEFLATE is on.
    pub compressed: bool,
    /// The session's share of `ctx.compress_permits`, taken by COMPRESS, given back when
    /// the connection ends (dropped with the session).
    pub compress_permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// NOTIFY SET in force (RFC 5465 §3.1); boxed, as most sessions never use it.
    pub notify: Option<Box<crate::notify::NotifyState>>,
}

/// How a command ended, beyond its untagged responses.
#[derive(Debug)]
pub enum Outcome {
    /// Tagged OK with an optional response code.
    Ok(Option<Code<'static>>, String),
    /// LOGOUT: BYE, tagged OK, close.
    Logout,
    /// Tagged OK written; the session upgrades to TLS now.
    StartTls,
    /// Tagged OK written; DEFLATE both ways from the next byte (RFC 4978 §3).
    Compress,
    /// The session enters IDLE (RFC 2177) until DONE.
    Idle,
    /// AUTHENTICATE needs more client data.
    Authenticate(crate::op::auth::Sasl),
}

/// A command that did not succeed.
#[derive(Debug)]
pub enum OpError {
    /// Tagged BAD: the client sent something invalid.
    Bad(String),
    /// Tagged NO: valid but not possible.
    No(Option<Code<'static>>, String),
    /// The store failed; mapped to NO with a fitting code.
    Store(postbay_store::Error),
    /// Tell the client why and close the connection (e.g. the folder vanished).
    Close(String),
}

impl From<postbay_store::Error> for OpError {
    fn from(e: postbay_store::Error) -> Self {
        OpError::Store(e)
    }
}

pub type OpResult = Result<Outcome, OpError>;

pub fn ok(text: impl Into<String>) -> OpResult {
    Ok(Outcome::Ok(None, text.into()))
}

pub fn no(code: Option<&'static str>, text: impl Into<String>) -> OpError {
    OpError::No(code.map(response::code), text.into())
}

pub fn bad(text: impl Into<String>) -> OpError {
    OpError::Bad(text.into())
}

impl Protocol {
    pub fn new(ctx: Arc<ImapContext>, peer: IpAddr, tls_active: bool, starttls: bool) -> Self {
        Protocol {
            ctx,
            out: Vec::with_capacity(1024),
            peer,
            tls_active,
            starttls_available: starttls && !tls_active,
            user: None,
            selected: None,
            enabled: Enabled::default(),
            auth_failures: 0,
            compressed: false,
            compress_permit: None,
            notify: None,
        }
    }

    /// Turns CONDSTORE on for the session. RFC 7162 §3.1: the first CONDSTORE-enabling
    /// command issued with a mailbox selected also reports that mailbox's HIGHESTMODSEQ
    /// (SELECT/EXAMINE (CONDSTORE) report it themselves).
    pub fn enable_condstore(&mut self) {
        if self.enabled.condstore {
            return;
        }
        self.enabled.condstore = true;
        if let Some(sel) = &self.selected {
            let code = match std::num::NonZeroU64::new(sel.known_modseq.max(0) as u64) {
                Some(m) => Code::HighestModSeq(m),
                None => Code::NoModSeq,
            };
            response::untagged(
                &mut self.out,
                imap_codec::imap_types::response::StatusKind::Ok,
                Some(code),
                "Highest",
            );
        }
    }

    /// Turns QRESYNC on (ENABLE QRESYNC, RFC 7162 §3.2.3), and CONDSTORE with it.
    pub fn enable_qresync(&mut self) {
        self.enable_condstore();
        self.enabled.qresync = true;
    }

    pub fn user(&self) -> Result<&User, OpError> {
        self.user
            .as_ref()
            .ok_or_else(|| bad("Not authenticated: LOGIN or AUTHENTICATE first"))
    }

    pub fn selected_mut(&mut self) -> Result<&mut Selected, OpError> {
        self.selected
            .as_mut()
            .ok_or_else(|| bad("No mailbox selected: SELECT or EXAMINE first"))
    }

    /// Whether mailbox names are exchanged as UTF-8 rather than modified UTF-7.
    pub fn utf8_names(&self) -> bool {
        self.enabled.rev2
    }

    /// The stored name for a client's mailbox argument.
    pub fn mailbox_name(
        &self,
        mailbox: &imap_codec::imap_types::mailbox::Mailbox<'_>,
    ) -> Result<String, OpError> {
        names::from_wire(mailbox, self.utf8_names()).map_err(|e| no(Some("CANNOT"), e.to_string()))
    }

    /// The folder a client names, or NO [NONEXISTENT].
    pub async fn folder(&self, name: &str) -> Result<FolderInfo, OpError> {
        let user = self.user()?;
        self.ctx
            .store
            .folder(user.mailbox_id, name)
            .await?
            .ok_or_else(|| {
                no(
                    Some("NONEXISTENT"),
                    format!("Mailbox doesn't exist: {name}"),
                )
            })
    }

    /// Reports other sessions' changes to the selected folder (see [`selected::sync`]).
    pub async fn sync(&mut self, allow_expunge: bool) -> Result<(), OpError> {
        let mode = SyncMode {
            allow_expunge,
            condstore: self.enabled.condstore,
            qresync: self.enabled.qresync,
        };
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        match selected::sync(&self.ctx.store, sel, &mut self.out, mode).await? {
            // Live results (RFC 5267 §4.3) follow what the sync brought.
            Synced::Ok => crate::op::context::refresh(self).await,
            Synced::FolderGone => {
                self.selected = None;
                Err(OpError::Close(
                    "Selected mailbox was deleted, have to disconnect".into(),
                ))
            }
        }
    }
}
