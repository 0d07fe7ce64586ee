//! THREAD (RFC 5256 §2): ORDEREDSUBJECT (messages grouped by base subject, each group
//! under its first message) and REFERENCES (Jamie Zawinski's algorithm as §2.2 gives it:
//! Message-ID/References links, dummy containers pruned, roots gathered by base subject,
//! siblings by sent date). The threading itself is pure ([`references`], [`ordered_subject`])
//! over the keys SORT computes.

use std::collections::HashMap;

use imap_codec::imap_types::core::{Charset, Vec1};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;

use super::sort::Keys;
use crate::protocol::{bad, OpResult, Outcome, Protocol};
use crate::response;

/// A thread node: a message (its index in the keys), or a dummy standing for a message
/// that is referred to but not in the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub message: Option<usize>,
    pub children: Vec<Node>,
}

pub async fn thread(
    p: &mut Protocol,
    algorithm: ThreadingAlgorithm<'_>,
    charset: Charset<'_>,
    search: Vec1<SearchKey<'_>>,
    by_uid: bool,
) -> OpResult {
    let threads = match algorithm {
        ThreadingAlgorithm::OrderedSubject => {
            let keys = super::sort::keys(p, charset, search).await?;
            (ordered_subject(&keys), keys)
        }
        ThreadingAlgorithm::References => {
            let keys = super::sort::keys(p, charset, search).await?;
            (references(&keys), keys)
        }
        ThreadingAlgorithm::Other(other) => {
            return Err(bad(format!(
                "Unknown threading algorithm {}",
                other.as_ref()
            )))
        }
    };
    let (roots, keys) = threads;
    let number = |i: usize| {
        let k = &keys[i];
        if by_uid {
            k.uid
        } else {
            k.seq
        }
    };
    let mut line = String::from("THREAD ");
    for root in &roots {
        line.push('(');
        line.push_str(&body(root, &number));
        line.push(')');
    }
    response::raw(&mut p.out, line.trim_end());
    Ok(Outcome::Ok(None, String::new()))
}

/// A node as §4 writes it: a message then its only child without parentheses, or each of
/// several children in parentheses; a dummy is only its children.
fn body(node: &Node, number: &impl Fn(usize) -> u32) -> String {
    let mut s = node
        .message
        .map(|i| number(i).to_string())
        .unwrap_or_default();
    match node.children.as_slice() {
        [] => {}
        [only] if node.message.is_some() => {
            s.push(' ');
            s.push_str(&body(only, number));
        }
        children => {
            if !s.is_empty() {
                s.push(' ');
            }
            for child in children {
                s.push('(');
                s.push_str(&body(child, number));
                s.push(')');
            }
        }
    }
    s
}

/// (sent date, sequence number) of a node: its message's, or its first child's (§2.2 (4)).
fn date_of(node: &Node, keys: &[Keys]) -> (i64, u32) {
    match node.message {
        Some(i) => (keys[i].date, keys[i].seq),
        None => node
            .children
            .first()
            .map_or((i64::MAX, u32::MAX), |c| date_of(c, keys)),
    }
}

fn sort_siblings(nodes: &mut [Node], keys: &[Keys]) {
    for n in nodes.iter_mut() {
        sort_siblings(&mut n.children, keys);
    }
    nodes.sort_by_key(|n| date_of(n, keys));
}

/// §2.1 ORDEREDSUBJECT: sorted by base subject then sent date; each run of one subject is a
/// thread whose first message is the parent of the others.
pub(super) fn ordered_subject(keys: &[Keys]) -> Vec<Node> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| {
        (&keys[a].subject, keys[a].date, keys[a].seq).cmp(&(
            &keys[b].subject,
            keys[b].date,
            keys[b].seq,
        ))
    });
    let mut threads: Vec<Node> = Vec::new();
    let mut current: Option<&str> = None;
    for i in order {
        let leaf = Node {
            message: Some(i),
            children: Vec::new(),
        };
        match (current, threads.last_mut()) {
            (Some(subject), Some(parent)) if subject == keys[i].subject => {
                parent.children.push(leaf)
            }
            _ => {
                current = Some(keys[i].subject.as_str());
                threads.push(leaf);
            }
        }
    }
    // Threads by the sent date of their first message.
    threads.sort_by_key(|t| date_of(t, keys));
    threads
}

