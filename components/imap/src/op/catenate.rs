//! CATENATE (RFC 4469): an APPENDed message put together from literal text and IMAP URLs
//! (RFC 5092) of messages, or parts of them, in the user's own folders. URLAUTH and other
//! users' or servers' URLs are not resolved (`NO [BADURL]`, §5).

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use imap_codec::imap_types::IntoStatic;
use imap_codec::CommandCodec;

use crate::ext_syntax::CatPart;
use crate::message::Parsed;
use crate::protocol::{no, OpError, Protocol};

/// A message, or a part of one, an IMAP URL names (RFC 5092 §6: `imessagepart`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUrl {
    /// `None`: the selected mailbox (a relative URL, `;UID=...`).
    pub mailbox: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    /// The section as in `BODY[...]`, percent-decoded.
    pub section: Option<String>,
    pub partial: Option<(u32, Option<u32>)>,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses the URL forms a client's CATENATE may use for its own messages: absolute
/// (`imap://user@host/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=1.2`), absolute path
/// (`/INBOX/;UID=20`) and relative to the selected mailbox (`;UID=20`). The host and user
/// of an absolute URL are not checked here; a URLAUTH URL is refused.
pub fn parse(url: &str) -> Option<MessageUrl> {
    let rest = match url.strip_prefix("imap://") {
        Some(after) => &after[after.find('/')?..],
        None => url,
    };
    if rest.to_ascii_uppercase().contains(";URLAUTH=") {
        return None;
    }
    let (mailbox, params) = match rest.strip_prefix('/') {
        Some(path) => {
            let at = path.find("/;")?;
            (Some(&path[..at]), &path[at + 1..])
        }
        None => (None, rest),
    };
    let (mailbox, uidvalidity) = match mailbox {
        None => (None, None),
        Some(m) => match m.split_once(';') {
            None => (Some(percent_decode(m)?), None),
            Some((name, param)) => {
                let (key, value) = param.split_once('=')?;
                if !key.eq_ignore_ascii_case("UIDVALIDITY") {
                    return None;
                }
                (Some(percent_decode(name)?), Some(value.parse().ok()?))
            }
        },
    };
    let mut url = MessageUrl {
        mailbox,
        uidvalidity,
        uid: 0,
        section: None,
        partial: None,
    };
    for param in params.split('/') {
        let (key, value) = param.strip_prefix(';')?.split_once('=')?;
        match key.to_ascii_uppercase().as_str() {
            "UID" => url.uid = value.parse().ok()?,
            "SECTION" => url.section = Some(percent_decode(value)?),
            "PARTIAL" => {
                url.partial = Some(match value.split_once('.') {
                    Some((o, l)) => (o.parse().ok()?, Some(l.parse().ok()?)),
                    None => (value.parse().ok()?, None),
                })
            }
            _ => return None,
        }
    }
    (url.uid > 0).then_some(url)
}

/// The section text as imap-codec's own `Section`, by having it parse a FETCH of it.
fn section(text: &str) -> Option<Section<'static>> {
    let command = format!("x FETCH 1 BODY.PEEK[{text}]\r\n");
    let (_, command) = CommandCodec::default().decode(command.as_bytes()).ok()?;
    match command.body {
        CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(names),
            ..
        } => match names.into_iter().next()? {
            MessageDataItemName::BodyExt { section, .. } => section.map(IntoStatic::into_static),
            _ => None,
        },
        _ => None,
    }
}

fn bad_url(url: &str) -> OpError {
    let shown: String = url.chars().filter(|c| !c.is_control()).take(200).collect();
    no(Some("BADURL"), format!("Can't use {shown}"))
}

/// The bytes a CATENATE names, in order (RFC 4469 §5), at most `limit` of them.
pub async fn resolve(p: &Protocol, parts: &[CatPart], limit: usize) -> Result<Vec<u8>, OpError> {
    let mut out = Vec::new();
    let user = p.user()?.clone();
    for part in parts {
        match part {
            CatPart::Text(text) => out.extend_from_slice(text),
            CatPart::Url(text) => {
                let url = parse(text).ok_or_else(|| bad_url(text))?;
                let folder = match &url.mailbox {
                    Some(name) => p
                        .ctx
                        .store
                        .folder(user.mailbox_id, name)
                        .await?
                        .ok_or_else(|| bad_url(text))?,
                    None => {
                        let sel = p.selected.as_ref().ok_or_else(|| bad_url(text))?;
                        sel.folder.clone()
                    }
                };
                if url
                    .uidvalidity
                    .is_some_and(|v| i64::from(v) != folder.uidvalidity)
                {
                    return Err(bad_url(text));
                }
                let uid = i64::from(url.uid);
                let meta = p
                    .ctx
                    .store
                    .messages_in_uid_range(folder.id, uid, uid)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad_url(text))?;
                let blob = p.ctx.store.blobs().read(&meta.blob_path).await?;
                let parsed = Parsed::new(&blob);
                let wanted = match &url.section {
                    None => None,
                    Some(s) => Some(section(s).ok_or_else(|| bad_url(text))?),
                };
                let data = parsed
                    .section(wanted.as_ref())
                    .ok_or_else(|| bad_url(text))?;
                let data: &[u8] = match url.partial {
                    None => &data,
                    Some((origin, length)) => {
                        let start = (origin as usize).min(data.len());
                        let end = length.map_or(data.len(), |l| {
                            start.saturating_add(l as usize).min(data.len())
                        });
                        &data[start..end]
                    }
                };
                out.extend_from_slice(data);
            }
        }
        if out.len() > limit {
            return Err(no(Some("TOOBIG"), "The message would be too big"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_own_messages_parse() {
        let url = |mailbox: Option<&str>, v: Option<u32>, uid, section: Option<&str>, partial| {
            Some(MessageUrl {
                mailbox: mailbox.map(str::to_string),
                uidvalidity: v,
                uid,
                section: section.map(str::to_string),
                partial,
            })
        };
        let table: &[(&str, Option<MessageUrl>)] = &[
            (
                "/INBOX;UIDVALIDITY=385759045/;UID=20",
                url(Some("INBOX"), Some(385759045), 20, None, None),
            ),
            (
                "imap://joe@example.com/Drafts/;UID=7/;SECTION=1.2.MIME",
                url(Some("Drafts"), None, 7, Some("1.2.MIME"), None),
            ),
            (
                ";UID=3/;SECTION=HEADER.FIELDS%20(SUBJECT)/;PARTIAL=0.10",
                url(
                    None,
                    None,
                    3,
                    Some("HEADER.FIELDS (SUBJECT)"),
                    Some((0, Some(10))),
                ),
            ),
            (
                "/Entw%C3%BCrfe/;UID=1",
                url(Some("Entwürfe"), None, 1, None, None),
            ),
            ("/INBOX/;UID=20;URLAUTH=anonymous:internal:x", None),
            ("/INBOX/;UID=0", None),
            ("/INBOX", None),
            ("/INBOX/;SECTION=1", None),
            ("/INBOX/;UID=1/;BOGUS=2", None),
        ];
        for (text, want) in table {
            assert_eq!(&parse(text), want, "{text}");
        }
    }

    #[test]
    fn sections_are_imap_codecs() {
        assert!(section("1.2.MIME").is_some());
        assert!(section("HEADER.FIELDS (SUBJECT)").is_some());
        assert!(section("TEXT").is_some());
        assert!(section("x y").is_none());
    }
}
