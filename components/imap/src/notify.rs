//! What a session asked for with NOTIFY (RFC 5465), and how it is told between commands.
//!
//! The state follows the change feed ([`postbay_store::FolderWatch`]) like IDLE does: one
//! watch per non-selected folder with message events (§5.2-5.4: reported as STATUS, §5.1),
//! and one on the mailbox's list version for MailboxName and SubscriptionChange (§5.4,
//! §5.5), which every replica's CREATE/DELETE/RENAME/(UN)SUBSCRIBE moves. When the list
//! version moves, the session reads the folders and subscriptions again and reports the
//! difference from its snapshot as LIST lines. The session loop waits on these while it
//! waits for the client's next command, and in IDLE ([`changed`]), and then calls
//! [`deliver`]: notifications arrive "at any time" (§1, §3), across replicas within a poll
//! interval.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use postbay_store::{FolderInfo, FolderWatch, Version};

use crate::ext_syntax::{NotifyEvents, NotifyFilter, NotifySet};
use crate::names::{self, DELIMITER};
use crate::protocol::{OpError, Protocol};
use crate::response;

/// Non-selected folders one session watches at most (PERSONAL on a huge mailbox): beyond
/// them, no STATUS is sent (the first ones by name are kept).
pub const MAX_WATCHED_FOLDERS: usize = 1000;

/// A group's mailboxes as stored names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Selected,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

#[derive(Debug)]
struct Group {
    filter: Filter,
    events: NotifyEvents,
}

/// STATUS values last sent (or known) for a watched folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    messages: Option<i64>,
    uidnext: i64,
    unseen: Option<i64>,
    modseq: i64,
}

#[derive(Debug)]
struct Watched {
    id: i64,
    name: String,
    events: NotifyEvents,
    watch: FolderWatch,
    last: Counts,
}

/// A session's NOTIFY SET (§3.1), kept until NOTIFY NONE or another SET.
#[derive(Debug)]
pub struct NotifyState {
    groups: Vec<Group>,
    /// The SELECTED or SELECTED-DELAYED group's events, and whether it is the delayed one
    /// (§6: expunges wait for the end of a command).
    selected: Option<(NotifyEvents, bool)>,
    watched: Vec<Watched>,
    list: FolderWatch,
    list_version: i64,
    /// Folder names by id and subscribed names, as of `list_version`.
    folders: BTreeMap<i64, String>,
    subscriptions: BTreeSet<String>,
    /// Whether any group asks for MailboxName or SubscriptionChange.
    list_events: bool,
}

impl Filter {
    fn matches(
        &self,
        name: &str,
        subscriptions: &BTreeSet<String>,
        selected: Option<&str>,
    ) -> bool {
        match self {
            Filter::Selected => selected == Some(name),
            Filter::Inboxes => name == "INBOX",
            Filter::Personal => true,
            Filter::Subscribed => subscriptions.contains(name),
            Filter::Subtree(roots) => roots.iter().any(|r| {
                name == r
                    || name
                        .strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with(DELIMITER))
            }),
            Filter::Mailboxes(list) => list.iter().any(|m| m == name),
        }
    }
}

impl NotifyState {
    /// Whether the selected mailbox's changes go out between commands (§6 SELECTED), and
    /// whether expunges among them wait for a command (SELECTED-DELAYED).
    pub fn selected_events(&self) -> Option<(NotifyEvents, bool)> {
        self.selected.filter(|(e, _)| e.messages())
    }
}

/// Builds the state for NOTIFY SET: names resolved as the client's encoding says, the
/// folders to watch chosen, and with STATUS their STATUS sent now (§3.1).
pub async fn start(p: &mut Protocol, set: NotifySet) -> Result<NotifyState, OpError> {
    let utf8 = p.utf8_names();
    let resolve = |names: &[Vec<u8>]| -> Vec<String> {
        // §6: a name that does not exist (or cannot) is not an error; it matches nothing.
        names
            .iter()
            .filter_map(|n| names::from_wire_bytes(n, utf8).ok())
            .collect()
    };
    let mut groups = Vec::new();
    let mut selected = None;
    for g in &set.groups {
        let filter = match &g.filter {
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed => {
                selected = Some((g.events, g.filter == NotifyFilter::SelectedDelayed));
                Filter::Selected
            }
            NotifyFilter::Inboxes => Filter::Inboxes,
            NotifyFilter::Personal => Filter::Personal,
            NotifyFilter::Subscribed => Filter::Subscribed,
            NotifyFilter::Subtree(n) => Filter::Subtree(resolve(n)),
            NotifyFilter::Mailboxes(n) => Filter::Mailboxes(resolve(n)),
        };
        groups.push(Group {
            filter,
            events: g.events,
        });
    }
    let mailbox_id = p.user()?.mailbox_id;
    let store = &p.ctx.store;
    let list_version = store.list_version(mailbox_id).await?;
    let list = store.watch_list(mailbox_id, list_version);
    let infos = store.folders(mailbox_id).await?;
    let subscriptions: BTreeSet<String> =
        store.subscriptions(mailbox_id).await?.into_iter().collect();
    let list_events = groups
        .iter()
        .any(|g| g.events.mailbox_name || g.events.subscription_change);
    let mut state = NotifyState {
        groups,
        selected,
        watched: Vec::new(),
        list,
        list_version,
        folders: infos.iter().map(|f| (f.id, f.name.clone())).collect(),
        subscriptions,
        list_events,
    };
    state.rewatch(p, &infos);
    if set.status {
        let selected_id = p.selected.as_ref().map(|s| s.folder_id);
        for i in 0..state.watched.len() {
            if Some(state.watched[i].id) != selected_id {
                status_line(p, &mut state.watched[i]).await?;
            }
        }
    }
    Ok(state)
}

