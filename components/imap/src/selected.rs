//! The selected mailbox of a session: what it knows of each message (UID, so the sequence
//! number, flags and modseq), and how far it has caught up with the folder's changes.
//!
//! Knowing the flags lets STORE, EXPUNGE, SEARCH by flag and FETCH FLAGS run without
//! reading the store first (each read is a round trip to a database thread). The view is
//! exact as of the last [`sync`], which those commands run first; a change made by another
//! replica in the last poll interval may not be in it yet, which a STORE detects
//! (compare-and-set on modseq) and EXPUNGE tolerates (the flag is tested again as it
//! deletes). Per message it costs 16 bytes; flag combinations are interned per session.
//!
//! Other sessions — on this server or another replica sharing the database — change the
//! folder at any time. Every command (and IDLE, whenever it moves) compares the folder's
//! modseq as this process knows it ([`FolderWatch`]: raised by local commits at once and by
//! a per-process poller for other replicas) with the last one this session has seen; only
//! when it moved, and not only through this session's own writes, are the changed rows and
//! the `expunged` entries in between read, and reported as untagged EXPUNGE, EXISTS and
//! FETCH (RFC 9051 §7.4, §7.3.1).

use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::flag::{Flag, FlagFetch};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use postbay_store::FlagState;
use postbay_store::{FolderWatch, MessageMeta, Store, Version};

use crate::context::{self, LiveSearch};
use crate::response;

#[derive(Debug)]
pub struct Selected {
    pub folder_id: i64,
    pub name: String,
    pub uidvalidity: u32,
    pub read_only: bool,
    /// The messages in ascending UID order; message sequence number = index + 1.
    known: Vec<Known>,
    /// The flag combinations `known` refers to.
    flag_sets: FlagSets,
    /// Every change up to this modseq has been reported to the client.
    pub known_modseq: i64,
    /// Modseqs of this session's own writes, already reported in their tagged command.
    own_modseqs: Vec<i64>,
    /// Messages this session appended to this folder (with their modseq), not yet announced.
    own_appends: Vec<(i64, Known)>,
    /// Messages expunged elsewhere while expunges could not be announced (during FETCH,
    /// STORE, SEARCH: RFC 9051 §7.5.1); they keep their sequence numbers until then.
    pending_expunged: Vec<u32>,
    /// UIDs saved by SEARCH RETURN (SAVE) for `$` (RFC 5182); reset by every SELECT.
    pub saved: Vec<u32>,
    /// The folder's modseq as this process knows it; IDLE waits on it.
    pub watch: FolderWatch,
    /// The folder's row as of SELECT: where APPENDs to it go without a lookup.
    pub folder: postbay_store::FolderInfo,
    /// Keywords the client has been told of in `* FLAGS` (RFC 3501 §7.2.6).
    keywords: Vec<String>,
    /// Which messages are `\Recent` to this session.
    recent: Recent,
    /// Results kept up to date for the client (RFC 5267 §4.3); they end with the selection.
    pub live: Vec<LiveSearch>,
    /// Messages that arrived or whose flags changed since the live results were last
    /// brought up to date (kept only while there are any).
    dirty: Vec<u32>,
}

/// IMAP4rev1's `\Recent` as one session sees it (RFC 3501 §2.3.2): the messages this
/// session was the first to be told of, across replicas ([`Store::claim_recent`]). A
/// read-only session claims nothing and sees as recent what nobody had claimed when it
/// opened the folder. IMAP4rev2 sessions (RFC 9051) see none.
#[derive(Debug, Default)]
struct Recent {
    on: bool,
    /// UID ranges `(after, upto]` this session claimed.
    claimed: Vec<(u32, u32)>,
    /// Every UID up to here has been claimed (by anyone) for this session's view.
    claimed_upto: u32,
    /// Read-only: messages above this UID are recent.
    floor: Option<u32>,
}

impl Recent {
    fn contains(&self, uid: u32) -> bool {
        self.on
            && (self.floor.is_some_and(|f| uid > f)
                || self.claimed.iter().any(|&(a, b)| uid > a && uid <= b))
    }
}

