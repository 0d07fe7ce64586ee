//! SORT (RFC 5256 §3, with SORT=DISPLAY, RFC 5957): the messages a search finds, ordered by
//! keys taken from their header section (the header cache, else the blob) and their row
//! (size, arrival). Messages with equal keys keep sequence-number order (§3). With
//! `RETURN (...)` the answer is an ESEARCH in sort order (ESORT, RFC 5267 §3), and
//! `RETURN (UPDATE)` keeps it up to date (CONTEXT=SORT, RFC 5267 §4).

use imap_codec::imap_types::core::{Charset, Tag, Vec1};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{Address, MessageParser};

use imap_codec::imap_types::IntoStatic;
use postbay_store::Store;

use crate::context::{self, Member, SortValue};
use crate::ext_syntax::SearchReturn;
use crate::protocol::{bad, OpResult, Outcome, Protocol};
use crate::response;
use crate::selected::Selected;

/// The keys of one message, computed once (SORT, and THREAD's dates, subjects and links).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Keys {
    pub seq: u32,
    pub uid: u32,
    pub arrival: i64,
    /// The Date header in UTC, or the arrival time when it has none (§3, DATE).
    pub date: i64,
    pub size: i64,
    /// The base subject (§2.1), and whether taking it off removed a reply or forward mark.
    pub subject: String,
    pub reply: bool,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    pub message_id: Option<String>,
    /// References, or else the first In-Reply-To id (§2.2 step 1.A).
    pub references: Vec<String>,
}

pub async fn sort(
    p: &mut Protocol,
    tag: &Tag<'_>,
    criteria: Vec1<SortCriterion>,
    charset: Charset<'_>,
    search: Vec1<SearchKey<'_>>,
    by_uid: bool,
    returns: Option<Vec<SearchReturn>>,
) -> OpResult {
    // RFC 5267 §4.3: UPDATE keeps the criteria to run again on each change.
    let live_key = super::context::wants_update(returns.as_deref())
        .then(|| SearchKey::And(search.clone()).into_static());
    let keyed = keys(p, charset, search).await?;
    let criteria: Vec<SortCriterion> = criteria.into_iter().collect();
    let mut members: Vec<(u32, Member)> = keyed
        .iter()
        .map(|k| (k.seq, member(&criteria, k)))
        .collect();
    members
        .sort_by(|a, b| context::compare(&criteria, &a.1.values, &b.1.values).then(a.0.cmp(&b.0)));
    let sorted: Vec<u32> = members
        .iter()
        .map(|(seq, m)| if by_uid { m.uid } else { *seq })
        .collect();
    let line = match &returns {
        Some(returns) => super::context::result_line(tag.as_ref(), by_uid, returns, &sorted),
        None => {
            let mut line = String::from("SORT");
            for n in &sorted {
                line.push(' ');
                line.push_str(&n.to_string());
            }
            line
        }
    };
    response::raw(&mut p.out, &line);
    if let Some(key) = live_key {
        let members = members.into_iter().map(|(_, m)| m).collect();
        super::context::start(p, tag.as_ref(), by_uid, key, Some(criteria), members)?;
    }
    Ok(Outcome::Ok(None, String::new()))
}

/// A message's place in a SORT result: its UID and its value for each criterion.
fn member(criteria: &[SortCriterion], k: &Keys) -> Member {
    let values = criteria
        .iter()
        .map(|c| match c.key {
            SortKey::Arrival => SortValue::Int(k.arrival),
            SortKey::Date => SortValue::Int(k.date),
            SortKey::Size => SortValue::Int(k.size),
            SortKey::Subject => SortValue::Text(k.subject.clone()),
            SortKey::From => SortValue::Text(k.from.clone()),
            SortKey::To => SortValue::Text(k.to.clone()),
            SortKey::Cc => SortValue::Text(k.cc.clone()),
            SortKey::DisplayFrom => SortValue::Text(k.display_from.clone()),
            SortKey::DisplayTo => SortValue::Text(k.display_to.clone()),
        })
        .collect();
    Member { uid: k.uid, values }
}

