//! COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851), both with COPYUID (RFC 4315).

use std::num::NonZeroU32;

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, StatusKind};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::protocol::{bad, no, OpError, OpResult, Outcome, Protocol};
use crate::response;

/// Ascending UIDs as a compact UID set.
fn uid_set(uids: &[i64]) -> Option<UidSet> {
    let mut elements: Vec<UidElement> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        let a = NonZeroU32::new(start as u32)?;
        let b = NonZeroU32::new(end as u32)?;
        elements.push(if a == b {
            UidElement::Single(a)
        } else {
            UidElement::Range(a, b)
        });
        i += 1;
    }
    Vec1::try_from(elements).ok().map(UidSet)
}

pub async fn copy(
    p: &mut Protocol,
    set: SequenceSet,
    mailbox: Mailbox<'_>,
    by_uid: bool,
    is_move: bool,
) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let target = match p.folder(&name).await {
        Ok(f) => f,
        Err(OpError::No(..)) => {
            return Err(no(
                Some("TRYCREATE"),
                format!("Mailbox doesn't exist: {name}"),
            ))
        }
        Err(e) => return Err(e),
    };
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    if is_move && sel.read_only {
        return Err(no(Some("READ-ONLY"), "Mailbox is read-only"));
    }
    let uids: Vec<i64> = sel
        .resolve(&set, by_uid)
        .map_err(bad)?
        .into_iter()
        .map(|(_, uid)| uid as i64)
        .collect();
    let copied = if is_move {
        p.ctx
            .store
            .move_messages(sel.folder_id, &uids, target.id)
            .await?
    } else {
        p.ctx
            .store
            .copy_messages(sel.folder_id, &uids, target.id)
            .await?
    };
    if copied.pairs.is_empty() {
        return Ok(Outcome::Ok(None, "No messages found".into()));
    }
    let sources: Vec<i64> = copied.pairs.iter().map(|(s, _)| *s).collect();
    let destinations: Vec<i64> = copied.pairs.iter().map(|(_, d)| *d).collect();
    if let (Some(learner), Some(class)) = (
        &p.ctx.learner,
        crate::learn::direction(
            sel.folder.special_use.as_deref(),
            target.special_use.as_deref(),
        ),
    ) {
        let (first, last) = (
            destinations.iter().copied().min().unwrap_or(0),
            destinations.iter().copied().max().unwrap_or(0),
        );
        let blobs: Vec<String> = p
            .ctx
            .store
            .messages_with_headers(target.id, first, last)
            .await?
            .into_iter()
            .filter(|(m, _)| destinations.contains(&m.uid))
            .map(|(m, _)| m.blob_path)
            .collect();
        let mailbox = p
            .user
            .as_ref()
            .map(|u| u.address.clone())
            .unwrap_or_default();
        learner.learn(p.ctx.store.clone(), mailbox, blobs, class);
    }
    let code = match (
        NonZeroU32::new(copied.uidvalidity as u32),
        uid_set(&sources),
        uid_set(&destinations),
    ) {
        (Some(uid_validity), Some(source), Some(destination)) => Some(Code::CopyUid {
            uid_validity,
            source,
            destination,
        }),
        _ => None,
    };
    if !is_move {
        return Ok(Outcome::Ok(code, "COPY completed".into()));
    }
    // RFC 6851 §4.3: COPYUID goes in an untagged OK before the EXPUNGEs.
    response::untagged(&mut p.out, StatusKind::Ok, code, "Moved UIDs.");
    let moved: Vec<u32> = sources.iter().map(|u| *u as u32).collect();
    sel.report_expunged(&mut p.out, moved, p.enabled.qresync);
    Ok(Outcome::Ok(None, "MOVE completed".into()))
}