/// The system flags every folder has (RFC 3501 §2.3.2; `\Recent` is not settable).
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// One message as the session knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    uid: u32,
    /// Index into [`Selected::flag_sets`].
    flags: u32,
    modseq: i64,
}

/// Flag combinations, each stored once per session: a folder of 100,000 messages has a
/// handful (`\Seen`, `\Seen \Answered`, …), so a message needs only an index.
#[derive(Debug, Default)]
struct FlagSets {
    sets: Vec<Vec<String>>,
    index: HashMap<Vec<String>, u32>,
}

impl FlagSets {
    fn intern(&mut self, flags: &[String]) -> u32 {
        if let Some(i) = self.index.get(flags) {
            return *i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(flags.to_vec());
        self.index.insert(flags.to_vec(), i);
        i
    }

    fn get(&self, i: u32) -> &[String] {
        self.sets.get(i as usize).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// What the client may be told by [`sync`].
#[derive(Debug, Clone, Copy)]
pub struct SyncMode {
    pub allow_expunge: bool,
    pub condstore: bool,
    /// Expunges go as one `VANISHED` (RFC 7162 §3.2.10), not as EXPUNGEs.
    pub qresync: bool,
}

impl Selected {
    pub fn new(
        folder: &postbay_store::FolderInfo,
        messages: &[MessageMeta],
        read_only: bool,
        watch: FolderWatch,
    ) -> Selected {
        let mut flag_sets = FlagSets::default();
        let mut keywords: Vec<String> = Vec::new();
        for m in messages {
            for f in &m.flags {
                if !f.starts_with('\\') && !keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                    keywords.push(f.clone());
                }
            }
        }
        let known = messages
            .iter()
            .map(|m| Known {
                uid: m.uid as u32,
                flags: flag_sets.intern(&m.flags),
                modseq: m.modseq,
            })
            .collect();
        Selected {
            folder_id: folder.id,
            name: folder.name.clone(),
            uidvalidity: folder.uidvalidity.clamp(1, u32::MAX as i64) as u32,
            read_only,
            known,
            flag_sets,
            known_modseq: folder.highest_modseq,
            own_modseqs: Vec::new(),
            own_appends: Vec::new(),
            pending_expunged: Vec::new(),
            saved: Vec::new(),
            watch,
            folder: folder.clone(),
            keywords,
            recent: Recent::default(),
            live: Vec::new(),
            dirty: Vec::new(),
        }
    }

    /// Keeps `search` up to date from now on, replacing one of the same tag; `false` when
    /// the session already has [`context::MAX_LIVE`] (RFC 5267 §4.3.1: refused).
    pub fn add_live(&mut self, search: LiveSearch) -> bool {
        if let Some(old) = self.live.iter_mut().find(|l| l.tag == search.tag) {
            *old = search;
            return true;
        }
        if self.live.len() >= context::MAX_LIVE {
            return false;
        }
        self.live.push(search);
        true
    }

    /// CANCELUPDATE (RFC 5267 §4.3.5): stops the updates of every tag named, or of none
    /// when one of them names no live result (returned).
    pub fn cancel_live(&mut self, tags: &[String]) -> Result<(), String> {
        if let Some(unknown) = tags
            .iter()
            .find(|t| !self.live.iter().any(|l| &l.tag == *t))
        {
            return Err(unknown.clone());
        }
        self.live.retain(|l| !tags.contains(&l.tag));
        if self.live.is_empty() {
            self.dirty.clear();
        }
        Ok(())
    }

    /// The messages to look at again for the live results (ascending, still numbered and
    /// not waiting to be expunged), and forgets them.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        dirty.retain(|u| self.index_of(*u).is_some() && !self.pending_expunged.contains(u));
        dirty
    }

    /// Notes a message to look at again for the live results.
    fn touch(&mut self, uid: u32) {
        if !self.live.is_empty() {
            self.dirty.push(uid);
        }
    }

    /// Turns `\Recent` on for an IMAP4rev1 session and, unless read-only, claims what
    /// is new in the folder now; returns how many messages are recent to this session.
    pub async fn start_recent(&mut self, store: &Store) -> Result<u32, postbay_store::Error> {
        self.recent.on = true;
        let floor = self.folder.recent_uid.clamp(0, u32::MAX as i64) as u32;
        if self.read_only {
            self.recent.floor = Some(floor);
        } else {
            self.recent.claimed_upto = floor;
            self.claim_recent(store).await?;
        }
        Ok(self.recent_count())
    }

    /// Claims the messages this session knows above what it claimed before.
    async fn claim_recent(&mut self, store: &Store) -> Result<(), postbay_store::Error> {
        let Some(last) = self.last_uid() else {
            return Ok(());
        };
        if !self.recent.on || self.read_only || last <= self.recent.claimed_upto {
            return Ok(());
        }
        if let Some((after, upto)) = store.claim_recent(self.folder_id, last as i64).await? {
            let clamp = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
            self.recent.claimed.push((clamp(after), clamp(upto)));
        }
        self.recent.claimed_upto = last;
        Ok(())
    }

    /// Whether `uid` carries `\Recent` for this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    /// `* n RECENT`'s n: the recent messages still in the session's view.
    pub fn recent_count(&self) -> u32 {
        if !self.recent.on {
            return 0;
        }
        self.known
            .iter()
            .filter(|k| self.recent.contains(k.uid))
            .count() as u32
    }

    /// Whether this session reports `\Recent` at all (IMAP4rev1).
    pub fn reports_recent(&self) -> bool {
        self.recent.on
    }

    /// `* FLAGS` and `* OK [PERMANENTFLAGS]` with the system flags and every keyword the
    /// folder has as far as this session knows (SELECT, and whenever that set grows).
    pub fn announce_flags(&self, out: &mut Vec<u8>) {
        use imap_codec::imap_types::flag::FlagPerm;
        use imap_codec::imap_types::response::{Code, StatusKind};
        let flags: Vec<Flag<'static>> = SYSTEM_FLAGS
            .iter()
            .map(|s| s.to_string())
            .chain(self.keywords.iter().cloned())
            .filter_map(|f| to_flag(&f))
            .collect();
        response::data(out, Data::Flags(flags.clone()));
        let mut permanent: Vec<FlagPerm<'static>> = Vec::new();
        if !self.read_only {
            permanent.extend(flags.into_iter().map(FlagPerm::Flag));
            permanent.push(FlagPerm::Asterisk);
        }
        response::untagged(
            out,
            StatusKind::Ok,
            Some(Code::PermanentFlags(permanent)),
            if self.read_only {
                "No permanent flags permitted."
            } else {
                "Flags permitted."
            },
        );
    }

    /// RFC 3501 §7.2.6: a keyword the client has not been told of is announced (new FLAGS
    /// and PERMANENTFLAGS) before any FETCH that carries it.
    pub fn note_keywords(&mut self, out: &mut Vec<u8>, flags: &[String]) {
        let mut grew = false;
        for f in flags {
            if !f.starts_with('\\') && !self.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)) {
                self.keywords.push(f.clone());
                grew = true;
            }
        }
        if grew {
            self.announce_flags(out);
        }
    }

    pub fn exists(&self) -> u32 {
        self.known.len() as u32
    }

    /// UIDs in sequence-number order.
    pub fn uids(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.known.iter().map(|k| k.uid)
    }

    fn index_of(&self, uid: u32) -> Option<usize> {
        self.known.binary_search_by_key(&uid, |k| k.uid).ok()
    }

    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.index_of(uid).map(|i| i as u32 + 1)
    }

    pub fn uid_of(&self, seq: u32) -> Option<u32> {
        self.known
            .get((seq as usize).checked_sub(1)?)
            .map(|k| k.uid)
    }

    pub fn last_uid(&self) -> Option<u32> {
        self.known.last().map(|k| k.uid)
    }

    /// The flags of the message at sequence number `seq`, as last synced.
    pub fn flags_at(&self, seq: u32) -> &[String] {
        match self.known.get((seq as usize).wrapping_sub(1)) {
            Some(k) => self.flag_sets.get(k.flags),
            None => &[],
        }
    }

    /// The modseq of the message at sequence number `seq`, as last synced.
    pub fn modseq_at(&self, seq: u32) -> i64 {
        self.known
            .get((seq as usize).wrapping_sub(1))
            .map_or(0, |k| k.modseq)
    }

    /// Flags and modseq of `uid`, as last synced: the starting point of a STORE.
    pub fn flag_state(&self, uid: u32) -> Option<FlagState> {
        let k = self.known.get(self.index_of(uid)?)?;
        Some(FlagState {
            uid: uid as i64,
            modseq: k.modseq,
            flags: self.flag_sets.get(k.flags).to_vec(),
        })
    }

    /// Records a message's flags and modseq after a change (ours or reported).
    pub fn set_flags(&mut self, state: &FlagState) {
        let Some(i) = self.index_of(state.uid as u32) else {
            return;
        };
        let flags = self.flag_sets.intern(&state.flags);
        self.known[i].flags = flags;
        self.known[i].modseq = state.modseq;
        self.touch(state.uid as u32);
    }

    /// UIDs (of those given, or all) flagged `\Deleted` as last synced, ascending.
    pub fn deleted_among(&self, uids: Option<&[u32]>) -> Vec<u32> {
        let deleted: Vec<bool> = self
            .flag_sets
            .sets
            .iter()
            .map(|set| set.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
            .collect();
        let is_deleted = |k: &Known| deleted.get(k.flags as usize).copied().unwrap_or(false);
        match uids {
            None => self
                .known
                .iter()
                .filter(|k| is_deleted(k))
                .map(|k| k.uid)
                .collect(),
            Some(uids) => uids
                .iter()
                .filter(|u| {
                    self.index_of(**u)
                        .is_some_and(|i| is_deleted(&self.known[i]))
                })
                .copied()
                .collect(),
        }
    }

    /// Whether the message vanished in the store but still has a sequence number here.
    pub fn is_pending_expunge(&self, uid: u32) -> bool {
        self.pending_expunged.contains(&uid)
    }

    /// Records that this session wrote `modseq`, so [`sync`] does not echo it back.
    pub fn note_own_modseq(&mut self, modseq: i64) {
        if modseq > self.known_modseq && !self.own_modseqs.contains(&modseq) {
            self.own_modseqs.push(modseq);
        }
    }

    /// Records that this session appended `uid` here at `modseq` with `flags`: when
    /// nothing else happened in between, [`sync`] announces it without reading the store.
    pub fn note_own_append(&mut self, modseq: i64, uid: u32, flags: &[String]) {
        if modseq > self.known_modseq && !self.own_modseqs.contains(&modseq) {
            self.own_modseqs.push(modseq);
            let flags = self.flag_sets.intern(flags);
            self.own_appends
                .push((modseq, Known { uid, flags, modseq }));
        }
    }

    /// Whether this session's own writes account for every modseq up to `highest`.
    fn own_writes_reach(&self, highest: i64) -> bool {
        highest - self.known_modseq <= self.own_modseqs.len() as i64
            && (self.known_modseq + 1..=highest).all(|m| self.own_modseqs.contains(&m))
    }

    /// Removes a message this session expunged; returns its former sequence number.
    pub fn remove(&mut self, uid: u32) -> Option<u32> {
        let i = self.index_of(uid)?;
        self.known.remove(i);
        self.pending_expunged.retain(|u| *u != uid);
        Some(i as u32 + 1)
    }

    /// `* VANISHED (EARLIER)` for the UIDs expunged after `since` that `wanted` covers
    /// (RFC 7162 §3.2.5.1, §3.2.6). One the session still numbers is left for a plain
    /// VANISHED, when expunges may be announced, so the client's numbering stays ours.
    pub async fn report_vanished_since(
        &self,
        store: &Store,
        out: &mut Vec<u8>,
        since: i64,
        wanted: impl Fn(u32) -> bool,
    ) -> Result<(), postbay_store::Error> {
        let gone: Vec<u32> = store
            .expunged_since(self.folder_id, since)
            .await?
            .into_iter()
            .map(|u| u as u32)
            .filter(|u| wanted(*u) && self.seq_of(*u).is_none())
            .collect();
        vanished(out, &gone, true);
        Ok(())
    }

    /// Forgets messages that left the folder and tells the client: one `* VANISHED` with
    /// QRESYNC (RFC 7162 §3.2.10), else `* n EXPUNGE` highest first, so each number is
    /// still valid when the client applies it (RFC 9051 §7.5.1).
    /// Live results lose the messages first, while their sequence numbers still hold
    /// (RFC 5267 §4.3.4's REMOVEFROM before the EXPUNGE that renumbers).
    pub fn report_expunged(&mut self, out: &mut Vec<u8>, mut uids: Vec<u32>, qresync: bool) {
        uids.sort_unstable();
        uids.dedup();
        if !self.live.is_empty() {
            let gone: std::collections::HashSet<u32> = uids.iter().copied().collect();
            let mut live = std::mem::take(&mut self.live);
            for search in &mut live {
                let items = search.remove(&gone);
                let by_uid = search.by_uid;
                context::write_items(out, search, &items, |u| {
                    if by_uid {
                        Some(u)
                    } else {
                        self.seq_of(u)
                    }
                });
            }
            self.live = live;
        }
        let mut gone = Vec::with_capacity(uids.len());
        for uid in uids.into_iter().rev() {
            if let Some(seq) = self.remove(uid).and_then(NonZeroU32::new) {
                if qresync {
                    gone.push(uid);
                } else {
                    response::data(out, Data::Expunge(seq));
                }
            }
        }
        if !gone.is_empty() {
            gone.reverse();
            vanished(out, &gone, false);
        }
    }

    /// Resolves a sequence set to (sequence number, UID) pairs in ascending order.
    /// Sequence numbers beyond the mailbox are an error (RFC 9051 §6.4.4 "BAD"); UIDs that
    /// do not exist are skipped, and `n:*` always includes the last message.
    pub fn resolve(&self, set: &SequenceSet, by_uid: bool) -> Result<Vec<(u32, u32)>, String> {
        let mut seqs: Vec<u32> = Vec::new();
        let last_uid = self.last_uid().unwrap_or(0);
        let count = self.exists();
        let value = |s: &SeqOrUid, max: u32| match s {
            SeqOrUid::Value(v) => v.get(),
            SeqOrUid::Asterisk => max,
        };
        let sequences: &[Sequence] = set.0.as_ref();
        for sequence in sequences {
            let (a, b) = match sequence {
                Sequence::Single(s) => (s, s),
                Sequence::Range(a, b) => (a, b),
            };
            if by_uid {
                if self.known.is_empty() {
                    continue;
                }
                let (x, y) = (value(a, last_uid), value(b, last_uid));
                let (lo, hi) = (x.min(y), x.max(y));
                let (lo, hi) = if matches!(a, SeqOrUid::Asterisk) || matches!(b, SeqOrUid::Asterisk)
                {
                    (lo.min(last_uid), hi)
                } else {
                    (lo, hi)
                };
                let start = self.known.partition_point(|k| k.uid < lo);
                let end = self.known.partition_point(|k| k.uid <= hi);
                seqs.extend((start..end).map(|i| i as u32 + 1));
            } else {
                if count == 0 {
                    return Err("No messages in mailbox".into());
                }
                let (x, y) = (value(a, count), value(b, count));
                let (lo, hi) = (x.min(y), x.max(y));
                if hi > count {
                    return Err(format!(
                        "Invalid message sequence number {hi} (only {count} messages)"
                    ));
                }
                seqs.extend(lo..=hi);
            }
        }
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs
            .into_iter()
            .map(|s| (s, self.known[s as usize - 1].uid))
            .collect())
    }
}

