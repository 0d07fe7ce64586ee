//! FETCH (RFC 9051 §6.4.5) with BINARY (RFC 3516), CONDSTORE's MODSEQ and CHANGEDSINCE
//! (RFC 7162 §3.1.4-5) and QRESYNC's VANISHED modifier (§3.2.6). Output is handed to the [`Sink`] whenever it grows large, so fetching
//! a whole big mailbox streams instead of piling up in memory.

use std::collections::{HashMap, HashSet};
use std::num::{NonZeroU32, NonZeroU64};

use chrono::{FixedOffset, TimeZone};
use imap_codec::imap_types::command::FetchModifier;
use imap_codec::imap_types::core::{IString, Literal, NString, NString8, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::Literal8;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::IntoStatic;
use postbay_store::FlagChange;
use postbay_store::FlagState;
use postbay_store::MessageMeta;

use crate::message::{BinaryError, Parsed};
use crate::protocol::{bad, no, OpError, OpResult, Outcome, Protocol};
use crate::response;
use crate::selected::fetch_flags;
use crate::Sink;
use postbay_net::wire::FLUSH_THRESHOLD;

/// Body data as a literal. Literals cannot carry NUL (RFC 9051 §4.3); like Dovecot, NULs in
/// non-BINARY fetches are sent as 0x80.
pub fn literal(mut data: Vec<u8>) -> NString<'static> {
    if data.contains(&0) {
        for b in data.iter_mut().filter(|b| **b == 0) {
            *b = 0x80;
        }
    }
    match Literal::try_from(data) {
        Ok(l) => NString(Some(IString::Literal(l))),
        Err(_) => NString(None),
    }
}

fn partial(data: &[u8], partial: Option<(u32, NonZeroU32)>) -> Vec<u8> {
    match partial {
        None => data.to_vec(),
        Some((origin, length)) => {
            let start = (origin as usize).min(data.len());
            let end = start.saturating_add(length.get() as usize).min(data.len());
            data[start..end].to_vec()
        }
    }
}

pub fn internal_date(ts: i64) -> Option<DateTime> {
    let utc = FixedOffset::east_opt(0)?;
    let dt = utc.timestamp_opt(ts, 0).single()?;
    DateTime::try_from(dt).ok()
}

fn needs_blob(name: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    !matches!(
        name,
        N::Flags | N::InternalDate | N::Rfc822Size | N::Uid | N::ModSeq
    )
}

/// Whether the item needs no more of the message than its header section (so the header
/// cache can answer it): ENVELOPE, RFC822.HEADER and the top-level HEADER sections.
fn header_only(name: &MessageDataItemName<'_>) -> bool {
    use imap_codec::imap_types::fetch::Section;
    use MessageDataItemName as N;
    match name {
        N::Envelope | N::Rfc822Header => true,
        N::BodyExt { section, .. } => matches!(
            section,
            Some(Section::Header(None))
                | Some(Section::HeaderFields(None, _))
                | Some(Section::HeaderFieldsNot(None, _))
        ),
        _ => false,
    }
}

/// Whether the item needs the message's row (or body); FLAGS, UID and MODSEQ are known to
/// the session.
fn needs_meta(name: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    !matches!(name, N::Flags | N::Uid | N::ModSeq)
}

fn sets_seen(name: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName as N;
    matches!(
        name,
        N::BodyExt { peek: false, .. } | N::Binary { peek: false, .. } | N::Rfc822 | N::Rfc822Text
    )
}

