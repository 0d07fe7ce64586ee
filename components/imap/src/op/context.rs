//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) for the command handlers: the ESEARCH
//! answer with PARTIAL (§4.4), starting a live result (UPDATE, §4.3), bringing the live
//! results up to date whenever the session syncs, and CANCELUPDATE (§4.3.5). The results
//! themselves live in the selected folder's state ([`crate::context`]), so leaving the
//! folder ends them.

use std::collections::HashSet;

use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::search::SearchKey;

use crate::context::{self, LiveSearch, Member};
use crate::ext_syntax::SearchReturn;
use crate::protocol::{bad, no, ok, OpError, OpResult, Protocol};
use crate::response;

/// Whether `returns` asks for a live result.
pub(super) fn wants_update(returns: Option<&[SearchReturn]>) -> bool {
    returns.is_some_and(|r| r.contains(&SearchReturn::Update))
}

/// The ESEARCH answer to a SEARCH or SORT with RETURN (RFC 4731 §3.1, RFC 5267 §3.1 and
/// §4.4) for the matches in result order (ascending for SEARCH, sort order for SORT): MIN
/// and MAX are the first and last, ALL lists them all (a range only for an ascending run,
/// whose order it keeps), COUNT counts them, PARTIAL lists those at its positions and
/// echoes its range (`NIL` when none are there). With none of these — `RETURN ()`, or only
/// UPDATE/CONTEXT — the answer is ALL, so a live result starts from the whole result.
pub(super) fn result_line(
    tag: &str,
    by_uid: bool,
    returns: &[SearchReturn],
    ordered: &[u32],
) -> String {
    let mut line = format!("ESEARCH (TAG {})", response::quoted(tag));
    if by_uid {
        line.push_str(" UID");
    }
    let listed = |r: &SearchReturn| {
        !matches!(
            r,
            SearchReturn::Save | SearchReturn::Update | SearchReturn::Context
        )
    };
    let all = !returns.iter().any(listed) || returns.contains(&SearchReturn::All);
    if let (Some(first), Some(last)) = (ordered.first(), ordered.last()) {
        if returns.contains(&SearchReturn::Min) {
            line.push_str(&format!(" MIN {first}"));
        }
        if returns.contains(&SearchReturn::Max) {
            line.push_str(&format!(" MAX {last}"));
        }
        if all {
            line.push_str(&format!(" ALL {}", response::sequence_set(ordered)));
        }
    }
    if returns.contains(&SearchReturn::Count) {
        line.push_str(&format!(" COUNT {}", ordered.len()));
    }
    for r in returns {
        if let SearchReturn::Partial(range) = r {
            let window = &ordered[range.window(ordered.len())];
            let listed = if window.is_empty() {
                "NIL".to_string()
            } else {
                response::sequence_set(window)
            };
            line.push_str(&format!(" PARTIAL ({range} {listed})"));
        }
    }
    line
}

/// Keeps a SEARCH (`sort` none, `members` in UID order) or SORT (`members` in sort order)
/// result up to date from now on. RFC 5267 §4.3.1: past [`context::MAX_LIVE`] the result
/// has been answered but is not kept, which `* NO [NOUPDATE "tag"]` says.
pub(super) fn start(
    p: &mut Protocol,
    tag: &str,
    by_uid: bool,
    key: SearchKey<'static>,
    sort: Option<Vec<SortCriterion>>,
    members: Vec<Member>,
) -> Result<(), OpError> {
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected"))?;
    let live = LiveSearch {
        tag: tag.to_string(),
        by_uid,
        key,
        sort,
        members,
    };
    if !sel.add_live(live) {
        response::raw(
            &mut p.out,
            &format!(
                "NO [NOUPDATE {}] Too many live searches (at most {}): CANCELUPDATE one first",
                response::quoted(tag),
                context::MAX_LIVE
            ),
        );
    }
    Ok(())
}

/// Brings every live result up to date with the messages that arrived or changed flags
/// since the last time (RFC 5267 §4.3): the search runs again on just those messages (one
/// read of their UID range), SORT reads the sort keys of the ones that joined, and each
/// result that changed gets one `* ESEARCH ... REMOVEFROM ... ADDTO ...`. Expunged messages
/// left their results when the expunge was reported (`Selected::report_expunged`). Runs
/// after every sync, so after the EXISTS that numbers new messages.
pub async fn refresh(p: &mut Protocol) -> Result<(), OpError> {
    let ctx = p.ctx.clone();
    let Some(sel) = p.selected.as_mut() else {
        return Ok(());
    };
    if sel.live.is_empty() {
        return Ok(());
    }
    let dirty = sel.take_dirty();
    if dirty.is_empty() {
        return Ok(());
    }
    let mut live = std::mem::take(&mut sel.live);
    let mut result = Ok(());
    for search in &mut live {
        let hits = match super::search::evaluate(&ctx.store, sel, &search.key, Some(&dirty)).await {
            Ok(hits) => hits,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let matched: HashSet<u32> = hits.iter().map(|h| h.1).collect();
        let gone: HashSet<u32> = dirty
            .iter()
            .copied()
            .filter(|u| !matched.contains(u) && search.contains(*u))
            .collect();
        let joined: Vec<(u32, u32)> = hits
            .iter()
            .filter(|h| !search.contains(h.1))
            .map(|h| (h.0, h.1))
            .collect();
        let new_members = match &search.sort {
            None => joined
                .iter()
                .map(|&(_, uid)| Member {
                    uid,
                    values: Box::default(),
                })
                .collect(),
            Some(criteria) => {
                match super::sort::members(&ctx.store, sel, criteria, &joined).await {
                    Ok(m) => m,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        };
        let mut items = search.remove(&gone);
        items.extend(search.add(new_members));
        let by_uid = search.by_uid;
        context::write_items(&mut p.out, search, &items, |u| {
            if by_uid {
                Some(u)
            } else {
                sel.seq_of(u)
            }
        });
    }
    sel.live = live;
    result.map_err(OpError::from)
}

/// CANCELUPDATE (RFC 5267 §4.3.5): the named live results get no more updates. A tag that
/// names none is refused (NO) and nothing is cancelled.
pub fn cancel_update(p: &mut Protocol, tags: &[String]) -> OpResult {
    let sel = p
        .selected
        .as_mut()
        .ok_or_else(|| bad("No mailbox selected: SELECT or EXAMINE first"))?;
    match sel.cancel_live(tags) {
        Ok(()) => ok("Updates cancelled"),
        Err(unknown) => Err(no(None, format!("No live search has the tag {unknown}"))),
    }
}
