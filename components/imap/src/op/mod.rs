//! Command handlers, one module per command group, behind [`dispatch`]. Handlers only
//! touch [`Protocol`] and the store; they never see the socket.

pub mod any;
pub mod append;
pub mod auth;
pub mod catenate;
pub mod context;
pub mod copy;
pub mod expunge;
pub mod fetch;
pub mod list;
pub mod mailbox;
pub mod notify;
pub mod quota;
pub mod search;
pub mod select;
pub mod sort;
pub mod status;
pub mod store;
pub mod thread;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::response::StatusKind;

use crate::ext_syntax::Extras;
use crate::protocol::{bad, no, OpError, OpResult, Outcome, Protocol};
use crate::response;
use crate::Sink;

/// Message rows keyed by UID, and the cached headers of those that have one.
pub(crate) type RowsByUid = (
    std::collections::HashMap<u32, postbay_store::MessageMeta>,
    std::collections::HashMap<u32, Vec<u8>>,
);

/// Splits rows as the store returns them (with or without cached headers) by UID.
pub(crate) fn rows_by_uid(rows: Vec<(postbay_store::MessageMeta, Option<Vec<u8>>)>) -> RowsByUid {
    let mut metas = std::collections::HashMap::with_capacity(rows.len());
    let mut headers = std::collections::HashMap::new();
    for (meta, header) in rows {
        let uid = meta.uid as u32;
        if let Some(header) = header {
            headers.insert(uid, header);
        }
        metas.insert(uid, meta);
    }
    (metas, headers)
}

/// Which state a command needs (RFC 9051 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Any,
    NotAuthenticated,
    Authenticated,
    Selected,
}

fn needs(body: &CommandBody<'_>) -> Needs {
    use CommandBody as C;
    match body {
        C::Capability | C::Noop | C::Logout | C::Id { .. } => Needs::Any,
        C::StartTLS | C::Authenticate { .. } | C::Login { .. } => Needs::NotAuthenticated,
        C::Check
        | C::Close
        | C::Unselect
        | C::Expunge
        | C::ExpungeUid { .. }
        | C::Search { .. }
        | C::Fetch { .. }
        | C::Store { .. }
        | C::Copy { .. }
        | C::Move { .. }
        | C::Sort { .. }
        | C::Thread { .. } => Needs::Selected,
        _ => Needs::Authenticated,
    }
}

/// Whether untagged EXPUNGE may accompany the command's answer (RFC 9051 §7.5.1: not
/// during FETCH, STORE or SEARCH by sequence number, whose numbers would shift).
fn expunge_allowed(body: &CommandBody<'_>) -> bool {
    !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
            | CommandBody::Sort { uid: false, .. }
            | CommandBody::Thread { uid: false, .. }
    )
}

/// Whether the command starts from a fresh view (no need to report older changes).
fn syncs_after(body: &CommandBody<'_>) -> bool {
    !matches!(
        body,
        CommandBody::Select { .. }
            | CommandBody::Examine { .. }
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Logout
            | CommandBody::Idle
            | CommandBody::StartTLS
            | CommandBody::Authenticate { .. }
            | CommandBody::Login { .. }
    )
}

/// Runs one command and writes its tagged response (except where the [`Outcome`] says the
/// session continues the exchange: IDLE, AUTHENTICATE).
pub async fn dispatch<S: Sink>(
    p: &mut Protocol,
    sink: &mut S,
    command: Command<'_>,
    extras: Extras,
) -> Outcome {
    let started = std::time::Instant::now();
    let tag = command.tag.clone();
    // CANCELUPDATE (RFC 5267 §4.3.5) reaches here as the NOOP the pre-parser made of it; it
    // is a selected-state command (§5 `command-select`).
    // NOTIFY (RFC 5465 §8) arrives the same way; it needs the authenticated state.
    let cancel_update = extras.cancel_update.is_some();
    let notify = extras.notify.is_some();
    let name = if cancel_update {
        "CANCELUPDATE"
    } else if notify {
        "NOTIFY"
    } else {
        command.body.name()
    };
    let body = command.body;
    let needed = if cancel_update {
        Needs::Selected
    } else if notify {
        Needs::Authenticated
    } else {
        needs(&body)
    };
    let state_error = match (needed, p.user.is_some(), p.selected.is_some()) {
        (Needs::NotAuthenticated, true, _) => Some("Already authenticated"),
        (Needs::Authenticated | Needs::Selected, false, _) => {
            Some("Not authenticated: LOGIN or AUTHENTICATE first")
        }
        (Needs::Selected, true, false) => Some("No mailbox selected: SELECT or EXAMINE first"),
        _ => None,
    };
    if let Some(text) = state_error {
        postbay_telemetry::imap_command(name, "bad");
        response::tagged(
            &mut p.out,
            &tag,
            StatusKind::Bad,
            None,
            &format!("{name}: {text}"),
        );
        return Outcome::Ok(None, String::new());
    }
    let allow_expunge = expunge_allowed(&body);
    let sync_after = syncs_after(&body);
    let result = run(p, sink, &tag, body, extras).await;
    let result = if sync_after && p.selected.is_some() {
        match p.sync(allow_expunge).await {
            Ok(()) => result,
            Err(e) => Err(e),
        }
    } else {
        result
    };
    let outcome = finish(p, &tag, name, result);
    // IDLE and AUTHENTICATE wait for the client; their time says nothing about the server.
    if !matches!(name, "IDLE" | "AUTHENTICATE") {
        postbay_telemetry::imap_command_latency(name, started.elapsed());
    }
    outcome
}

