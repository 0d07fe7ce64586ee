//! LIST (RFC 9051 §6.3.9 with LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE
//! RFC 6154, CHILDREN RFC 3348), LSUB (RFC 3501 §6.3.9) and NAMESPACE (RFC 2342).
//!
//! Two lists meet here: the folders that exist and the subscribed names (which may not
//! exist). Plain LIST walks the first, LSUB and LIST (SUBSCRIBED) the second.

use std::collections::BTreeMap;

use imap_codec::imap_types::core::{Atom, IString, QuotedChar};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::FlagNameAttribute;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::Data;

use crate::ext_syntax::ListOptions;
use crate::names::{self, DELIMITER};
use crate::protocol::{ok, OpResult, Protocol};
use crate::response;

/// One name LIST may report: a folder, a subscribed name, or a parent implied by either.
#[derive(Default)]
struct Entry {
    exists: bool,
    subscribed: bool,
    special_use: Option<String>,
    /// An existing folder lies below it.
    has_children: bool,
    /// A subscribed name lies below it: RFC 5258 §3.5 CHILDINFO ("SUBSCRIBED").
    subscribed_below: bool,
    /// A subscribed name below it does not match the pattern: LSUB reports this name with
    /// `\Noselect` instead (RFC 3501 §6.3.9).
    hidden_subscribed_below: bool,
    folder_id: Option<i64>,
}

fn attribute(name: &str) -> Option<FlagNameAttribute<'static>> {
    Atom::try_from(name.trim_start_matches('\\').to_string())
        .ok()
        .map(FlagNameAttribute::from)
}

fn pattern_text(p: &Protocol, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    if p.utf8_names() {
        text
    } else {
        crate::mutf7::decode(&text).unwrap_or(text)
    }
}

