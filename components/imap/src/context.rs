//! Search contexts (RFC 5267 §4): SEARCH and SORT results a session asked to keep up to date
//! (`RETURN (UPDATE)`), and the ADDTO/REMOVEFROM return data that tell the client how each
//! one changed (§4.3.2–§4.3.4). This module is pure: which messages left or joined a result
//! is decided by the command handlers (`op::context`), which re-evaluate the search for the
//! messages that changed; here the result is edited and the lines are written.

use std::cmp::Ordering;
use std::collections::HashSet;

use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::search::SearchKey;

use crate::response;

/// RFC 5267 §4.3.1 lets a server refuse updates past an internal limit; each live context
/// costs a re-evaluation per change, so a session keeps at most this many.
pub const MAX_LIVE: usize = 8;

/// One sort key's value for a message (the key's field of `op::sort::Keys`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

/// Orders two messages by their values for `criteria` (one value per criterion, in order);
/// `Equal` leaves the tie to the caller (sequence order, RFC 5256 §3).
pub fn compare(criteria: &[SortCriterion], a: &[SortValue], b: &[SortValue]) -> Ordering {
    for (i, c) in criteria.iter().enumerate() {
        let order = a.get(i).cmp(&b.get(i));
        let order = if c.reverse { order.reverse() } else { order };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// A message in a context: its UID and, in a SORT context, its sort values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub uid: u32,
    pub values: Box<[SortValue]>,
}

/// A live SEARCH or SORT result (RFC 5267 §4.3), kept in the selected folder's state until
/// CANCELUPDATE or the folder is left.
#[derive(Debug)]
pub struct LiveSearch {
    /// The tag of the command that made it; its updates carry it (§4.3.2).
    pub tag: String,
    /// UID SEARCH/SORT: updates list UIDs, else sequence numbers (§4.3.2).
    pub by_uid: bool,
    /// The search criteria, as one key.
    pub key: SearchKey<'static>,
    /// SORT's criteria; `None` for SEARCH, whose context is in UID order.
    pub sort: Option<Vec<SortCriterion>>,
    /// The matches in context order.
    pub members: Vec<Member>,
}

/// One ADDTO or REMOVEFROM return data item: a context position (1-based, or 0 where
/// SEARCH allows it, §4.3.2) and the UIDs, in context order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    AddTo(u32, Vec<u32>),
    RemoveFrom(u32, Vec<u32>),
}

impl LiveSearch {
    pub fn contains(&self, uid: u32) -> bool {
        match self.sort {
            None => self.members.binary_search_by_key(&uid, |m| m.uid).is_ok(),
            Some(_) => self.members.iter().any(|m| m.uid == uid),
        }
    }

    /// Takes `gone` out of the result and says how. SEARCH: one `REMOVEFROM (0 …)`, which
    /// §4.3.4 allows for a search. SORT: a REMOVEFROM per run of neighbours, each at its
    /// position in the result as the client has it when it gets there (items are applied
    /// in order, §4.3.2).
    pub fn remove(&mut self, gone: &HashSet<u32>) -> Vec<Item> {
        if !self.members.iter().any(|m| gone.contains(&m.uid)) {
            return Vec::new();
        }
        let members = std::mem::take(&mut self.members);
        let mut items = Vec::new();
        let mut run: Option<(u32, Vec<u32>)> = None;
        let mut removed = Vec::new();
        for m in members {
            if gone.contains(&m.uid) {
                removed.push(m.uid);
                let position = self.members.len() as u32 + 1;
                run.get_or_insert_with(|| (position, Vec::new()))
                    .1
                    .push(m.uid);
            } else {
                if let Some((position, uids)) = run.take() {
                    items.push(Item::RemoveFrom(position, uids));
                }
                self.members.push(m);
            }
        }
        if let Some((position, uids)) = run {
            items.push(Item::RemoveFrom(position, uids));
        }
        if self.sort.is_none() {
            removed.sort_unstable();
            return vec![Item::RemoveFrom(0, removed)];
        }
        items
    }

    /// Puts `new` (not yet members) into the result. SEARCH: one `ADDTO (0 …)` in UID order.
    /// SORT: an ADDTO per run of neighbours at the position the run's first message takes
    /// (§4.3.3), earliest first, so each position counts the runs before it.
    pub fn add(&mut self, mut new: Vec<Member>) -> Vec<Item> {
        if new.is_empty() {
            return Vec::new();
        }
        let Some(criteria) = self.sort.as_deref() else {
            new.sort_unstable_by_key(|m| m.uid);
            let uids: Vec<u32> = new.iter().map(|m| m.uid).collect();
            self.members.extend(new);
            self.members.sort_unstable_by_key(|m| m.uid);
            return vec![Item::AddTo(0, uids)];
        };
        // Ties go in UID order, which is sequence order (RFC 5256 §3).
        let order = |a: &Member, b: &Member| {
            compare(criteria, &a.values, &b.values).then(a.uid.cmp(&b.uid))
        };
        new.sort_by(order);
        let old = std::mem::take(&mut self.members);
        let mut merged = Vec::with_capacity(old.len() + new.len());
        let mut items = Vec::new();
        let mut run: Option<(u32, Vec<u32>)> = None;
        let mut old = old.into_iter().peekable();
        let mut new = new.into_iter().peekable();
        loop {
            let take_new = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => order(n, o) == Ordering::Less,
            };
            let next = if take_new { new.next() } else { old.next() };
            let Some(m) = next else { break };
            if take_new {
                let position = merged.len() as u32 + 1;
                run.get_or_insert_with(|| (position, Vec::new()))
                    .1
                    .push(m.uid);
            } else if let Some((position, uids)) = run.take() {
                items.push(Item::AddTo(position, uids));
            }
            merged.push(m);
        }
        if let Some((position, uids)) = run {
            items.push(Item::AddTo(position, uids));
        }
        self.members = merged;
        items
    }
}

