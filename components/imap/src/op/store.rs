//! STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::response::Code;
use imap_codec::imap_types::sequence::SequenceSet;
use postbay_store::FlagChange;
use postbay_store::FlagState;

use crate::op::append::flag_names;
use crate::protocol::{bad, no, OpResult, Outcome, Protocol};
use crate::selected::flags_response;

pub async fn store(
    p: &mut Protocol,
    set: SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: Vec<Flag<'_>>,
    by_uid: bool,
    modifiers: Vec<StoreModifier>,
) -> OpResult {
    let mut unchanged_since = None;
    for m in &modifiers {
        let StoreModifier::UnchangedSince(v) = m;
        unchanged_since = Some((*v).min(i64::MAX as u64) as i64);
        p.enable_condstore();
    }
    let condstore = p.enabled.condstore;
    if p.selected.as_ref().is_some_and(|s| s.read_only) {
        return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    // The session's view of the flags is where the change starts from: bring it up to date.
    p.sync(false).await?;
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    let targets = sel.resolve(&set, by_uid).map_err(bad)?;
    let current: Vec<FlagState> = targets
        .iter()
        .filter(|(_, uid)| !sel.is_pending_expunge(*uid))
        .filter_map(|(_, uid)| sel.flag_state(*uid))
        .collect();
    let change = match kind {
        StoreType::Replace => FlagChange::Replace,
        StoreType::Add => FlagChange::Add,
        StoreType::Remove => FlagChange::Remove,
    };
    let names = flag_names(&flags);
    let update = p
        .ctx
        .store
        .store_flags_known(sel.folder_id, current, change, &names, unchanged_since)
        .await?;
    for m in &update.changed {
        sel.note_own_modseq(m.modseq);
        sel.set_flags(m);
        sel.note_keywords(&mut p.out, &m.flags);
    }
    let silent = matches!(response, StoreResponse::Silent);
    let mut reported: Vec<&FlagState> = update.changed.iter().collect();
    if !silent {
        reported.extend(update.unchanged.iter());
    }
    reported.sort_by_key(|m| m.uid);
    for meta in reported {
        // .SILENT still reports MODSEQ changes to CONDSTORE clients (RFC 7162 §3.1.3).
        if silent && !(condstore && unchanged_since.is_some()) {
            continue;
        }
        if let Some(seq) = sel.seq_of(meta.uid as u32) {
            let recent = sel.is_recent(meta.uid as u32);
            flags_response(&mut p.out, seq, meta, condstore, recent);
        }
    }
    if update.modified.is_empty() {
        return Ok(Outcome::Ok(None, String::new()));
    }
    let mut numbers: Vec<u32> = update
        .modified
        .iter()
        .filter_map(|uid| {
            if by_uid {
                Some(*uid as u32)
            } else {
                sel.seq_of(*uid as u32)
            }
        })
        .collect();
    numbers.sort_unstable();
    let set = SequenceSet::try_from(crate::response::sequence_set(&numbers).as_str())
        .map_err(|_| bad("internal sequence set error"))?;
    Ok(Outcome::Ok(
        Some(Code::Modified(set)),
        "Conditional STORE failed".into(),
    ))
}
