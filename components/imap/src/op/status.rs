//! STATUS (RFC 9051 §6.3.11, STATUS=SIZE RFC 8438, HIGHESTMODSEQ RFC 7162).

use std::num::NonZeroU32;

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Data;
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use crate::protocol::{no, ok, OpError, OpResult, Protocol};
use crate::response;

/// A STATUS item named in LIST ... RETURN (STATUS (...)).
pub fn item_name(name: &str) -> Option<StatusDataItemName> {
    Some(match name {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "DELETED" => StatusDataItemName::Deleted,
        "SIZE" => StatusDataItemName::Size,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
}

pub async fn values(
    p: &mut Protocol,
    folder_id: i64,
    names: &[StatusDataItemName],
) -> Result<Vec<StatusDataItem>, OpError> {
    let folder = p
        .ctx
        .store
        .folder_by_id(folder_id)
        .await?
        .ok_or_else(|| no(Some("NONEXISTENT"), "Mailbox doesn't exist"))?;
    let stats = p.ctx.store.folder_stats(folder_id).await?;
    let clamp = |v: i64| v.clamp(0, u32::MAX as i64) as u32;
    let mut out = Vec::new();
    for name in names {
        let item = match name {
            StatusDataItemName::Messages => StatusDataItem::Messages(clamp(stats.messages)),
            // Messages no session has been told of yet (RFC 3501 §6.3.10); IMAP4rev2 has none.
            StatusDataItemName::Recent if p.enabled.rev2 => StatusDataItem::Recent(0),
            StatusDataItemName::Recent => {
                StatusDataItem::Recent(clamp(p.ctx.store.recent_count(folder_id).await?))
            }
            StatusDataItemName::UidNext => StatusDataItem::UidNext(
                NonZeroU32::new(clamp(folder.uidnext)).unwrap_or(NonZeroU32::MIN),
            ),
            StatusDataItemName::UidValidity => StatusDataItem::UidValidity(
                NonZeroU32::new(clamp(folder.uidvalidity)).unwrap_or(NonZeroU32::MIN),
            ),
            StatusDataItemName::Unseen => StatusDataItem::Unseen(clamp(stats.unseen)),
            StatusDataItemName::Deleted => StatusDataItem::Deleted(clamp(stats.deleted)),
            StatusDataItemName::DeletedStorage => StatusDataItem::DeletedStorage(0),
            StatusDataItemName::Size => StatusDataItem::Size(stats.size.max(0) as u64),
            StatusDataItemName::HighestModSeq => {
                p.enable_condstore();
                StatusDataItem::HighestModSeq(folder.highest_modseq.max(0) as u64)
            }
        };
        out.push(item);
    }
    Ok(out)
}

pub async fn status(
    p: &mut Protocol,
    mailbox: Mailbox<'_>,
    names: &[StatusDataItemName],
) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let folder = p.folder(&name).await?;
    let items = values(p, folder.id, names).await?;
    let mailbox = crate::names::to_wire(&folder.name, p.utf8_names());
    response::data(
        &mut p.out,
        Data::Status {
            mailbox,
            items: items.into(),
        },
    );
    ok("")
}
