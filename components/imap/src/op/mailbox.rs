//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 9051 §6.3.4-8).

use imap_codec::imap_types::mailbox::Mailbox;
use postbay_store::Error as StoreError;

use crate::names::{self, DELIMITER};
use crate::protocol::{no, ok, OpResult, Protocol};

pub async fn create(p: &mut Protocol, mailbox: Mailbox<'_>) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let mailbox_id = p.user()?.mailbox_id;
    if name == "INBOX" {
        return Err(no(Some("ALREADYEXISTS"), "Mailbox already exists"));
    }
    // RFC 9051 §6.3.4: create the superior names the new one needs.
    for parent in names::parents(&name) {
        if p.ctx.store.folder(mailbox_id, parent).await?.is_none() {
            match p
                .ctx
                .store
                .create_folder_unique(mailbox_id, parent, None)
                .await
            {
                Ok(_) | Err(StoreError::FolderExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    match p
        .ctx
        .store
        .create_folder_unique(mailbox_id, &name, None)
        .await
    {
        Ok(_) => ok(""),
        Err(StoreError::FolderExists(_)) => {
            Err(no(Some("ALREADYEXISTS"), "Mailbox already exists"))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(p: &mut Protocol, mailbox: Mailbox<'_>) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    if name == "INBOX" {
        return Err(no(Some("CANNOT"), "INBOX can't be deleted."));
    }
    let folder = p.folder(&name).await?;
    if p.selected
        .as_ref()
        .is_some_and(|s| s.folder_id == folder.id)
    {
        p.selected = None;
    }
    p.ctx.store.delete_folder(folder.id).await?;
    ok("")
}

pub async fn rename(p: &mut Protocol, from: Mailbox<'_>, to: Mailbox<'_>) -> OpResult {
    let from = p.mailbox_name(&from)?;
    let to = p.mailbox_name(&to)?;
    let mailbox_id = p.user()?.mailbox_id;
    if to == "INBOX" {
        return Err(no(Some("ALREADYEXISTS"), "Target mailbox already exists"));
    }
    if to.starts_with(&format!("{from}{DELIMITER}")) {
        return Err(no(Some("CANNOT"), "Can't rename a mailbox under itself"));
    }
    let source = p.folder(&from).await?;
    if p.ctx.store.folder(mailbox_id, &to).await?.is_some() {
        return Err(no(Some("ALREADYEXISTS"), "Target mailbox already exists"));
    }
    for parent in names::parents(&to) {
        if p.ctx.store.folder(mailbox_id, parent).await?.is_none() {
            match p
                .ctx
                .store
                .create_folder_unique(mailbox_id, parent, None)
                .await
            {
                Ok(_) | Err(StoreError::FolderExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if from == "INBOX" {
        // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and leaves
        // INBOX empty.
        let target = match p
            .ctx
            .store
            .create_folder_unique(mailbox_id, &to, None)
            .await
        {
            Ok(f) => f,
            Err(StoreError::FolderExists(_)) => {
                return Err(no(Some("ALREADYEXISTS"), "Target mailbox already exists"))
            }
            Err(e) => return Err(e.into()),
        };
        let uids: Vec<i64> = p
            .ctx
            .store
            .messages(source.id)
            .await?
            .iter()
            .map(|m| m.uid)
            .collect();
        p.ctx
            .store
            .move_messages(source.id, &uids, target.id)
            .await?;
        return ok("");
    }
    match p
        .ctx
        .store
        .rename_folder(mailbox_id, &from, &to, DELIMITER)
        .await
    {
        Ok(()) => {
            // The selected folder keeps its id; its row (name, maybe UIDVALIDITY) changed.
            let renamed = p.ctx.store.folder_by_id(source.id).await?;
            if let Some(sel) = p.selected.as_mut().filter(|s| s.folder_id == source.id) {
                sel.name = to;
                if let Some(folder) = renamed {
                    sel.folder = folder;
                }
            }
            ok("")
        }
        Err(StoreError::FolderExists(_)) => {
            Err(no(Some("ALREADYEXISTS"), "Target mailbox already exists"))
        }
        Err(e) => Err(e.into()),
    }
}

/// SUBSCRIBE and UNSUBSCRIBE change the subscription list only: the name need not exist
/// (RFC 9051 §6.3.7, "a server MUST NOT unilaterally remove an existing mailbox name from the
/// subscription list"), and unsubscribing a name not subscribed is not an error.
pub async fn subscribe(p: &mut Protocol, mailbox: Mailbox<'_>, on: bool) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let mailbox_id = p.user()?.mailbox_id;
    if on {
        match p.ctx.store.subscribe(mailbox_id, &name).await {
            Ok(()) => {}
            Err(StoreError::TooManySubscriptions(n)) => {
                return Err(no(Some("LIMIT"), format!("At most {n} subscriptions")))
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        p.ctx.store.unsubscribe(mailbox_id, &name).await?;
    }
    ok("")
}
