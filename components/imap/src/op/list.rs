//! LIST (RFC 9051 §6.3.9 with LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE
//! RFC 6154, CHILDREN RFC 3348), LSUB (RFC 3501 §6.3.9) and NAMESPACE (RFC 2342).

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

/// One name LIST may report: a folder, or a parent implied by one.
struct Entry {
    exists: bool,
    subscribed: bool,
    special_use: Option<String>,
    has_children: bool,
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
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for f in &folders {
        entries.insert(
            f.name.clone(),
            Entry {
                exists: true,
                subscribed: f.subscribed,
                special_use: f.special_use.clone(),
                has_children: false,
                folder_id: Some(f.id),
            },
        );
    }
    for f in &folders {
        for parent in names::parents(&f.name) {
            let e = entries.entry(parent.to_string()).or_insert(Entry {
                exists: false,
                subscribed: false,
                special_use: None,
                has_children: false,
                folder_id: None,
            });
            e.has_children = true;
        }
    }
    // INBOX first, then the rest in name order, as clients expect.
    let mut ordered: Vec<&String> = entries.keys().collect();
    ordered.sort_by_key(|n| (n.as_str() != "INBOX", n.to_string()));
    let ordered: Vec<String> = ordered.into_iter().cloned().collect();

    let subscribed_only = lsub || options.select_subscribed;
    for name in ordered {
        let e = &entries[&name];
        if !full_patterns.iter().any(|pat| names::matches(pat, &name)) {
            continue;
        }
        if subscribed_only && !e.subscribed {
            continue;
        }
        if options.select_special_use && e.special_use.is_none() {
            continue;
        }
        let mut items = Vec::new();
        if !e.exists {
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
        response::data(&mut p.out, data);
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