/// A stored flag name as an IMAP flag (`\\Seen` → system flag, else keyword).
pub fn to_flag(name: &str) -> Option<Flag<'static>> {
    use imap_codec::imap_types::core::Atom;
    match name.strip_prefix('\\') {
        Some(system) => Atom::try_from(system.to_string()).ok().map(Flag::system),
        None => Atom::try_from(name.to_string()).ok().map(Flag::keyword),
    }
}

/// Stored flag names as IMAP flags, with `\Recent` where the session sees it; unparseable
/// names (never written by us) are skipped.
pub fn fetch_flags(flags: &[String], recent: bool) -> Vec<FlagFetch<'static>> {
    let mut out: Vec<FlagFetch<'static>> = flags
        .iter()
        .filter_map(|f| to_flag(f))
        .map(FlagFetch::Flag)
        .collect();
    if recent {
        out.push(FlagFetch::Recent);
    }
    out
}

/// An untagged `FETCH (FLAGS ... UID ... [MODSEQ])` for a changed message.
pub fn flags_response(
    out: &mut Vec<u8>,
    seq: u32,
    meta: &FlagState,
    condstore: bool,
    recent: bool,
) {
    let Some(seq) = NonZeroU32::new(seq) else {
        return;
    };
    let mut items = vec![MessageDataItem::Flags(fetch_flags(&meta.flags, recent))];
    if let Some(uid) = NonZeroU32::new(meta.uid as u32) {
        items.push(MessageDataItem::Uid(uid));
    }
    if condstore {
        if let Some(m) = std::num::NonZeroU64::new(meta.modseq as u64) {
            items.push(MessageDataItem::ModSeq(m));
        }
    }
    if let Ok(items) = Vec1::try_from(items) {
        response::data(out, Data::Fetch { seq, items });
    }
}