pub async fn fetch<S: Sink>(
    p: &mut Protocol,
    sink: &mut S,
    set: SequenceSet,
    items: MacroOrMessageDataItemNames<'_>,
    by_uid: bool,
    modifiers: Vec<FetchModifier>,
) -> OpResult {
    let mut changed_since = None;
    let mut want_vanished = false;
    for m in modifiers {
        match m {
            FetchModifier::ChangedSince(v) => {
                changed_since = Some(v.get().min(i64::MAX as u64) as i64);
                p.enable_condstore();
            }
            FetchModifier::Vanished => want_vanished = true,
        }
    }
    if want_vanished {
        // RFC 7162 §3.2.6: only UID FETCH, only with CHANGEDSINCE, only after ENABLE QRESYNC.
        let since = match (p.enabled.qresync, by_uid, changed_since) {
            (false, _, _) => return Err(bad("VANISHED without ENABLE QRESYNC")),
            (_, false, _) => return Err(bad("VANISHED is for UID FETCH only")),
            (_, _, None) => return Err(bad("VANISHED needs CHANGEDSINCE")),
            (true, true, Some(since)) => since,
        };
        let sel = p
            .selected
            .as_ref()
            .ok_or_else(|| bad("No mailbox selected"))?;
        let wanted = |uid| crate::selected::uid_set_contains(&set, uid);
        sel.report_vanished_since(&p.ctx.store, &mut p.out, since, wanted)
            .await?;
    }
    let names: Vec<MessageDataItemName<'static>> = match items {
        MacroOrMessageDataItemNames::Macro(m) => m
            .expand()
            .into_iter()
            .map(IntoStatic::into_static)
            .collect(),
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
            v.into_iter().map(IntoStatic::into_static).collect()
        }
    };
    if names
        .iter()
        .any(|n| matches!(n, MessageDataItemName::ModSeq))
    {
        p.enable_condstore();
    }
    let condstore = p.enabled.condstore;
    let want_modseq = names
        .iter()
        .any(|n| matches!(n, MessageDataItemName::ModSeq))
        || changed_since.is_some();
    let want_uid = by_uid || names.iter().any(|n| matches!(n, MessageDataItemName::Uid));
    let want_blob = names.iter().any(needs_blob);
    if !names.iter().any(needs_meta) {
        return fetch_known(p, sink, set, &names, by_uid, changed_since, want_modseq).await;
    }

    let sel = p
        .selected
        .as_ref()
        .ok_or_else(|| bad("No mailbox selected"))?;
    let read_only = sel.read_only;
    let folder_id = sel.folder_id;
    let targets = sel.resolve(&set, by_uid).map_err(bad)?;
    if targets.is_empty() {
        return Ok(Outcome::Ok(None, String::new()));
    }
    let first = targets.first().map(|t| t.1).unwrap_or(1) as i64;
    let last = targets.last().map(|t| t.1).unwrap_or(1) as i64;
    // Headers alone (ENVELOPE, header sections: what a message list asks for) come from the
    // header cache; a message without a cached header is read from its blob.
    let headers_suffice = want_blob && names.iter().filter(|n| needs_blob(n)).all(header_only);
    let rows = if headers_suffice {
        p.ctx
            .store
            .messages_with_headers(folder_id, first, last)
            .await?
    } else {
        p.ctx
            .store
            .messages_in_uid_range(folder_id, first, last)
            .await?
            .into_iter()
            .map(|m| (m, None))
            .collect()
    };
    let (mut metas, mut headers) = super::rows_by_uid(rows);

    // RFC 9051 §6.4.5: fetching body data without .PEEK sets \Seen (not in EXAMINE).
    let mut flags_changed: HashSet<u32> = HashSet::new();
    if !read_only && names.iter().any(sets_seen) {
        // The rows just read are the starting point; no need to read them again.
        let unseen: Vec<FlagState> = targets
            .iter()
            .filter_map(|(_, uid)| metas.get(uid))
            .filter(|m| changed_since.is_none_or(|c| m.modseq > c))
            .filter(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")))
            .map(FlagState::from)
            .collect();
        if !unseen.is_empty() {
            let update = p
                .ctx
                .store
                .store_flags_known(
                    folder_id,
                    unseen,
                    FlagChange::Add,
                    &["\\Seen".to_string()],
                    None,
                )
                .await?;
            let sel = p
                .selected
                .as_mut()
                .ok_or_else(|| bad("No mailbox selected"))?;
            for m in update.changed {
                sel.note_own_modseq(m.modseq);
                sel.set_flags(&m);
                flags_changed.insert(m.uid as u32);
                if let Some(meta) = metas.get_mut(&(m.uid as u32)) {
                    meta.flags = m.flags;
                    meta.modseq = m.modseq;
                }
            }
        }
    }

    // RFC 3501 §7.2.6: keywords these messages carry are announced before their FETCH.
    if let Some(sel) = p.selected.as_mut() {
        for meta in metas.values() {
            sel.note_keywords(&mut p.out, &meta.flags);
        }
    }
    let mut missing = false;
    // Bodies read ahead, by UID: a FETCH of many messages costs one blocking-pool trip per
    // READ_AHEAD_BYTES, not one per message.
    let mut blobs: HashMap<u32, Result<Vec<u8>, postbay_store::Error>> = HashMap::new();
    for (i, &(seq, uid)) in targets.iter().enumerate() {
        let Some(meta) = metas.get(&uid) else {
            missing = true;
            continue;
        };
        if changed_since.is_some_and(|c| meta.modseq <= c) {
            continue;
        }
        let cached = headers.remove(&uid);
        if want_blob && cached.is_none() && !blobs.contains_key(&uid) {
            blobs = read_ahead(p, &targets[i..], &metas, changed_since, &headers).await;
        }
        let blob = match (want_blob, cached) {
            (false, _) => None,
            (true, Some(header)) => Some(header),
            (true, None) => match blobs.remove(&uid) {
                Some(Ok(b)) => Some(b),
                None => {
                    // read_ahead starts at this message, so this cannot happen; if it ever
                    // does, the message is reported missing rather than the session dying.
                    tracing::warn!(uid, "message body was not read ahead");
                    missing = true;
                    continue;
                }
                Some(Err(e)) => {
                    // Expunged by another session after we listed it.
                    tracing::debug!(error = %e, uid, "message body unavailable");
                    missing = true;
                    continue;
                }
            },
        };
        let parsed = blob.as_deref().map(Parsed::new);
        let recent = p.selected.as_ref().is_some_and(|s| s.is_recent(uid));
        let mut items: Vec<MessageDataItem<'static>> = Vec::with_capacity(names.len() + 2);
        if want_uid {
            if let Some(u) = NonZeroU32::new(uid) {
                items.push(MessageDataItem::Uid(u));
            }
        }
        let mut has_flags = false;
        for name in &names {
            if let Some(item) = item(name, meta, parsed.as_ref(), recent)? {
                has_flags |= matches!(item, MessageDataItem::Flags(_));
                items.push(item);
            }
        }
        if flags_changed.contains(&uid) && !has_flags {
            items.push(MessageDataItem::Flags(fetch_flags(&meta.flags, recent)));
            has_flags = true;
        }
        if (want_modseq || (condstore && has_flags))
            && !items
                .iter()
                .any(|i| matches!(i, MessageDataItem::ModSeq(_)))
        {
            if let Some(m) = NonZeroU64::new(meta.modseq as u64) {
                items.push(MessageDataItem::ModSeq(m));
            }
        }
        emit(&mut p.out, sink, seq, items).await?;
    }
    completed(missing)
}