/// `* ESEARCH (TAG "t") [UID] <items>` (RFC 5267 §4.3.2), numbering each UID with `number`
/// (itself for a UID context, its sequence number otherwise); nothing when there are no items.
pub fn write_items(
    out: &mut Vec<u8>,
    live: &LiveSearch,
    items: &[Item],
    number: impl Fn(u32) -> Option<u32>,
) {
    let mut line = format!("ESEARCH (TAG {})", response::quoted(&live.tag));
    if live.by_uid {
        line.push_str(" UID");
    }
    let mut any = false;
    for item in items {
        let (name, position, uids) = match item {
            Item::AddTo(p, u) => ("ADDTO", p, u),
            Item::RemoveFrom(p, u) => ("REMOVEFROM", p, u),
        };
        let numbers: Vec<u32> = uids.iter().filter_map(|u| number(*u)).collect();
        if numbers.is_empty() {
            continue;
        }
        any = true;
        line.push_str(&format!(
            " {name} ({position} {})",
            response::sequence_set(&numbers)
        ));
    }
    if any {
        response::raw(out, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::extensions::sort::SortKey;

    fn member(uid: u32, value: i64) -> Member {
        Member {
            uid,
            values: vec![SortValue::Int(value)].into_boxed_slice(),
        }
    }

    fn sorted(members: &[(u32, i64)], reverse: bool) -> LiveSearch {
        LiveSearch {
            tag: "C01".into(),
            by_uid: true,
            key: SearchKey::All,
            sort: Some(vec![SortCriterion {
                reverse,
                key: SortKey::Date,
            }]),
            members: members.iter().map(|&(u, v)| member(u, v)).collect(),
        }
    }

    fn uids(live: &LiveSearch) -> Vec<u32> {
        live.members.iter().map(|m| m.uid).collect()
    }

    /// RFC 5267 §4.3.3's example: a context 2734:2735 that gains 2731:2733 at its start is
    /// told so at position 1 (one item here, as the messages are neighbours).
    #[test]
    fn additions_go_where_they_sort() {
        let mut live = sorted(&[(2734, 40), (2735, 50)], false);
        let items = live.add(vec![member(2733, 30), member(2731, 10), member(2732, 20)]);
        assert_eq!(items, vec![Item::AddTo(1, vec![2731, 2732, 2733])]);
        assert_eq!(uids(&live), vec![2731, 2732, 2733, 2734, 2735]);
        // Two runs apart: positions count the earlier run.
        let mut live = sorted(&[(3, 30), (2, 20), (1, 10)], true);
        let items = live.add(vec![member(9, 25), member(8, 5), member(7, 35)]);
        assert_eq!(
            items,
            vec![
                Item::AddTo(1, vec![7]),
                Item::AddTo(3, vec![9]),
                Item::AddTo(6, vec![8]),
            ]
        );
        assert_eq!(uids(&live), vec![7, 3, 9, 2, 1, 8]);
        // Equal values: UID (sequence) order.
        let mut live = sorted(&[(1, 10), (5, 10)], false);
        assert_eq!(live.add(vec![member(3, 10)]), vec![Item::AddTo(2, vec![3])]);
    }

    #[test]
    fn removals_name_the_position_each_run_has_then() {
        let mut live = sorted(&[(5, 1), (3, 2), (9, 3), (4, 4), (8, 5), (2, 6)], false);
        let gone: HashSet<u32> = [3, 4, 8].into_iter().collect();
        assert_eq!(
            live.remove(&gone),
            vec![
                Item::RemoveFrom(2, vec![3]),
                Item::RemoveFrom(3, vec![4, 8])
            ]
        );
        assert_eq!(uids(&live), vec![5, 9, 2]);
        assert!(live.remove(&gone).is_empty());
    }

    #[test]
    fn search_contexts_use_position_zero_in_uid_order() {
        let mut live = LiveSearch {
            tag: "B01".into(),
            by_uid: true,
            key: SearchKey::All,
            sort: None,
            members: [2, 4, 6].iter().map(|&u| member(u, 0)).collect(),
        };
        assert_eq!(
            live.add(vec![member(7, 0), member(3, 0)]),
            vec![Item::AddTo(0, vec![3, 7])]
        );
        assert!(live.contains(3) && live.contains(7) && !live.contains(5));
        let gone: HashSet<u32> = [7, 2].into_iter().collect();
        assert_eq!(live.remove(&gone), vec![Item::RemoveFrom(0, vec![2, 7])]);
        let mut out = Vec::new();
        write_items(
            &mut out,
            &live,
            &[Item::RemoveFrom(0, vec![2, 7]), Item::AddTo(0, vec![8, 9])],
            Some,
        );
        assert_eq!(
            out,
            b"* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 2,7) ADDTO (0 8:9)\r\n"
        );
    }
}