impl NotifyState {
    /// Chooses the folders to watch for STATUS from `infos` (the mailbox's folders now):
    /// each folder takes the events of the first non-selected group it matches (§6), and
    /// keeps its watch and last values when it was watched before.
    fn rewatch(&mut self, p: &Protocol, infos: &[FolderInfo]) {
        let mut old: BTreeMap<i64, Watched> = self.watched.drain(..).map(|w| (w.id, w)).collect();
        for f in infos {
            if self.watched.len() == MAX_WATCHED_FOLDERS {
                break;
            }
            let events = self
                .groups
                .iter()
                .filter(|g| g.filter != Filter::Selected)
                .find(|g| g.filter.matches(&f.name, &self.subscriptions, None))
                .map(|g| g.events);
            let Some(events) = events.filter(|e| e.messages()) else {
                continue;
            };
            match old.remove(&f.id) {
                Some(mut w) => {
                    w.name = f.name.clone();
                    w.events = events;
                    self.watched.push(w);
                }
                None => self.watched.push(Watched {
                    id: f.id,
                    name: f.name.clone(),
                    events,
                    watch: p.ctx.store.watch_folder(f.id, f.highest_modseq),
                    last: Counts {
                        messages: None,
                        uidnext: f.uidnext,
                        unseen: None,
                        modseq: f.highest_modseq,
                    },
                }),
            }
        }
    }
}