/// Whether a UID set holds `uid`; `*` stands for any UID, however large (a client's set of
/// UIDs it knows, or a range that reaches past the last message).
pub fn uid_set_contains(set: &SequenceSet, uid: u32) -> bool {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    let sequences: &[Sequence] = set.0.as_ref();
    sequences.iter().any(|s| match s {
        Sequence::Single(a) => value(a) == uid,
        Sequence::Range(a, b) => {
            let (x, y) = (value(a), value(b));
            x.min(y) <= uid && uid <= x.max(y)
        }
    })
}

/// `* VANISHED [(EARLIER)] <uids>` for ascending UIDs (RFC 7162 §3.2.10, §7.2).
pub fn vanished(out: &mut Vec<u8>, uids: &[u32], earlier: bool) {
    if uids.is_empty() {
        return;
    }
    if let Ok(known_uids) = SequenceSet::try_from(response::sequence_set(uids).as_str()) {
        response::data(
            out,
            Data::Vanished {
                earlier,
                known_uids,
            },
        );
    }
}

/// Outcome of [`sync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Ok,
    /// The folder was deleted (or renamed away) by someone else.
    FolderGone,
}

/// Brings the session up to date with the store, writing untagged responses to `out`.
pub async fn sync(
    store: &Store,
    sel: &mut Selected,
    out: &mut Vec<u8>,
    mode: SyncMode,
) -> Result<Synced, postbay_store::Error> {
    let highest = match sel.watch.current() {
        Version::Gone => return Ok(Synced::FolderGone),
        Version::At(h) => h,
    };
    let mut grew = false;
    if highest > sel.known_modseq && sel.own_writes_reach(highest) {
        // Nothing happened in between but this session's own writes: flag changes and
        // expunges already reported, appends (in UID order, as allocated) to announce.
        let mut appended: Vec<Known> = sel
            .own_appends
            .iter()
            .filter(|(m, _)| *m <= highest)
            .map(|(_, known)| *known)
            .collect();
        appended.sort_unstable_by_key(|k| k.uid);
        if appended
            .first()
            .is_none_or(|first| sel.last_uid().is_none_or(|last| first.uid > last))
        {
            grew = !appended.is_empty();
            for k in &appended {
                sel.touch(k.uid);
            }
            sel.known.extend(appended);
            sel.known_modseq = highest;
            sel.own_modseqs.retain(|m| *m > highest);
            sel.own_appends.retain(|(m, _)| *m > highest);
        }
    }
    let mut flag_changes = Vec::new();
    if highest > sel.known_modseq {
        let changes = store
            .folder_changes(sel.folder_id, sel.known_modseq, highest)
            .await?;
        for uid in changes.expunged {
            let uid = uid as u32;
            if sel.seq_of(uid).is_some() && !sel.pending_expunged.contains(&uid) {
                sel.pending_expunged.push(uid);
            }
        }
        for meta in changes.changed {
            let uid = meta.uid as u32;
            let state = FlagState::from(&meta);
            if sel.last_uid().is_none_or(|last| uid > last) {
                let flags = sel.flag_sets.intern(&meta.flags);
                sel.known.push(Known {
                    uid,
                    flags,
                    modseq: meta.modseq,
                });
                sel.touch(uid);
                grew = true;
            } else if sel.seq_of(uid).is_some() && !sel.pending_expunged.contains(&uid) {
                sel.set_flags(&state);
                if !sel.own_modseqs.contains(&meta.modseq) {
                    flag_changes.push(state);
                }
            }
        }
        sel.known_modseq = highest;
        sel.own_modseqs.retain(|m| *m > highest);
        sel.own_appends.retain(|(m, _)| *m > highest);
    }
    if mode.allow_expunge && !sel.pending_expunged.is_empty() {
        let gone = std::mem::take(&mut sel.pending_expunged);
        sel.report_expunged(out, gone, mode.qresync);
    }
    for state in &flag_changes {
        sel.note_keywords(out, &state.flags);
        if let Some(seq) = sel.seq_of(state.uid as u32) {
            let recent = sel.is_recent(state.uid as u32);
            flags_response(out, seq, state, mode.condstore, recent);
        }
    }
    if grew {
        // RFC 3501 §7.3.2: with new messages, IMAP4rev1 clients also hear how many are
        // recent, the new ones claimed by this session if it is the first to see them.
        sel.claim_recent(store).await?;
        response::data(out, Data::Exists(sel.exists()));
        if sel.reports_recent() {
            response::data(out, Data::Recent(sel.recent_count()));
        }
    }
    Ok(Synced::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(uids: &[u32]) -> Selected {
        Selected {
            folder_id: 1,
            name: "INBOX".into(),
            uidvalidity: 1,
            read_only: false,
            known: uids
                .iter()
                .map(|&uid| Known {
                    uid,
                    flags: 0,
                    modseq: 1,
                })
                .collect(),
            flag_sets: FlagSets::default(),
            known_modseq: 1,
            own_modseqs: Vec::new(),
            own_appends: Vec::new(),
            pending_expunged: Vec::new(),
            saved: Vec::new(),
            keywords: Vec::new(),
            recent: Recent::default(),
            live: Vec::new(),
            dirty: Vec::new(),
            watch: FolderWatch::detached(1),
            folder: postbay_store::FolderInfo {
                id: 1,
                mailbox_id: 1,
                name: "INBOX".into(),
                special_use: None,
                uidvalidity: 1,
                uidnext: 1,
                highest_modseq: 1,
                recent_uid: 0,
            },
        }
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn resolves_sequence_numbers_and_uids() {
        let s = sel(&[3, 5, 9, 10]);
        assert_eq!(s.resolve(&set("2:3"), false).unwrap(), vec![(2, 5), (3, 9)]);
        assert_eq!(s.resolve(&set("*"), false).unwrap(), vec![(4, 10)]);
        assert!(s.resolve(&set("5"), false).is_err());
        assert_eq!(s.resolve(&set("4:9"), true).unwrap(), vec![(2, 5), (3, 9)]);
        assert_eq!(s.resolve(&set("20:*"), true).unwrap(), vec![(4, 10)]);
        assert_eq!(s.resolve(&set("11"), true).unwrap(), vec![]);
        assert_eq!(s.resolve(&set("1:*"), true).unwrap().len(), 4);
    }
}
