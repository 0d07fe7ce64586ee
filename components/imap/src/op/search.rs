//! SEARCH (RFC 9051 §6.4.4, all RFC 3501 keys), ESEARCH results (RFC 4731) and MODSEQ
//! searches (RFC 7162 §3.1.5). Flag, date and size keys use the metadata rows; header and
//! text keys read and parse the message only when a key needs it.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};

use chrono::NaiveDate;
use imap_codec::imap_types::core::{Charset, Tag, Vec1};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::IntoStatic;
use postbay_store::{MessageMeta, Store};

use crate::context::Member;
use crate::ext_syntax::SearchReturn;
use crate::message::Parsed;
use crate::protocol::{bad, OpResult, Outcome, Protocol};
use crate::response;
use crate::selected::Selected;

/// Charsets accepted for search strings; everything is matched as UTF-8.
const CHARSETS: [&str; 2] = ["UTF-8", "US-ASCII"];

struct Candidate<'c> {
    seq: u32,
    uid: u32,
    max_seq: u32,
    max_uid: u32,
    flags: &'c [String],
    modseq: i64,
    /// `\Recent` to this session (IMAP4rev1 only).
    recent: bool,
    /// The message's row, read only when a key needs its size or date.
    meta: Option<&'c MessageMeta>,
    parsed: Option<&'c Parsed<'c>>,
}

fn has_flag(c: &Candidate<'_>, flag: &str) -> bool {
    c.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

fn in_set(set: &SequenceSet, n: u32, max: u32) -> bool {
    let value = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => max,
    };
    let sequences: &[Sequence] = set.0.as_ref();
    sequences.iter().any(|s| match s {
        Sequence::Single(a) => value(a) == n,
        Sequence::Range(a, b) => {
            let (x, y) = (value(a), value(b));
            x.min(y) <= n && n <= x.max(y)
        }
    })
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn text(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

fn internal_day(ts: i64) -> Option<NaiveDate> {
    chrono::DateTime::from_timestamp(ts, 0).map(|d| d.date_naive())
}

fn header_has(c: &Candidate<'_>, field: &str, needle: &str) -> bool {
    c.parsed.is_some_and(|p| {
        p.header_search_values(field)
            .iter()
            .any(|v| contains(v, needle))
    })
}

/// Whether evaluating `key` needs the message itself.
fn needs_message(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(needs_message),
        K::Not(k) => needs_message(k),
        K::Or(a, b) => needs_message(a) || needs_message(b),
        K::Bcc(_)
        | K::Body(_)
        | K::Cc(_)
        | K::From(_)
        | K::Header(..)
        | K::Subject(_)
        | K::Text(_)
        | K::To(_)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_) => true,
        _ => false,
    }
}

/// Whether evaluating `key` needs the message's row (size, date) or the message itself;
/// flags, modseq, UIDs and sequence numbers are known to the session.
fn needs_meta(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(needs_meta),
        K::Not(k) => needs_meta(k),
        K::Or(a, b) => needs_meta(a) || needs_meta(b),
        K::Larger(_) | K::Smaller(_) | K::Before(_) | K::On(_) | K::Since(_) => true,
        other => needs_message(other),
    }
}

/// Whether evaluating `key` needs the message's body, not only its header.
fn needs_body(key: &SearchKey<'_>) -> bool {
    use SearchKey as K;
    match key {
        K::And(keys) => keys.as_ref().iter().any(needs_body),
        K::Not(k) => needs_body(k),
        K::Or(a, b) => needs_body(a) || needs_body(b),
        K::Body(_) | K::Text(_) => true,
        _ => false,
    }
}

fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::ModSequence { .. } => true,
        _ => false,
    }
}