pub fn finish(
    p: &mut Protocol,
    tag: &imap_codec::imap_types::core::Tag<'_>,
    name: &str,
    result: OpResult,
) -> Outcome {
    let counted = match &result {
        Ok(Outcome::Ok(..) | Outcome::Logout | Outcome::StartTls | Outcome::Compress) => Some("ok"),
        Ok(_) => None, // the exchange goes on (IDLE, AUTHENTICATE): counted when it ends
        Err(OpError::Bad(_)) => Some("bad"),
        Err(_) => Some("no"),
    };
    if let Some(counted) = counted {
        postbay_telemetry::imap_command(name, counted);
    }
    match result {
        Ok(Outcome::Ok(code, text)) => {
            let text = if text.is_empty() {
                format!("{name} completed")
            } else {
                text
            };
            response::tagged(&mut p.out, tag, StatusKind::Ok, code, &text);
            Outcome::Ok(None, String::new())
        }
        Ok(Outcome::Logout) => {
            response::bye(&mut p.out, "Logging out");
            response::tagged(&mut p.out, tag, StatusKind::Ok, None, "LOGOUT completed");
            Outcome::Logout
        }
        Ok(Outcome::StartTls) => {
            response::tagged(
                &mut p.out,
                tag,
                StatusKind::Ok,
                None,
                "Begin TLS negotiation now",
            );
            Outcome::StartTls
        }
        Ok(Outcome::Compress) => {
            response::tagged(&mut p.out, tag, StatusKind::Ok, None, "DEFLATE active");
            Outcome::Compress
        }
        Ok(other) => other,
        Err(OpError::Bad(text)) => {
            response::tagged(
                &mut p.out,
                tag,
                StatusKind::Bad,
                None,
                &format!("{name}: {text}"),
            );
            Outcome::Ok(None, String::new())
        }
        Err(OpError::No(code, text)) => {
            response::tagged(&mut p.out, tag, StatusKind::No, code, &text);
            Outcome::Ok(None, String::new())
        }
        Err(OpError::Store(e)) => {
            let (code, text) = store_error(&e);
            response::tagged(
                &mut p.out,
                tag,
                StatusKind::No,
                Some(response::code(code)),
                &text,
            );
            Outcome::Ok(None, String::new())
        }
        Err(OpError::Close(text)) => {
            response::bye(&mut p.out, &text);
            Outcome::Logout
        }
    }
}

/// RFC 5530 codes for store failures; internal details go to the log only.
fn store_error(e: &postbay_store::Error) -> (&'static str, String) {
    use postbay_store::Error as E;
    match e {
        E::OverQuota { .. } => (
            "OVERQUOTA",
            "Quota exceeded (mailbox for user is full)".into(),
        ),
        E::NoSuchFolder(name) => ("NONEXISTENT", format!("Mailbox doesn't exist: {name}")),
        E::FolderExists(name) => ("ALREADYEXISTS", format!("Mailbox already exists: {name}")),
        E::NoSuchMailbox(_) => ("NONEXISTENT", "Account no longer exists".into()),
        other => {
            tracing::error!(error = %other, "store error");
            (
                "UNAVAILABLE",
                "Internal error occurred, try again later".into(),
            )
        }
    }
}