/// The messages `hits` (sequence number, UID; in sequence order) with their values for
/// `criteria`: what a live SORT result needs of the messages that join it (RFC 5267 §4.3.3).
pub(crate) async fn members(
    store: &Store,
    sel: &Selected,
    criteria: &[SortCriterion],
    hits: &[(u32, u32)],
) -> Result<Vec<Member>, postbay_store::Error> {
    Ok(keys_of(store, sel, hits)
        .await?
        .iter()
        .map(|k| member(criteria, k))
        .collect())
}

/// The messages the search finds, in sequence order, with their keys.
pub(super) async fn keys(
    p: &mut Protocol,
    charset: Charset<'_>,
    search: Vec1<SearchKey<'_>>,
) -> Result<Vec<Keys>, crate::protocol::OpError> {
    let found = super::search::find(p, Some(charset), search).await?;
    let ctx = p.ctx.clone();
    let sel = p
        .selected
        .as_ref()
        .ok_or_else(|| bad("No mailbox selected"))?;
    let hits: Vec<(u32, u32)> = found.hits.iter().map(|h| (h.0, h.1)).collect();
    Ok(keys_of(&ctx.store, sel, &hits).await?)
}

/// The keys of the messages `hits` (sequence number, UID; in sequence order), read from the
/// rows of their UID range.
async fn keys_of(
    store: &Store,
    sel: &Selected,
    hits: &[(u32, u32)],
) -> Result<Vec<Keys>, postbay_store::Error> {
    let (Some(first), Some(last)) = (hits.first(), hits.last()) else {
        return Ok(Vec::new());
    };
    let rows = store
        .messages_with_headers(sel.folder_id, i64::from(first.1), i64::from(last.1))
        .await?;
    let (metas, mut headers) = super::rows_by_uid(rows);
    let parser = MessageParser::default();
    let mut keyed: Vec<Keys> = Vec::with_capacity(hits.len());
    for &(seq, uid) in hits {
        // Expunged since the search: nothing to sort it by, and nothing to report.
        let Some(meta) = metas.get(&uid) else {
            continue;
        };
        let header = match headers.remove(&uid) {
            Some(h) => h,
            None => match store.blobs().read(&meta.blob_path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(uid, error = %e, "message unavailable for SORT");
                    continue;
                }
            },
        };
        let mut k = Keys {
            seq,
            uid,
            arrival: meta.internal_date,
            date: meta.internal_date,
            size: meta.size,
            ..Keys::default()
        };
        if let Some(m) = parser.parse_headers(&header[..]) {
            if let Some(d) = m.date() {
                if d.is_valid() {
                    k.date = d.to_timestamp();
                }
            }
            (k.subject, k.reply) = base_subject_and_reply(m.subject().unwrap_or(""));
            k.message_id = m.message_id().map(str::to_string);
            k.references = m
                .references()
                .clone()
                .into_text_list()
                .map(|l| l.into_iter().map(|r| r.into_owned()).collect())
                .unwrap_or_default();
            if k.references.is_empty() {
                k.references = m
                    .in_reply_to()
                    .clone()
                    .into_text_list()
                    .and_then(|l| l.into_iter().next())
                    .map(|r| vec![r.into_owned()])
                    .unwrap_or_default();
            }
            k.from = mailbox_key(m.from());
            k.to = mailbox_key(m.to());
            k.cc = mailbox_key(m.cc());
            k.display_from = display_key(m.from());
            k.display_to = display_key(m.to());
        }
        keyed.push(k);
    }
    Ok(keyed)
}

