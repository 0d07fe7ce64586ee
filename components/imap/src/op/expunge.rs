//! EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use std::num::NonZeroU32;

use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::protocol::{bad, no, ok, OpResult, Protocol};
use crate::response;

pub async fn expunge(p: &mut Protocol, uid_set: Option<SequenceSet>) -> OpResult {
    let sel = p.selected_mut()?;
    if sel.read_only {
        return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let folder_id = sel.folder_id;
    // Only messages this session knows may go; newer ones are announced first.
    let candidates: Vec<i64> = match &uid_set {
        Some(set) => sel
            .resolve(set, true)
            .map_err(bad)?
            .into_iter()
            .map(|(_, uid)| uid as i64)
            .collect(),
        None => sel.uids.iter().map(|u| *u as i64).collect(),
    };
    let expunged = p
        .ctx
        .store
        .expunge_deleted(folder_id, Some(&candidates))
        .await?;
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    if let Some(modseq) = expunged.modseq {
        sel.note_own_modseq(modseq);
    }
    for uid in expunged.uids.into_iter().rev() {
        if let Some(seq) = sel.remove(uid as u32).and_then(NonZeroU32::new) {
            response::data(&mut p.out, Data::Expunge(seq));
        }
    }
    ok("")
}
