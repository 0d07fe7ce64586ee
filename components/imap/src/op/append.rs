//! APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315), literal8 (RFC 3516) and
//! MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469, [`super::catenate`]). Messages go through `Store::deliver`, so UIDs come from the same
//! locked counter as mail delivery.

use std::num::NonZeroU32;

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Code, CodeOther};
use imap_codec::CommandCodec;
use postbay_store::blobs::bytes_owned::Part;
use postbay_store::NewMessage;

use crate::protocol::{bad, no, OpResult, Outcome, Protocol};

/// Stored spelling of flags a client sets; \Recent is server-managed and dropped.
pub fn flag_names(flags: &[Flag<'_>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        let name = f.to_string();
        if name.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&name)) {
            out.push(name);
        }
    }
    out
}

pub async fn append(
    p: &mut Protocol,
    mailbox: Mailbox<'_>,
    flags: Vec<Flag<'_>>,
    date: Option<DateTime>,
    message: LiteralOrLiteral8<'_>,
) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let user = p.user()?.clone();
    let message = new_message((flags, date, message))?;
    let flags = message.flags.clone();
    let store = &p.ctx.store;
    // Into the selected folder (unless renamed or deleted meanwhile), the session knows
    // where it goes; elsewhere it is looked up.
    let gone = p
        .selected
        .as_mut()
        .is_some_and(|s| matches!(s.watch.current(), postbay_store::Version::Gone));
    let known = p.selected.as_ref().filter(|s| s.name == name && !gone);
    let delivered = match known {
        Some(sel) => {
            match store
                .deliver_known(user.mailbox_id, &user.home, &sel.folder, message.clone())
                .await
            {
                // Renamed or deleted by someone else since SELECT: look the name up.
                Err(postbay_store::Error::NoSuchFolder(_)) => {
                    store.deliver(&user.address, &name, message).await
                }
                other => other,
            }
        }
        None => store.deliver(&user.address, &name, message).await,
    }
    .map_err(|e| match e {
        postbay_store::Error::NoSuchFolder(_) => {
            no(Some("TRYCREATE"), format!("Mailbox doesn't exist: {name}"))
        }
        other => other.into(),
    })?;
    if !delivered.duplicate {
        if let Some(sel) = p.selected.as_mut().filter(|s| s.name == name) {
            sel.note_own_append(
                delivered.modseq,
                delivered.uid.clamp(0, u32::MAX as i64) as u32,
                &flags,
            );
        }
    }
    let code = match (
        NonZeroU32::new(delivered.uidvalidity.clamp(0, u32::MAX as i64) as u32),
        NonZeroU32::new(delivered.uid.clamp(0, u32::MAX as i64) as u32),
    ) {
        (Some(uid_validity), Some(uid)) => Some(Code::AppendUid { uid_validity, uid }),
        _ => None,
    };
    Ok(Outcome::Ok(code, "APPEND completed".into()))
}

/// One message of an APPEND: its flags, internal date and bytes.
pub type AppendPart<'a> = (Vec<Flag<'a>>, Option<DateTime>, LiteralOrLiteral8<'a>);

fn new_message(
    (flags, date, message): AppendPart<'_>,
) -> Result<NewMessage, crate::protocol::OpError> {
    let data: Vec<u8> = match message {
        LiteralOrLiteral8::Literal(l) => l.as_ref().to_vec(),
        LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
    };
    if data.is_empty() {
        return Err(no(None, "Can't save a zero byte message"));
    }
    Ok(NewMessage {
        // Shared: a retry by name after a rename must not copy the bytes.
        parts: vec![Part::Shared(std::sync::Arc::new(data))],
        internal_date: date
            .map(|d| d.as_ref().timestamp())
            .unwrap_or_else(postbay_store::now_unix),
        flags: flag_names(&flags),
        delivery_key: None,
    })
}

/// MULTIAPPEND (RFC 3502 §6.3.11): all the messages go in, in order, or none does;
/// APPENDUID names the UIDs as a set (RFC 4315 §3). A message given by CATENATE parts is
/// put together first (RFC 4469 §5).
pub async fn append_many(
    p: &mut Protocol,
    mailbox: Mailbox<'_>,
    first: AppendPart<'_>,
    more: Vec<Vec<u8>>,
    catenate: Vec<Option<Vec<crate::ext_syntax::CatPart>>>,
) -> OpResult {
    let name = p.mailbox_name(&mailbox)?;
    let mut messages = vec![new_message(first)?];
    for command in &more {
        let parsed = CommandCodec::default()
            .decode(command)
            .map_err(|_| bad("MULTIAPPEND: a message's flags, date or literal are malformed"))?;
        match parsed.1.body {
            CommandBody::Append {
                flags,
                date,
                message,
                ..
            } => messages.push(new_message((flags, date, message))?),
            _ => return Err(bad("MULTIAPPEND: not an APPEND")),
        }
    }
    let limit = p.ctx.limits.max_literal_size as usize;
    for (message, parts) in messages.iter_mut().zip(&catenate) {
        if let Some(parts) = parts {
            let data = super::catenate::resolve(p, parts, limit).await?;
            if data.is_empty() {
                return Err(no(None, "Can't save a zero byte message"));
            }
            message.parts = vec![Part::Shared(std::sync::Arc::new(data))];
        }
    }
    let folder = match p.folder(&name).await {
        Ok(f) => f,
        Err(_) => {
            return Err(no(
                Some("TRYCREATE"),
                format!("Mailbox doesn't exist: {name}"),
            ))
        }
    };
    let user = p.user()?.clone();
    let flags: Vec<Vec<String>> = messages.iter().map(|m| m.flags.clone()).collect();
    let delivered = p
        .ctx
        .store
        .deliver_all_known(user.mailbox_id, &user.home, &folder, messages)
        .await?;
    if let Some(sel) = p.selected.as_mut().filter(|s| s.folder_id == folder.id) {
        for (d, flags) in delivered.iter().zip(&flags) {
            sel.note_own_append(d.modseq, d.uid.clamp(0, u32::MAX as i64) as u32, flags);
        }
    }
    let uids: Vec<u32> = delivered
        .iter()
        .map(|d| d.uid.clamp(0, u32::MAX as i64) as u32)
        .collect();
    let uidvalidity = delivered
        .first()
        .map_or(folder.uidvalidity, |d| d.uidvalidity);
    let code = Code::Other(CodeOther::unvalidated(
        format!(
            "APPENDUID {uidvalidity} {}",
            crate::response::sequence_set(&uids)
        )
        .into_bytes(),
    ));
    Ok(Outcome::Ok(
        Some(code),
        format!("APPEND completed ({} messages)", uids.len()),
    ))
}