/// Waits until something the session is notified of may have changed: a watched folder,
/// the list version, or (`selected`) the selected folder. Never returns without NOTIFY.
pub async fn changed(state: &mut NotifyState, selected: Option<&mut FolderWatch>) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
        Vec::with_capacity(state.watched.len() + 2);
    waits.push(Box::pin(state.list.changed()));
    for w in &mut state.watched {
        waits.push(Box::pin(w.watch.changed()));
    }
    if let Some(sel) = selected {
        waits.push(Box::pin(sel.changed()));
    }
    std::future::poll_fn(|cx| {
        for w in &mut waits {
            if w.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Sends what changed: the selected folder's EXISTS/EXPUNGE/FETCH when `with_selected`
/// and a SELECTED group asks (expunges held back for SELECTED-DELAYED), LIST lines for
/// the list changes asked for, and STATUS for the watched folders that moved.
pub async fn deliver(p: &mut Protocol, with_selected: bool) -> Result<(), OpError> {
    let Some(mut state) = p.notify.take() else {
        return Ok(());
    };
    let result = deliver_with(p, &mut state, with_selected).await;
    p.notify = Some(state);
    result
}

async fn deliver_with(
    p: &mut Protocol,
    state: &mut NotifyState,
    with_selected: bool,
) -> Result<(), OpError> {
    if with_selected {
        if let Some((_, delayed)) = state.selected_events() {
            p.sync(!delayed).await?;
        }
    }
    if let Version::At(v) = state.list.current() {
        if v != state.list_version {
            list_changes(p, state, v).await?;
        }
    }
    let selected_id = p.selected.as_ref().map(|s| s.folder_id);
    for i in 0..state.watched.len() {
        let w = &mut state.watched[i];
        let Version::At(modseq) = w.watch.current() else {
            // Deleted: the list change reports it, and the next rewatch drops it.
            continue;
        };
        if modseq == w.last.modseq || Some(w.id) == selected_id {
            continue;
        }
        status_line(p, &mut state.watched[i]).await?;
    }
    Ok(())
}

/// Reads the folder's counts; sends `* STATUS` (§5.2-5.4 for a non-selected mailbox)
/// when what its events cover moved, or always when nothing was known yet of it.
async fn status_line(p: &mut Protocol, w: &mut Watched) -> Result<(), OpError> {
    let store = &p.ctx.store;
    let Some(folder) = store.folder_by_id(w.id).await? else {
        return Ok(());
    };
    let stats = store.folder_stats(w.id).await?;
    let now = Counts {
        messages: Some(stats.messages),
        uidnext: folder.uidnext,
        unseen: Some(stats.unseen),
        modseq: folder.highest_modseq,
    };
    let before = w.last;
    w.last = now;
    let moved = before.messages.is_none()
        || before.messages != now.messages
        || before.uidnext != now.uidnext
        || (w.events.flag_change && (before.unseen != now.unseen || before.modseq != now.modseq));
    if !moved {
        return Ok(());
    }
    let mut items = format!(
        "MESSAGES {} UIDNEXT {} UNSEEN {}",
        stats.messages.max(0),
        folder.uidnext.max(0),
        stats.unseen.max(0)
    );
    if p.enabled.condstore {
        items.push_str(&format!(" HIGHESTMODSEQ {}", folder.highest_modseq.max(0)));
    }
    let name = wire_name(&w.name, p.utf8_names());
    response::raw(&mut p.out, &format!("STATUS {name} ({items})"));
    Ok(())
}

/// The name as a quoted string in the session's encoding (modified UTF-7 or UTF-8).
fn wire_name(name: &str, utf8: bool) -> String {
    if utf8 || name == "INBOX" {
        response::quoted(name)
    } else {
        response::quoted(&crate::mutf7::encode(name))
    }
}

/// The list version moved to `version`: compares the folders and subscriptions with the
/// snapshot and sends LIST for each change a group asks for (§5.4 MailboxName: new and
/// renamed names, with OLDNAME for renames (RFC 5465 §5.4 and RFC 5258 §3.5 extended
/// data), `\NonExistent` for deleted ones; §5.5 SubscriptionChange: LIST with or without
/// `\Subscribed`), then chooses the watched folders again.
async fn list_changes(
    p: &mut Protocol,
    state: &mut NotifyState,
    version: i64,
) -> Result<(), OpError> {
    let mailbox_id = p.user()?.mailbox_id;
    let store = &p.ctx.store;
    let infos = store.folders(mailbox_id).await?;
    let subscriptions: BTreeSet<String> =
        store.subscriptions(mailbox_id).await?.into_iter().collect();
    let folders: BTreeMap<i64, String> = infos.iter().map(|f| (f.id, f.name.clone())).collect();
    let utf8 = p.utf8_names();
    let selected = p.selected.as_ref().map(|s| s.name.clone());
    let wants = |state: &NotifyState, name: &str, old: Option<&str>, subscription: bool| {
        state.groups.iter().any(|g| {
            let asked = if subscription {
                g.events.subscription_change
            } else {
                g.events.mailbox_name
            };
            let matches = |n: &str| {
                g.filter
                    .matches(n, &state.subscriptions, selected.as_deref())
                    || g.filter.matches(n, &subscriptions, selected.as_deref())
            };
            asked && (matches(name) || old.is_some_and(matches))
        })
    };
    let mut lines: Vec<String> = Vec::new();
    if state.list_events {
        for (id, name) in &folders {
            match state.folders.get(id) {
                None if wants(state, name, None, false) => {
                    lines.push(format!("LIST () \"{DELIMITER}\" {}", wire_name(name, utf8)));
                }
                Some(old) if old != name && wants(state, name, Some(old), false) => {
                    lines.push(format!(
                        "LIST () \"{DELIMITER}\" {} (\"OLDNAME\" ({}))",
                        wire_name(name, utf8),
                        wire_name(old, utf8)
                    ));
                }
                _ => {}
            }
        }
        for (id, old) in &state.folders {
            if !folders.contains_key(id) && wants(state, old, None, false) {
                lines.push(format!(
                    "LIST (\\NonExistent) \"{DELIMITER}\" {}",
                    wire_name(old, utf8)
                ));
            }
        }
        let exists = |n: &str| folders.values().any(|f| f == n);
        for name in subscriptions.difference(&state.subscriptions) {
            if wants(state, name, None, true) {
                let attrs = if exists(name) {
                    "\\Subscribed"
                } else {
                    "\\Subscribed \\NonExistent"
                };
                lines.push(format!(
                    "LIST ({attrs}) \"{DELIMITER}\" {}",
                    wire_name(name, utf8)
                ));
            }
        }
        for name in state.subscriptions.difference(&subscriptions) {
            if wants(state, name, None, true) {
                let attrs = if exists(name) { "" } else { "\\NonExistent" };
                lines.push(format!(
                    "LIST ({attrs}) \"{DELIMITER}\" {}",
                    wire_name(name, utf8)
                ));
            }
        }
    }
    for line in lines {
        response::raw(&mut p.out, &line);
    }
    state.folders = folders;
    state.subscriptions = subscriptions;
    state.list_version = version;
    state.rewatch(p, &infos);
    Ok(())
}
