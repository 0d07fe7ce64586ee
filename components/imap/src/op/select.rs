//! SELECT and EXAMINE (RFC 9051 §6.3.2-3, CONDSTORE RFC 7162 §3.1.8, QRESYNC §3.2.5),
//! UNSELECT (RFC 3691), CLOSE (§6.4.1).

use std::num::{NonZeroU32, NonZeroU64};

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, Data, StatusKind};
use imap_codec::imap_types::sequence::SequenceSet;
use postbay_store::FlagState;

use crate::names;
use crate::protocol::{bad, no, ok, OpResult, Outcome, Protocol};
use crate::response;
use crate::selected::{self, Selected};

/// What a client that synced this folder before remembers (RFC 7162 §3.2.5).
struct Resync {
    uidvalidity: u32,
    modseq: i64,
    known_uids: Option<SequenceSet>,
}

pub async fn select(
    p: &mut Protocol,
    mailbox: Mailbox<'_>,
    parameters: Vec<SelectParameter>,
    read_only: bool,
) -> OpResult {
    let mut resync = None;
    for param in parameters {
        match param {
            // The HIGHESTMODSEQ below is the report CONDSTORE's enabling asks for.
            SelectParameter::CondStore => p.enabled.condstore = true,
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                // Only narrows what VANISHED must list (§3.2.5.2); listing every UID
                // expunged since the modseq is always correct.
                seq_match_data: _,
            } => {
                if !p.enabled.qresync {
                    return Err(bad(
                        "QRESYNC parameter without ENABLE QRESYNC (RFC 7162 §3.2.5)",
                    ));
                }
                resync = Some(Resync {
                    uidvalidity: uid_validity.get(),
                    modseq: mod_sequence_value.get().min(i64::MAX as u64) as i64,
                    known_uids,
                });
            }
        }
    }
    if p.selected.take().is_some() {
        response::untagged(
            &mut p.out,
            StatusKind::Ok,
            Some(Code::Closed),
            "Previous mailbox closed.",
        );
    }

    let name = p.mailbox_name(&mailbox)?;
    let folder = p.folder(&name).await?;
    let Some((folder, messages)) = p.ctx.store.folder_snapshot(folder.id).await? else {
        return Err(no(
            Some("NONEXISTENT"),
            format!("Mailbox doesn't exist: {name}"),
        ));
    };
    let watch = p.ctx.store.watch_folder(folder.id, folder.highest_modseq);
    let mut sel = Selected::new(&folder, &messages, read_only, watch);

    sel.announce_flags(&mut p.out);
    response::data(&mut p.out, Data::Exists(sel.exists()));
    if !p.enabled.rev2 {
        let recent = sel.start_recent(&p.ctx.store).await?;
        response::data(&mut p.out, Data::Recent(recent));
        let first_unseen = messages
            .iter()
            .position(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Seen")));
        if let Some(seq) = first_unseen.and_then(|i| NonZeroU32::new(i as u32 + 1)) {
            response::untagged(
                &mut p.out,
                StatusKind::Ok,
                Some(Code::Unseen(seq)),
                "First unseen.",
            );
        }
    }
    if let Some(v) = NonZeroU32::new(sel.uidvalidity) {
        response::untagged(
            &mut p.out,
            StatusKind::Ok,
            Some(Code::UidValidity(v)),
            "UIDs valid",
        );
    }
    if let Some(next) = NonZeroU32::new(folder.uidnext.clamp(1, u32::MAX as i64) as u32) {
        response::untagged(
            &mut p.out,
            StatusKind::Ok,
            Some(Code::UidNext(next)),
            "Predicted next UID",
        );
    }
    if p.enabled.condstore {
        match NonZeroU64::new(folder.highest_modseq as u64) {
            Some(m) => response::untagged(
                &mut p.out,
                StatusKind::Ok,
                Some(Code::HighestModSeq(m)),
                "Highest",
            ),
            None => response::untagged(
                &mut p.out,
                StatusKind::Ok,
                Some(Code::NoModSeq),
                "No modseq",
            ),
        }
    }
    if p.enabled.rev2 {
        response::data(
            &mut p.out,
            Data::List {
                items: Vec::new(),
                delimiter: Some(imap_codec::imap_types::core::QuotedChar::unvalidated(
                    names::DELIMITER,
                )),
                mailbox: names::to_wire(&folder.name, true),
            },
        );
    }
    if let Some(resync) = resync.filter(|r| r.uidvalidity == sel.uidvalidity) {
        // RFC 7162 §3.2.5.1: what was expunged since, then what changed since; a client
        // with another UIDVALIDITY gets neither and starts over.
        let known = |uid: u32| {
            resync
                .known_uids
                .as_ref()
                .is_none_or(|set| selected::uid_set_contains(set, uid))
        };
        sel.report_vanished_since(&p.ctx.store, &mut p.out, resync.modseq, known)
            .await?;
        for (i, m) in messages.iter().enumerate() {
            if m.modseq > resync.modseq && known(m.uid as u32) {
                let state = FlagState::from(m);
                let recent = sel.is_recent(m.uid as u32);
                selected::flags_response(&mut p.out, i as u32 + 1, &state, true, recent);
            }
        }
    }
    tracing::debug!(peer = %p.peer, mailbox = %folder.name, read_only, "selected");
    p.selected = Some(sel);
    let code = if read_only {
        Code::ReadOnly
    } else {
        Code::ReadWrite
    };
    Ok(Outcome::Ok(
        Some(code),
        format!("{} completed", if read_only { "EXAMINE" } else { "SELECT" }),
    ))
}

pub fn unselect(p: &mut Protocol) -> OpResult {
    p.selected = None;
    ok("")
}

/// CLOSE expunges \Deleted messages silently (no EXPUNGE responses) unless read-only.
pub async fn close(p: &mut Protocol) -> OpResult {
    if let Some(sel) = p.selected.take() {
        if !sel.read_only {
            p.ctx.store.expunge_deleted(sel.folder_id, None).await?;
        }
    }
    ok("")
}
