//! SORT (RFC 5256 §3, with SORT=DISPLAY, RFC 5957): the messages a search finds, ordered by
//! keys taken from their header section (the header cache, else the blob) and their row
//! (size, arrival). Messages with equal keys keep sequence-number order (§3). With
//! `RETURN (...)` the answer is an ESEARCH in sort order (ESORT, RFC 5267 §3).

use std::cmp::Ordering;

use imap_codec::imap_types::core::{Charset, Tag, Vec1};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{Address, MessageParser};

use crate::ext_syntax::SearchReturn;
use crate::protocol::{bad, OpResult, Outcome, Protocol};
use crate::response;

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
    let mut keyed = keys(p, charset, search).await?;
    let criteria: &[SortCriterion] = criteria.as_ref();
    keyed.sort_by(|a, b| compare(criteria, a, b));
    let sorted: Vec<u32> = keyed
        .iter()
        .map(|k| if by_uid { k.uid } else { k.seq })
        .collect();
    let line = match returns {
        Some(returns) => esort_line(tag, by_uid, &returns, &sorted),
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
    Ok(Outcome::Ok(None, String::new()))
}

/// RFC 5267 §3.1: MIN and MAX are the first and last in sort order, ALL lists the
/// matches in sort order (a range only for an ascending run, whose order it keeps), and
/// `RETURN ()` means ALL.
fn esort_line(tag: &Tag<'_>, by_uid: bool, returns: &[SearchReturn], sorted: &[u32]) -> String {
    let mut line = format!("ESEARCH (TAG {})", response::quoted(tag.as_ref()));
    if by_uid {
        line.push_str(" UID");
    }
    let all = returns.is_empty() || returns.contains(&SearchReturn::All);
    if let (Some(first), Some(last)) = (sorted.first(), sorted.last()) {
        if returns.contains(&SearchReturn::Min) {
            line.push_str(&format!(" MIN {first}"));
        }
        if returns.contains(&SearchReturn::Max) {
            line.push_str(&format!(" MAX {last}"));
        }
        if all {
            line.push_str(&format!(" ALL {}", response::sequence_set(sorted)));
        }
    }
    if returns.contains(&SearchReturn::Count) {
        line.push_str(&format!(" COUNT {}", sorted.len()));
    }
    line
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
    let rows = ctx
        .store
        .messages_with_headers(sel.folder_id, 0, i64::MAX)
        .await?;
    let (metas, mut headers) = super::rows_by_uid(rows);
    let parser = MessageParser::default();
    let mut keyed: Vec<Keys> = Vec::with_capacity(found.hits.len());
    for (seq, uid, _) in found.hits {
        // Expunged since the search: nothing to sort it by, and nothing to report.
        let Some(meta) = metas.get(&uid) else {
            continue;
        };
        let header = match headers.remove(&uid) {
            Some(h) => h,
            None => match ctx.store.blobs().read(&meta.blob_path).await {
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

fn compare(criteria: &[SortCriterion], a: &Keys, b: &Keys) -> Ordering {
    for c in criteria {
        let order = match c.key {
            SortKey::Arrival => a.arrival.cmp(&b.arrival),
            SortKey::Date => a.date.cmp(&b.date),
            SortKey::Size => a.size.cmp(&b.size),
            SortKey::Subject => a.subject.cmp(&b.subject),
            SortKey::From => a.from.cmp(&b.from),
            SortKey::To => a.to.cmp(&b.to),
            SortKey::Cc => a.cc.cmp(&b.cc),
            SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
            SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        };
        let order = if c.reverse { order.reverse() } else { order };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.seq.cmp(&b.seq)
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