/// RFC 5256 §3 (FROM, TO, CC): the local part of the first address, under i;ascii-casemap;
/// empty when there is none.
fn mailbox_key(address: Option<&Address<'_>>) -> String {
    address
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        .map(|addr| addr.rsplit_once('@').map_or(addr, |(local, _)| local))
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// RFC 5957 §3.1 (DISPLAYFROM, DISPLAYTO): the first address's display name when it has a
/// non-empty one, else its addr-spec, under i;unicode-casemap (RFC 5051: case-mapped, then
/// decomposed, so "Élise" sorts with the E's).
fn display_key(address: Option<&Address<'_>>) -> String {
    let Some(first) = address.and_then(|a| a.first()) else {
        return String::new();
    };
    let name = first.name.as_deref().map(str::trim).unwrap_or("");
    let shown = if name.is_empty() {
        first.address.as_deref().unwrap_or("")
    } else {
        name
    };
    use unicode_normalization::UnicodeNormalization;
    shown
        .chars()
        .flat_map(char::to_uppercase)
        .collect::<String>()
        .nfd()
        .collect()
}

/// The base subject of RFC 5256 §2.1, upper-cased for i;ascii-casemap: encoded words already
/// decoded (mail-parser), white space collapsed, `(fwd)` trailers, `Re:`/`Fw:`/`Fwd:`
/// leaders with their `[blob]`s, and `[Fwd: ...]` wrappers removed.
pub fn base_subject(subject: &str) -> String {
    base_subject_and_reply(subject).0
}

/// [`base_subject`], and whether a reply or forward mark was among what was removed
/// (THREAD's subject gathering, §2.2 step 5).
pub fn base_subject_and_reply(subject: &str) -> (String, bool) {
    let mut reply = false;
    // (1) Tabs and line breaks become spaces; runs of spaces one.
    let mut s: String = subject
        .split([' ', '\t', '\r', '\n'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    loop {
        // (2) Trailing "(fwd)" and white space.
        loop {
            let trimmed = s.trim_end();
            let lower = trimmed.to_ascii_lowercase();
            if lower.ends_with("(fwd)") {
                s = trimmed[..trimmed.len() - 5].to_string();
                reply = true;
            } else {
                s = trimmed.to_string();
                break;
            }
        }
        // (3)-(4) Leaders and blobs, as long as something is removed.
        loop {
            let before = s.clone();
            s = s.trim_start().to_string();
            if let Some(rest) = strip_refwd(&s) {
                s = rest.to_string();
                reply = true;
            }
            if let Some(rest) = strip_blob(&s) {
                // A blob is removed only if something is left after it.
                if !rest.trim().is_empty() {
                    s = rest.to_string();
                }
            }
            if s == before {
                break;
            }
        }
        // (5) "[fwd: ... ]" wrapper.
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        break;
    }
    (s.to_ascii_uppercase(), reply)
}

/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"` at the start; what follows.
fn strip_refwd(s: &str) -> Option<&str> {
    let lower = s.to_ascii_lowercase();
    let after = if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("re") || lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut rest = s[after..].trim_start();
    if let Some(r) = strip_blob(rest) {
        rest = r;
    }
    rest.strip_prefix(':')
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP` at the start (BLOBCHAR: not `[` or `]`); what follows.
fn strip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    if inner.as_bytes()[end] != b']' {
        return None;
    }
    Some(inner[end + 1..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::base_subject;

    #[test]
    fn base_subjects_as_rfc_5256_extracts_them() {
        for (subject, base) in [
            ("Hello", "HELLO"),
            ("Re: Hello", "HELLO"),
            ("RE:  re: Fwd: Hello", "HELLO"),
            ("Re[2]: Hello", "HELLO"),
            ("[list] Re: Hello", "HELLO"),
            ("[list] [other] Re: Hello (fwd)", "HELLO"),
            ("Hello (fwd) (FWD)  ", "HELLO"),
            ("[Fwd: Re: Hello]", "HELLO"),
            ("Fw: [Fwd: hello there]", "HELLO THERE"),
            ("[only a blob]", "[ONLY A BLOB]"),
            ("Re:", ""),
            ("Reply to this", "REPLY TO THIS"),
            ("  spaced\t\tout\r\n  subject ", "SPACED OUT SUBJECT"),
            ("", ""),
        ] {
            assert_eq!(base_subject(subject), base, "{subject:?}");
        }
    }
}
