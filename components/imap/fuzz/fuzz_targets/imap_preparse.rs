//! The pre-parser in front of imap-codec (`ext_syntax`) against imap-codec itself as the
//! oracle: a command imap-codec accepts in full must pass both pre-parse steps unchanged
//! (same bytes, no extension options, no `$` taken for a saved search); on any other input
//! they must not panic; a CANCELUPDATE or a NOTIFY (RFC 5465) must come out as a NOOP
//! imap-codec parses, a NOTIFY within its bounds and the §5 event rules, and a
//! PARTIAL range must select inside any result. The CATENATE URL parser (RFC 5092 forms) gets the same bytes and
//! must not panic either.
#![no_main]

use imap_codec::decode::Decoder;
use imap_codec::CommandCodec;
use libfuzzer_sys::fuzz_target;
use postbay_imap::ext_syntax::{
    find_dollar, preparse, Extras, NotifyFilter, SearchReturn, MAX_NOTIFY_GROUPS,
    MAX_NOTIFY_MAILBOXES,
};

fuzz_target!(|data: &[u8]| {
    let accepted = matches!(CommandCodec::default().decode(data), Ok((rest, _)) if rest.is_empty());
    let pre = preparse(data);
    let dollar = find_dollar(data);
    if accepted {
        let shown = String::from_utf8_lossy(data);
        let (out, extras) = pre.unwrap_or_else(|e| panic!("pre-parser rejects {shown:?}: {e}"));
        assert_eq!(out.as_ref(), data, "pre-parser changed {shown:?}");
        assert_eq!(
            extras,
            Extras::default(),
            "extension options found in {shown:?}"
        );
        assert!(dollar.is_none(), "a saved-search `$` found in {shown:?}");
    } else if let Ok((out, extras)) = pre {
        // Whatever it rewrote is still searched for `$` without a panic.
        let _ = find_dollar(&out);
        // CANCELUPDATE (RFC 5267 §4.3.5) is handed on as a NOOP imap-codec must parse.
        if extras.cancel_update.is_some() {
            let noop = CommandCodec::default().decode(&out);
            assert!(matches!(noop, Ok((b"", _))), "CANCELUPDATE became {out:?}");
        }
        // NOTIFY (RFC 5465 §8) likewise, within the bounds, and never a group that §5
        // forbids (MessageNew without MessageExpunge, FlagChange without both).
        if let Some(notify) = &extras.notify {
            let noop = CommandCodec::default().decode(&out);
            assert!(matches!(noop, Ok((b"", _))), "NOTIFY became {out:?}");
            if let Some(set) = &notify.set {
                assert!(!set.groups.is_empty() && set.groups.len() <= MAX_NOTIFY_GROUPS);
                let named: usize = set
                    .groups
                    .iter()
                    .map(|g| match &g.filter {
                        NotifyFilter::Subtree(n) | NotifyFilter::Mailboxes(n) => n.len(),
                        _ => 0,
                    })
                    .sum();
                assert!(named <= MAX_NOTIFY_MAILBOXES, "{named} mailboxes");
                for g in &set.groups {
                    let e = g.events;
                    assert_eq!(e.message_new, e.message_expunge, "{g:?}");
                    assert!(!e.flag_change || e.message_new, "{g:?}");
                }
                let selected = set.groups.iter().filter(|g| g.filter.is_selected()).count();
                assert!(selected <= 1);
            }
        }
        // PARTIAL ranges (RFC 5267 §4.4, RFC 9394) select inside any result.
        let returns = extras.search_return.iter().chain(extras.sort_return.iter());
        for r in returns.flatten() {
            if let SearchReturn::Partial(range) = r {
                for len in [0, 1, 7, data.len(), u32::MAX as usize] {
                    let window = range.window(len);
                    assert!(
                        window.start <= window.end && window.end <= len,
                        "{range} in {len}"
                    );
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = postbay_imap::op::catenate::parse(text);
    }
});
