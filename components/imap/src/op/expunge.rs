//! EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use std::num::NonZeroU32;

use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::sequence::SequenceSet;
use postbay_store::Store;

use crate::protocol::{bad, no, ok, OpResult, Protocol};
use crate::response;

/// UIDs flagged \Deleted, optionally only among `only`.
pub async fn deleted_uids(
    store: &Store,
    folder_id: i64,
    only: Option<&[u32]>,
) -> Result<Vec<i64>, postbay_store::Error> {
    let messages = store.messages(folder_id).await?;
    Ok(messages
        .into_iter()
        .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
        .filter(|m| only.is_none_or(|o| o.binary_search(&(m.uid as u32)).is_ok()))
        .map(|m| m.uid)
        .collect())
}

pub async fn expunge(p: &mut Protocol, uid_set: Option<SequenceSet>) -> OpResult {
    let sel = p.selected_mut()?;
    if sel.read_only {
        return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let folder_id = sel.folder_id;
    // Only messages this session knows may go; newer ones are announced first.
    let candidates: Vec<u32> = match &uid_set {
        Some(set) => sel
            .resolve(set, true)
            .map_err(bad)?
            .into_iter()
            .map(|(_, uid)| uid)
            .collect(),
        None => sel.uids.clone(),
    };
    let uids = deleted_uids(&p.ctx.store, folder_id, Some(&candidates)).await?;
    let mut removed = p.ctx.store.expunge(folder_id, &uids).await?;
    removed.sort_unstable();
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    for uid in removed.into_iter().rev() {
        if let Some(seq) = sel.remove(uid as u32).and_then(NonZeroU32::new) {
            response::data(&mut p.out, Data::Expunge(seq));
        }
    }
    ok("")
}