pub async fn list(
    p: &mut Protocol,
    reference: Mailbox<'_>,
    pattern: ListMailbox<'_>,
    options: Option<ListOptions>,
    lsub: bool,
) -> OpResult {
    let options = options.unwrap_or_default();
    let reference = match &reference {
        Mailbox::Inbox => "INBOX".to_string(),
        Mailbox::Other(o) => pattern_text(p, o.inner().as_ref()),
    };
    let first: Vec<u8> = match &pattern {
        ListMailbox::Token(t) => t.as_ref().to_vec(),
        ListMailbox::String(s) => s.as_ref().to_vec(),
    };
    let mut patterns = vec![first];
    patterns.extend(options.more_patterns.iter().cloned());
    let patterns: Vec<String> = patterns.iter().map(|b| pattern_text(p, b)).collect();

    if !options.extended && patterns.len() == 1 && patterns[0].is_empty() {
        // RFC 9051 §6.3.9: an empty pattern asks for the delimiter and the root.
        let items = vec![attribute("Noselect").expect("atom")];
        let mailbox = Mailbox::try_from("").unwrap_or(Mailbox::Inbox);
        let data = if lsub {
            Data::Lsub {
                items,
                delimiter: Some(QuotedChar::unvalidated(DELIMITER)),
                mailbox,
            }
        } else {
            Data::List {
                items,
                delimiter: Some(QuotedChar::unvalidated(DELIMITER)),
                mailbox,
            }
        };
        response::data(&mut p.out, data);
        return ok("");
    }
    let full_patterns: Vec<String> = patterns
        .iter()
        .map(|pat| format!("{reference}{pat}"))
        .collect();

    let user = p.user()?.clone();
    let folders = p.ctx.store.folders(user.mailbox_id).await?;
    let subscribed_only = lsub || options.select_subscribed;
    let subscriptions = if subscribed_only || options.return_subscribed {
        p.ctx.store.subscriptions(user.mailbox_id).await?
    } else {
        Vec::new()
    };
    let matches_any = |name: &str| full_patterns.iter().any(|pat| names::matches(pat, name));
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for f in &folders {
        let e = entries.entry(f.name.clone()).or_default();
        e.exists = true;
        e.special_use = f.special_use.clone();
        e.folder_id = Some(f.id);
        for parent in names::parents(&f.name) {
            entries.entry(parent.to_string()).or_default().has_children = true;
        }
    }
    for name in &subscriptions {
        entries.entry(name.clone()).or_default().subscribed = true;
        let hidden = lsub && !matches_any(name);
        for parent in names::parents(name) {
            let e = entries.entry(parent.to_string()).or_default();
            e.subscribed_below = true;
            e.hidden_subscribed_below |= hidden;
        }
    }
    // INBOX first, then the rest in name order, as clients expect.
    let mut ordered: Vec<&String> = entries.keys().collect();
    ordered.sort_by_key(|n| (n.as_str() != "INBOX", n.to_string()));
    let ordered: Vec<String> = ordered.into_iter().cloned().collect();

    let childinfo = options.select_subscribed && options.recursive_match;
    for name in ordered {
        let e = &entries[&name];
        let selected = if lsub {
            e.subscribed || e.hidden_subscribed_below
        } else if options.select_subscribed {
            // RFC 5258 §3: RECURSIVEMATCH also returns parents of matching names.
            e.subscribed || (childinfo && e.subscribed_below)
        } else {
            e.exists || e.has_children
        };
        if !selected || !matches_any(&name) {
            continue;
        }
        if options.select_special_use && e.special_use.is_none() {
            continue;
        }
        let mut items = Vec::new();
        if lsub {
            // RFC 3501 §6.3.9: in LSUB, \Noselect means "not subscribed, but a name below
            // is"; a subscribed name is reported whether or not it exists.
            if !e.subscribed {
                items.push("Noselect");
            }
        } else if !e.exists {
            items.push("Noselect");
            if options.extended || p.enabled.rev2 {
                items.push("NonExistent");
            }
        }
        if !lsub {
            items.push(if e.has_children {
                "HasChildren"
            } else {
                "HasNoChildren"
            });
        }
        if (options.return_subscribed || options.select_subscribed) && e.subscribed {
            items.push("Subscribed");
        }
        let special = e.special_use.clone().unwrap_or_default();
        if !lsub && !special.is_empty() {
            items.push(special.as_str());
        }
        let items: Vec<FlagNameAttribute<'static>> =
            items.into_iter().filter_map(attribute).collect();
        let mailbox = names::to_wire(&name, p.utf8_names());
        let delimiter = Some(QuotedChar::unvalidated(DELIMITER));
        let data = if lsub {
            Data::Lsub {
                items,
                delimiter,
                mailbox: mailbox.clone(),
            }
        } else {
            Data::List {
                items,
                delimiter,
                mailbox: mailbox.clone(),
            }
        };
        if childinfo && e.subscribed_below {
            // imap-codec has no LIST extended data; the item goes after the name.
            let mut line = Vec::new();
            response::data(&mut line, data);
            if line.ends_with(b"\r\n") {
                line.truncate(line.len() - 2);
                line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
            }
            p.out.extend_from_slice(&line);
        } else {
            response::data(&mut p.out, data);
        }
        if let (Some(items), Some(folder_id)) = (&options.return_status, e.folder_id) {
            let names: Vec<_> = items
                .iter()
                .filter_map(|i| super::status::item_name(i))
                .collect();
            let values = super::status::values(p, folder_id, &names).await?;
            response::data(
                &mut p.out,
                Data::Status {
                    mailbox,
                    items: values.into(),
                },
            );
        }
    }
    ok("")
}

/// One personal namespace with no prefix; no shared or other users' namespaces.
pub fn namespace(p: &mut Protocol) -> OpResult {
    let personal = vec![Namespace {
        prefix: IString::try_from("").expect("empty quoted"),
        delimiter: Some(QuotedChar::unvalidated(DELIMITER)),
        extensions: Vec::new(),
    }];
    response::data(
        &mut p.out,
        Data::Namespace {
            personal,
            other: Vec::new(),
            shared: Vec::new(),
        },
    );
    ok("")
}