/// FETCH of FLAGS, UID and MODSEQ only (what clients syncing flags ask for most), answered
/// from the session's view of the folder, brought up to date first, without a store read.
async fn fetch_known<S: Sink>(
    p: &mut Protocol,
    sink: &mut S,
    set: SequenceSet,
    names: &[MessageDataItemName<'static>],
    by_uid: bool,
    changed_since: Option<i64>,
    want_modseq: bool,
) -> OpResult {
    p.sync(false).await?;
    let condstore = p.enabled.condstore;
    let want_uid = by_uid || names.iter().any(|n| matches!(n, MessageDataItemName::Uid));
    let want_flags = names
        .iter()
        .any(|n| matches!(n, MessageDataItemName::Flags));
    let Some(sel) = p.selected.as_ref() else {
        return Err(bad("No mailbox selected"));
    };
    let mut missing = false;
    for (seq, uid) in sel.resolve(&set, by_uid).map_err(bad)? {
        if sel.is_pending_expunge(uid) {
            missing = true;
            continue;
        }
        let modseq = sel.modseq_at(seq);
        if changed_since.is_some_and(|c| modseq <= c) {
            continue;
        }
        let mut items: Vec<MessageDataItem<'static>> = Vec::with_capacity(3);
        if want_uid {
            if let Some(u) = NonZeroU32::new(uid) {
                items.push(MessageDataItem::Uid(u));
            }
        }
        if want_flags {
            let recent = sel.is_recent(uid);
            items.push(MessageDataItem::Flags(fetch_flags(
                sel.flags_at(seq),
                recent,
            )));
        }
        if want_modseq || (condstore && want_flags) {
            if let Some(m) = NonZeroU64::new(modseq as u64) {
                items.push(MessageDataItem::ModSeq(m));
            }
        }
        emit(&mut p.out, sink, seq, items).await?;
    }
    completed(missing)
}

/// Writes one untagged FETCH, handing the output to the sink whenever it grows large.
async fn emit<S: Sink>(
    out: &mut Vec<u8>,
    sink: &mut S,
    seq: u32,
    items: Vec<MessageDataItem<'static>>,
) -> Result<(), OpError> {
    if let (Some(seq), Ok(items)) = (NonZeroU32::new(seq), Vec1::try_from(items)) {
        response::data(out, Data::Fetch { seq, items });
    }
    if out.len() >= FLUSH_THRESHOLD {
        sink.write(out)
            .await
            .map_err(|e| OpError::Close(format!("write failed: {e}")))?;
    }
    Ok(())
}

/// The tagged result: NO [EXPUNGEISSUED] when some messages had gone (RFC 9051 §7.1).
fn completed(missing: bool) -> OpResult {
    if missing {
        return Err(no(
            Some("EXPUNGEISSUED"),
            "Some of the requested messages no longer exist",
        ));
    }
    Ok(Outcome::Ok(None, String::new()))
}

/// Bytes read ahead per trip to the blocking pool: large enough that a FETCH of many small
/// messages makes few trips, small enough that big messages still go one at a time.
const READ_AHEAD_BYTES: i64 = 4 << 20;

/// Reads the blobs of the next messages `fetch` will answer from their blob (those it does
/// not skip and has no cached header for), up to [`READ_AHEAD_BYTES`] but at least one, in
/// one trip; in the order they are answered.
async fn read_ahead(
    p: &Protocol,
    targets: &[(u32, u32)],
    metas: &HashMap<u32, MessageMeta>,
    changed_since: Option<i64>,
    headers: &HashMap<u32, Vec<u8>>,
) -> HashMap<u32, Result<Vec<u8>, postbay_store::Error>> {
    let mut uids = Vec::new();
    let mut paths = Vec::new();
    let mut bytes = 0;
    for (_, uid) in targets {
        let Some(meta) = metas.get(uid) else { continue };
        if changed_since.is_some_and(|c| meta.modseq <= c) || headers.contains_key(uid) {
            continue;
        }
        if !paths.is_empty() && bytes + meta.size > READ_AHEAD_BYTES {
            break;
        }
        bytes += meta.size;
        uids.push(*uid);
        paths.push(meta.blob_path.clone());
    }
    let read = p.ctx.store.blobs().read_many(paths).await;
    uids.into_iter().zip(read).collect()
}

fn item(
    name: &MessageDataItemName<'static>,
    meta: &MessageMeta,
    parsed: Option<&Parsed<'_>>,
    recent: bool,
) -> Result<Option<MessageDataItem<'static>>, OpError> {
    use MessageDataItemName as N;
    let body = || parsed.ok_or_else(|| bad("internal: body not loaded"));
    Ok(Some(match name {
        N::Uid => return Ok(None),
        N::Flags => MessageDataItem::Flags(fetch_flags(&meta.flags, recent)),
        N::InternalDate => match internal_date(meta.internal_date) {
            Some(d) => MessageDataItem::InternalDate(d),
            None => return Ok(None),
        },
        N::Rfc822Size => MessageDataItem::Rfc822Size(meta.size.clamp(0, u32::MAX as i64) as u32),
        N::ModSeq => match NonZeroU64::new(meta.modseq as u64) {
            Some(m) => MessageDataItem::ModSeq(m),
            None => return Ok(None),
        },
        N::Envelope => MessageDataItem::Envelope(body()?.envelope()),
        N::Body => MessageDataItem::Body(body()?.body_structure(false)),
        N::BodyStructure => MessageDataItem::BodyStructure(body()?.body_structure(true)),
        N::Rfc822 => MessageDataItem::Rfc822(literal(body()?.raw().to_vec())),
        N::Rfc822Header => MessageDataItem::Rfc822Header(literal(body()?.header().to_vec())),
        N::Rfc822Text => MessageDataItem::Rfc822Text(literal(body()?.text().to_vec())),
        N::BodyExt {
            section,
            partial: range,
            ..
        } => {
            let data = body()?
                .section(section.as_ref())
                .map(|d| partial(&d, *range))
                .unwrap_or_default();
            MessageDataItem::BodyExt {
                section: section.clone(),
                origin: range.map(|(o, _)| o),
                data: literal(data),
            }
        }
        N::Binary {
            section,
            partial: range,
            ..
        } => {
            let decoded = body()?.binary(section).map_err(binary_error)?;
            let value = match decoded {
                None => NString8::NString(NString(None)),
                Some(d) => {
                    let d = partial(&d, *range);
                    if d.contains(&0) {
                        NString8::Literal8(Literal8 {
                            data: d.into(),
                            mode: imap_codec::imap_types::core::LiteralMode::Sync,
                        })
                    } else {
                        NString8::NString(literal(d))
                    }
                }
            };
            // RFC 3516 §4.3: a partial answer names its origin (vendor/PATCHES.md).
            MessageDataItem::Binary {
                section: section.clone(),
                origin: range.map(|(o, _)| o),
                value,
            }
        }
        N::BinarySize { section } => {
            let decoded = body()?.binary(section).map_err(binary_error)?;
            MessageDataItem::BinarySize {
                section: section.clone(),
                size: decoded.map(|d| d.len() as u32).unwrap_or(0),
            }
        }
    }))
}

fn binary_error(e: BinaryError) -> OpError {
    match e {
        BinaryError::UnknownCte => no(Some("UNKNOWN-CTE"), "Unknown Content-Transfer-Encoding"),
        BinaryError::Multipart => no(None, "BINARY of a multipart part is not possible"),
    }
}
