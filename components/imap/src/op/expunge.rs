//! EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use imap_codec::imap_types::sequence::SequenceSet;

use crate::protocol::{bad, no, ok, OpResult, Protocol};

pub async fn expunge(p: &mut Protocol, uid_set: Option<SequenceSet>) -> OpResult {
    if p.selected_mut()?.read_only {
        return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    // Which messages are \Deleted is the session's view: bring it up to date first.
    p.sync(true).await?;
    let sel = p.selected_mut()?;
    let folder_id = sel.folder_id;
    // Only messages this session knows may go; newer ones are announced first.
    let among: Option<Vec<u32>> = match &uid_set {
        Some(set) => Some(
            sel.resolve(set, true)
                .map_err(bad)?
                .into_iter()
                .map(|(_, uid)| uid)
                .collect(),
        ),
        None => None,
    };
    let candidates: Vec<i64> = sel
        .deleted_among(among.as_deref())
        .into_iter()
        .map(i64::from)
        .collect();
    if candidates.is_empty() {
        return ok("");
    }
    let expunged = p.ctx.store.expunge_flagged(folder_id, &candidates).await?;
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    if let Some(modseq) = expunged.modseq {
        sel.note_own_modseq(modseq);
    }
    let gone: Vec<u32> = expunged.uids.into_iter().map(|u| u as u32).collect();
    sel.report_expunged(&mut p.out, gone, p.enabled.qresync);
    ok("")
}