/// A container of the REFERENCES algorithm, in an arena.
#[derive(Debug, Default, Clone)]
struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Arena {
    c: Vec<Container>,
}

impl Arena {
    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut at = Some(b);
        let mut steps = 0;
        while let Some(x) = at {
            if x == a {
                return true;
            }
            at = self.c[x].parent;
            steps += 1;
            if steps > self.c.len() {
                return true; // a cycle: treat as related so no link makes it worse
            }
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.c[child].parent.take() {
            self.c[p].children.retain(|&x| x != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        self.c[child].parent = Some(parent);
        self.c[parent].children.push(child);
    }

    fn tree(&self, i: usize) -> Node {
        Node {
            message: self.c[i].message,
            children: self.c[i].children.iter().map(|&x| self.tree(x)).collect(),
        }
    }
}

/// Message-IDs compared as RFC 5256 §2.2 says: without angle brackets, case as written.
fn normalize(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// §2.2 REFERENCES.
pub(super) fn references(keys: &[Keys]) -> Vec<Node> {
    let mut arena = Arena { c: Vec::new() };
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut get = |arena: &mut Arena, id: &str| -> usize {
        *by_id.entry(id.to_string()).or_insert_with(|| {
            arena.c.push(Container::default());
            arena.c.len() - 1
        })
    };
    for (i, k) in keys.iter().enumerate() {
        // (1.A) The message's container; a missing or repeated Message-ID gets one of its own.
        let own = match k.message_id.as_deref().map(normalize) {
            Some(id) if !id.is_empty() => {
                let c = get(&mut arena, &id);
                if arena.c[c].message.is_some() {
                    arena.c.push(Container::default());
                    arena.c.len() - 1
                } else {
                    c
                }
            }
            _ => {
                arena.c.push(Container::default());
                arena.c.len() - 1
            }
        };
        arena.c[own].message = Some(i);
        // (1.B) Link the references in order, never making a loop, never re-parenting.
        let mut prev: Option<usize> = None;
        for r in &k.references {
            let r = normalize(r);
            if r.is_empty() {
                continue;
            }
            let rc = get(&mut arena, &r);
            if let Some(p) = prev {
                if arena.c[rc].parent.is_none() && !arena.is_ancestor(rc, p) {
                    arena.link(p, rc);
                }
            }
            prev = Some(rc);
        }
        // (1.C) The message's parent is its last reference (or none); an older link goes.
        match prev {
            Some(p) if !arena.is_ancestor(own, p) => arena.link(p, own),
            Some(_) => {}
            None => arena.unlink(own),
        }
    }
    // (2) The root set, (3) pruned of dummies.
    let roots: Vec<Node> = (0..arena.c.len())
        .filter(|&i| arena.c[i].parent.is_none())
        .map(|i| arena.tree(i))
        .collect();
    let mut roots = prune(roots, true);
    // (4) Roots by sent date (children first, so a dummy's first child is its earliest).
    sort_siblings(&mut roots, keys);
    // (5) Roots with one base subject gathered together.
    let roots = gather(roots, keys);
    // (6) Every set of siblings by sent date.
    let mut roots = roots;
    sort_siblings(&mut roots, keys);
    roots
}

/// §2.2 (3): dummies without children go; a dummy's children take its place, except at the
/// root, where a dummy with several children stays (it joins them into one thread).
fn prune(nodes: Vec<Node>, root: bool) -> Vec<Node> {
    let mut out = Vec::new();
    for mut n in nodes {
        n.children = prune(std::mem::take(&mut n.children), false);
        match (n.message, n.children.len()) {
            (None, 0) => {}
            (None, 1) => out.extend(n.children),
            (None, _) if !root => out.extend(n.children),
            _ => out.push(n),
        }
    }
    out
}

/// The subject a root is gathered by: its message's, or its first child's for a dummy.
fn root_subject<'k>(node: &Node, keys: &'k [Keys]) -> (&'k str, bool) {
    match node.message {
        Some(i) => (keys[i].subject.as_str(), keys[i].reply),
        None => node
            .children
            .first()
            .map_or(("", false), |c| root_subject(c, keys)),
    }
}

/// §2.2 (5): roots of one base subject under one thread.
fn gather(roots: Vec<Node>, keys: &[Keys]) -> Vec<Node> {
    // (A) Which root each subject goes to: a dummy before a message, a non-reply before a
    // reply, else the first.
    let mut table: HashMap<String, usize> = HashMap::new();
    for (i, root) in roots.iter().enumerate() {
        let (subject, reply) = root_subject(root, keys);
        if subject.is_empty() {
            continue;
        }
        match table.get(subject).copied() {
            None => {
                table.insert(subject.to_string(), i);
            }
            Some(j) => {
                let other = &roots[j];
                let (_, other_reply) = root_subject(other, keys);
                let better = (root.message.is_none() && other.message.is_some())
                    || (other.message.is_some() && other_reply && !reply && root.message.is_some());
                if better {
                    table.insert(subject.to_string(), i);
                }
            }
        }
    }
    // (B) Every other root of that subject is merged into the chosen one.
    let mut slots: Vec<Option<Node>> = roots.into_iter().map(Some).collect();
    for i in 0..slots.len() {
        let Some(node) = slots[i].as_ref() else {
            continue;
        };
        let (subject, reply) = root_subject(node, keys);
        let Some(&j) = table.get(subject) else {
            continue;
        };
        if i == j || subject.is_empty() {
            continue;
        }
        let Some(node) = slots[i].take() else {
            continue;
        };
        let Some(target) = slots[j].as_mut() else {
            slots[i] = Some(node);
            continue;
        };
        let target_reply = root_subject(target, keys).1;
        match (target.message.is_none(), node.message.is_none()) {
            // Both dummies: one set of children.
            (true, true) => target.children.extend(node.children),
            // The chosen one is a dummy: this root is one of its children.
            (true, false) => target.children.push(node),
            // A non-reply takes a reply as its child.
            (false, false) if !target_reply && reply => target.children.push(node),
            // Otherwise both go under a new dummy (§2.2 5.B.iii/iv).
            _ => {
                let old = std::mem::replace(
                    target,
                    Node {
                        message: None,
                        children: Vec::new(),
                    },
                );
                target.children.push(old);
                target.children.push(node);
            }
        }
    }
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u32, date: i64, subject: &str, id: &str, refs: &[&str]) -> Keys {
        let (subject, reply) = super::super::sort::base_subject_and_reply(subject);
        Keys {
            seq,
            uid: seq,
            date,
            subject,
            reply,
            message_id: (!id.is_empty()).then(|| format!("<{id}>")),
            references: refs.iter().map(|r| format!("<{r}>")).collect(),
            ..Keys::default()
        }
    }

    fn written(roots: &[Node], keys: &[Keys]) -> String {
        let number = |i: usize| keys[i].seq;
        roots
            .iter()
            .map(|r| format!("({})", body(r, &number)))
            .collect()
    }

    #[test]
    fn references_links_replies_prunes_dummies_and_gathers_subjects() {
        let keys = vec![
            key(1, 100, "Lunch?", "a", &[]),
            key(2, 200, "Re: Lunch?", "b", &["a"]),
            key(3, 300, "Re: Lunch?", "c", &["a", "b"]),
            key(4, 250, "Re: Lunch?", "d", &["a"]), // a second reply to 1
            key(5, 150, "Other", "e", &[]),
            // Replies to a message not in the result: a dummy at the root with two children.
            key(6, 400, "Re: gone", "f", &["missing"]),
            key(7, 410, "Re: gone", "g", &["missing"]),
            // Same subject, no references: gathered under the thread of that subject.
            key(8, 500, "Re: Other", "h", &[]),
            // A loop in References must not hang or lose the message.
            key(9, 600, "Loop", "i", &["i"]),
        ];
        let roots = references(&keys);
        assert_eq!(written(&roots, &keys), "(1 (2 3)(4))(5 8)((6)(7))(9)");
    }

    #[test]
    fn ordered_subject_groups_by_base_subject_under_the_first_message() {
        let keys = vec![
            key(1, 300, "b", "", &[]),
            key(2, 100, "Re: a", "", &[]),
            key(3, 200, "a", "", &[]),
            key(4, 400, "Fwd: b", "", &[]),
            key(5, 50, "c", "", &[]),
            key(6, 500, "re: A", "", &[]),
        ];
        let roots = ordered_subject(&keys);
        assert_eq!(written(&roots, &keys), "(5)(2 (3)(6))(1 4)");
    }
}