fn matches(key: &SearchKey<'_>, c: &Candidate<'_>) -> bool {
    use SearchKey as K;
    let sent = || c.parsed.and_then(|p| p.sent_date());
    let date = || c.meta.map(|m| m.internal_date).and_then(internal_day);
    let size = || c.meta.map_or(0, |m| m.size);
    match key {
        K::And(keys) => keys.as_ref().iter().all(|k| matches(k, c)),
        K::SequenceSet(set) => in_set(set, c.seq, c.max_seq),
        K::Uid(set) => in_set(set, c.uid, c.max_uid),
        K::All => true,
        K::Answered => has_flag(c, "\\Answered"),
        K::Deleted => has_flag(c, "\\Deleted"),
        K::Draft => has_flag(c, "\\Draft"),
        K::Flagged => has_flag(c, "\\Flagged"),
        K::Seen => has_flag(c, "\\Seen"),
        K::Unanswered => !has_flag(c, "\\Answered"),
        K::Undeleted => !has_flag(c, "\\Deleted"),
        K::Undraft => !has_flag(c, "\\Draft"),
        K::Unflagged => !has_flag(c, "\\Flagged"),
        K::Unseen => !has_flag(c, "\\Seen"),
        // RFC 3501 §6.4.4; never true for IMAP4rev2 sessions, which have no \Recent.
        K::Recent => c.recent,
        K::New => c.recent && !has_flag(c, "\\Seen"),
        K::Old => !c.recent,
        K::Keyword(k) => has_flag(c, k.as_ref()),
        K::Unkeyword(k) => !has_flag(c, k.as_ref()),
        K::Bcc(s) => header_has(c, "Bcc", &text(s)),
        K::Cc(s) => header_has(c, "Cc", &text(s)),
        K::From(s) => header_has(c, "From", &text(s)),
        K::To(s) => header_has(c, "To", &text(s)),
        K::Subject(s) => header_has(c, "Subject", &text(s)),
        K::Header(field, value) => header_has(c, &text(field), &text(value)),
        K::Body(s) => c
            .parsed
            .is_some_and(|p| contains(&p.body_search_text(), &text(s))),
        K::Text(s) => c.parsed.is_some_and(|p| {
            let needle = text(s);
            contains(&String::from_utf8_lossy(p.header()), &needle)
                || contains(&p.body_search_text(), &needle)
        }),
        K::Before(d) => date().is_some_and(|x| x < *d.as_ref()),
        K::On(d) => date().is_some_and(|x| x == *d.as_ref()),
        K::Since(d) => date().is_some_and(|x| x >= *d.as_ref()),
        K::SentBefore(d) => sent().is_some_and(|x| x < *d.as_ref()),
        K::SentOn(d) => sent().is_some_and(|x| x == *d.as_ref()),
        K::SentSince(d) => sent().is_some_and(|x| x >= *d.as_ref()),
        K::Larger(n) => c.meta.is_some() && size() > *n as i64,
        K::Smaller(n) => c.meta.is_some() && size() < *n as i64,
        K::Not(k) => !matches(k, c),
        K::Or(a, b) => matches(a, c) || matches(b, c),
        K::ModSequence { modseq, .. } => c.modseq as u64 >= *modseq,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// What a search found, in sequence order: each match's sequence number, UID and modseq.
pub(super) struct Found {
    pub hits: Vec<(u32, u32, i64)>,
    /// The criteria had a MODSEQ key (RFC 7162 §3.1.5: the answer carries MODSEQ).
    pub modseq_search: bool,
}

pub async fn search(
    p: &mut Protocol,
    tag: &Tag<'_>,
    charset: Option<Charset<'_>>,
    criteria: Vec1<SearchKey<'_>>,
    by_uid: bool,
    returns: Option<Vec<SearchReturn>>,
) -> OpResult {
    let save = returns
        .as_ref()
        .is_some_and(|r| r.contains(&SearchReturn::Save));
    if save {
        // RFC 5182 §2.1: a failed SEARCH ... SAVE leaves an empty result.
        if let Some(sel) = p.selected.as_mut() {
            sel.saved.clear();
        }
    }
    // RFC 5267 §4.3: UPDATE keeps the criteria to run again on each change.
    let live_key = super::context::wants_update(returns.as_deref())
        .then(|| SearchKey::And(criteria.clone()).into_static());
    let Found {
        hits: found,
        modseq_search,
    } = find(p, charset, criteria).await?;
    let hits: Vec<u32> = found
        .iter()
        .map(|&(seq, uid, _)| if by_uid { uid } else { seq })
        .collect();
    let hit_modseqs: Vec<i64> = found.iter().map(|&(_, _, m)| m).collect();
    let highest_modseq = hit_modseqs.iter().copied().max().unwrap_or(0);
    if save {
        let sel = p
            .selected
            .as_mut()
            .ok_or_else(|| bad("No mailbox selected"))?;
        sel.saved = found.iter().map(|&(_, uid, _)| uid).collect();
    }
    let modseq = (modseq_search && !hits.is_empty())
        .then(|| NonZeroU64::new(highest_modseq as u64))
        .flatten();
    let outcome = answer(p, tag, by_uid, returns, hits, hit_modseqs, modseq)?;
    if let Some(key) = live_key {
        let members = found
            .iter()
            .map(|&(_, uid, _)| Member {
                uid,
                values: Box::default(),
            })
            .collect();
        super::context::start(p, tag.as_ref(), by_uid, key, None, members)?;
    }
    Ok(outcome)
}

/// Runs a search on the selected folder (SEARCH, and SORT's search criteria).
pub(super) async fn find(
    p: &mut Protocol,
    charset: Option<Charset<'_>>,
    criteria: Vec1<SearchKey<'_>>,
) -> Result<Found, crate::protocol::OpError> {
    if let Some(cs) = &charset {
        if !CHARSETS.iter().any(|c| c.eq_ignore_ascii_case(cs.as_ref())) {
            let allowed = CHARSETS
                .iter()
                .filter_map(|c| Charset::try_from(*c).ok())
                .collect();
            return Err(crate::protocol::OpError::No(
                Some(imap_codec::imap_types::response::Code::BadCharset { allowed }),
                format!("Unsupported charset {}", cs.as_ref()),
            ));
        }
    }
    let key = SearchKey::And(criteria);
    let modseq_search = uses_modseq(&key);
    if modseq_search {
        p.enable_condstore();
    }
    // Flags come from the session's view: bring it up to date first.
    p.sync(false).await?;
    let ctx = p.ctx.clone();
    let sel = p
        .selected
        .as_ref()
        .ok_or_else(|| bad("No mailbox selected"))?;
    let hits = evaluate(&ctx.store, sel, &key, None).await?;
    Ok(Found {
        hits,
        modseq_search,
    })
}

/// The messages of the session's view (all, or the UIDs in `only`, ascending) that `key`
/// matches, as (sequence number, UID, modseq) in sequence order; messages waiting to be
/// expunged never match. With `only`, just the rows of its UID range are read (a live
/// result looking again at the messages that changed, RFC 5267 §4.3).
pub(crate) async fn evaluate(
    store: &Store,
    sel: &Selected,
    key: &SearchKey<'_>,
    only: Option<&[u32]>,
) -> Result<Vec<(u32, u32, i64)>, postbay_store::Error> {
    let candidates: Vec<(u32, u32)> = match only {
        None => sel
            .uids()
            .enumerate()
            .map(|(i, u)| (i as u32 + 1, u))
            .collect(),
        Some(uids) => uids
            .iter()
            .filter_map(|u| sel.seq_of(*u).map(|seq| (seq, *u)))
            .collect(),
    };
    let (first, last) = match only {
        None => (0, i64::MAX),
        Some(_) => match (candidates.first(), candidates.last()) {
            (Some(a), Some(b)) => (i64::from(a.1), i64::from(b.1)),
            _ => return Ok(Vec::new()),
        },
    };
    let need_message = needs_message(key);
    // Header keys (FROM, SUBJECT, HEADER, SENT…) without BODY/TEXT are answered from the
    // header cache; messages without a cached header are read from their blob.
    let rows = if need_message && !needs_body(key) {
        Some(
            store
                .messages_with_headers(sel.folder_id, first, last)
                .await?,
        )
    } else if needs_meta(key) {
        Some(
            store
                .messages_in_uid_range(sel.folder_id, first, last)
                .await?
                .into_iter()
                .map(|m| (m, None))
                .collect(),
        )
    } else {
        None
    };
    let (metas, mut headers) = match rows {
        Some(rows) => {
            let (metas, headers) = super::rows_by_uid(rows);
            (Some(metas), headers)
        }
        None => (None, HashMap::new()),
    };
    let max_seq = sel.exists();
    let max_uid = sel.last_uid().unwrap_or(0);
    let mut hits: Vec<(u32, u32, i64)> = Vec::new();
    for (seq, uid) in candidates {
        if sel.is_pending_expunge(uid) {
            continue;
        }
        let meta = match &metas {
            Some(metas) => match metas.get(&uid) {
                Some(meta) => Some(meta),
                None => continue,
            },
            None => None,
        };
        let blob = match meta.filter(|_| need_message) {
            Some(meta) => match headers.remove(&uid) {
                Some(header) => Some(header),
                None => match store.blobs().read(&meta.blob_path).await {
                    Ok(b) => Some(b),
                    Err(_) => continue,
                },
            },
            None => None,
        };
        let parsed = blob.as_deref().map(Parsed::new);
        let (flags, modseq) = match meta {
            Some(meta) => (meta.flags.as_slice(), meta.modseq),
            None => (sel.flags_at(seq), sel.modseq_at(seq)),
        };
        let candidate = Candidate {
            seq,
            uid,
            max_seq,
            max_uid,
            flags,
            modseq,
            recent: sel.is_recent(uid),
            meta,
            parsed: parsed.as_ref(),
        };
        if matches(key, &candidate) {
            hits.push((seq, uid, modseq));
        }
    }
    Ok(hits)
}

/// SEARCH's answer: ESEARCH (RFC 4731) when RETURN was given or for IMAP4rev2, else
/// `* SEARCH`.
fn answer(
    p: &mut Protocol,
    tag: &Tag<'_>,
    by_uid: bool,
    returns: Option<Vec<SearchReturn>>,
    hits: Vec<u32>,
    hit_modseqs: Vec<i64>,
    modseq: Option<NonZeroU64>,
) -> OpResult {
    // RETURN (SAVE) alone answers nothing but the tagged OK (RFC 5182 §2.1).
    if returns.as_ref().is_some_and(|r| r == &[SearchReturn::Save]) {
        return Ok(Outcome::Ok(None, String::new()));
    }
    if returns.is_some() || p.enabled.rev2 {
        let returns = returns.unwrap_or_default();
        let mut line = super::context::result_line(tag.as_ref(), by_uid, &returns, &hits);
        // RFC 7162 §3.1.5: with only MIN and/or MAX returned, MODSEQ is the highest of the
        // messages returned, not of every match.
        let min_max_only = returns
            .iter()
            .any(|r| matches!(r, SearchReturn::Min | SearchReturn::Max))
            && !returns.iter().any(|r| {
                matches!(
                    r,
                    SearchReturn::All | SearchReturn::Count | SearchReturn::Partial(_)
                )
            });
        let modseq = match (modseq, hit_modseqs.first(), hit_modseqs.last()) {
            (Some(_), Some(first), Some(last)) if min_max_only => {
                let mut m = 0;
                if returns.contains(&SearchReturn::Min) {
                    m = m.max(*first);
                }
                if returns.contains(&SearchReturn::Max) {
                    m = m.max(*last);
                }
                NonZeroU64::new(m as u64)
            }
            (m, ..) => m,
        };
        if let Some(m) = modseq {
            line.push_str(&format!(" MODSEQ {m}"));
        }
        response::raw(&mut p.out, &line);
    } else {
        let numbers: Vec<NonZeroU32> = hits.into_iter().filter_map(NonZeroU32::new).collect();
        response::data(&mut p.out, Data::Search(numbers, modseq));
    }
    Ok(Outcome::Ok(None, String::new()))
}
