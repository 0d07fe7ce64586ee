//! GETQUOTA and GETQUOTAROOT (RFC 9208). Each account has one quota root, "", whose STORAGE
//! usage and limit (in KiB) come from the mailbox's `used_bytes` and `quota_bytes`. An account
//! without a limit has no quota root.

use imap_codec::imap_types::core::{AString, Vec1};
use imap_codec::imap_types::extensions::quota::{QuotaGet, Resource};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::Data;

use crate::protocol::{no, ok, OpError, OpResult, Protocol};
use crate::response;

const ROOT: &str = "";

/// (used KiB, limit KiB) when the account has a limit.
async fn usage(p: &Protocol) -> Result<Option<(u64, u64)>, OpError> {
    let address = &p.user()?.address;
    let mailbox = p
        .ctx
        .store
        .mailbox(address)
        .await?
        .ok_or_else(|| no(Some("NONEXISTENT"), "Account no longer exists"))?;
    if mailbox.quota_bytes <= 0 {
        return Ok(None);
    }
    let kib = |b: i64| (b.max(0) as u64).div_ceil(1024);
    Ok(Some((kib(mailbox.used_bytes), kib(mailbox.quota_bytes))))
}

fn quota_data(used: u64, limit: u64) -> Data<'static> {
    Data::Quota {
        root: AString::try_from(ROOT).expect("empty quoted"),
        quotas: Vec1::from(QuotaGet::new(Resource::Storage, used, limit)),
    }
}

pub async fn get_quota(p: &mut Protocol, root: AString<'_>) -> OpResult {
    if root.as_ref() != ROOT.as_bytes() {
        return Err(no(Some("NONEXISTENT"), "No such quota root"));
    }
    match usage(p).await? {
        Some((used, limit)) => {
            response::data(&mut p.out, quota_data(used, limit));
            ok("")
        }
        None => Err(no(
            Some("NONEXISTENT"),
            "No quota limit is set for this account",
        )),
    }
}

pub async fn get_quota_root(p: &mut Protocol, mailbox: Mailbox<'_>) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let folder = p.folder(&name).await?;
    let usage = usage(p).await?;
    let roots = match usage {
        Some(_) => vec![AString::try_from(ROOT).expect("empty quoted")],
        None => Vec::new(),
    };
    let mailbox = crate::names::to_wire(&folder.name, p.utf8_names());
    response::data(&mut p.out, Data::QuotaRoot { mailbox, roots });
    if let Some((used, limit)) = usage {
        response::data(&mut p.out, quota_data(used, limit));
    }
    ok("")
}