async fn run<S: Sink>(
    p: &mut Protocol,
    sink: &mut S,
    tag: &imap_codec::imap_types::core::Tag<'_>,
    body: CommandBody<'_>,
    extras: Extras,
) -> OpResult {
    use CommandBody as C;
    match body {
        C::Capability => any::capability(p),
        C::Noop => match (&extras.cancel_update, extras.notify) {
            (Some(tags), _) => context::cancel_update(p, tags),
            (None, Some(request)) => notify::notify(p, request).await,
            (None, None) => any::noop(p),
        },
        C::Logout => Ok(Outcome::Logout),
        C::Id { parameters } => any::id(p, parameters),
        C::Enable { capabilities } => any::enable(p, capabilities),
        C::StartTLS => auth::starttls(p),
        C::Login { username, password } => auth::login(p, username, password).await,
        C::Authenticate {
            mechanism,
            initial_response,
        } => auth::authenticate(p, mechanism, initial_response).await,
        C::Select {
            mailbox,
            parameters,
        } => select::select(p, mailbox, parameters, false).await,
        C::Examine {
            mailbox,
            parameters,
        } => select::select(p, mailbox, parameters, true).await,
        C::Unselect => select::unselect(p),
        C::Close => select::close(p).await,
        C::Check => ok_empty(),
        C::Create { mailbox } => mailbox::create(p, mailbox).await,
        C::Delete { mailbox } => mailbox::delete(p, mailbox).await,
        C::Rename { from, to } => mailbox::rename(p, from, to).await,
        C::Subscribe { mailbox } => mailbox::subscribe(p, mailbox, true).await,
        C::Unsubscribe { mailbox } => mailbox::subscribe(p, mailbox, false).await,
        C::List {
            reference,
            mailbox_wildcard,
        } => list::list(p, reference, mailbox_wildcard, extras.list, false).await,
        C::Lsub {
            reference,
            mailbox_wildcard,
        } => list::list(p, reference, mailbox_wildcard, None, true).await,
        C::Namespace => list::namespace(p),
        C::Status {
            mailbox,
            item_names,
        } => status::status(p, mailbox, &item_names).await,
        C::Append {
            mailbox,
            flags,
            date,
            message,
        } if !extras.more_appends.is_empty() || !extras.catenate.is_empty() => {
            let first = (flags, date, message);
            append::append_many(p, mailbox, first, extras.more_appends, extras.catenate).await
        }
        C::Append {
            mailbox,
            flags,
            date,
            message,
        } => append::append(p, mailbox, flags, date, message).await,
        C::Idle => Ok(Outcome::Idle),
        C::Expunge => expunge::expunge(p, None).await,
        C::ExpungeUid { sequence_set } => expunge::expunge(p, Some(sequence_set)).await,
        C::Search {
            charset,
            criteria,
            uid,
        } => search::search(p, tag, charset, criteria, uid, extras.search_return).await,
        C::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            modifiers,
        } => fetch::fetch(p, sink, sequence_set, macro_or_item_names, uid, modifiers).await,
        C::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            modifiers,
        } => store::store(p, sequence_set, kind, response, flags, uid, modifiers).await,
        C::Copy {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(p, sequence_set, mailbox, uid, false).await,
        C::Move {
            sequence_set,
            mailbox,
            uid,
        } => copy::copy(p, sequence_set, mailbox, uid, true).await,
        C::GetQuota { root } => quota::get_quota(p, root).await,
        C::GetQuotaRoot { mailbox } => quota::get_quota_root(p, mailbox).await,
        C::SetQuota { .. } => Err(no(Some("NOPERM"), "Quota is managed by the administrator")),
        C::Sort {
            sort_criteria,
            charset,
            search_criteria,
            uid,
        } => {
            let returns = extras.sort_return;
            sort::sort(
                p,
                tag,
                sort_criteria,
                charset,
                search_criteria,
                uid,
                returns,
            )
            .await
        }
        C::Thread {
            algorithm,
            charset,
            search_criteria,
            uid,
        } => thread::thread(p, algorithm, charset, search_criteria, uid).await,
        C::Compress { .. } => any::compress(p),
        #[allow(unreachable_patterns)]
        _ => Err(bad("Command not supported")),
    }
}

fn ok_empty() -> OpResult {
    Ok(Outcome::Ok(None, String::new()))
}
