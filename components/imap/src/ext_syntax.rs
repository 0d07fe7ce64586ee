//! The few IMAP4rev2 command forms imap-codec 2.0.0-alpha.10 cannot parse yet:
//! `SEARCH RETURN (...)` (RFC 4731 / RFC 9051 §6.4.4), `SORT RETURN (...)` (ESORT, RFC 5267
//! §3) with the context options UPDATE, CONTEXT and PARTIAL (RFC 5267 §4.1), CANCELUPDATE
//! (RFC 5267 §4.3.5), NOTIFY (RFC 5465 §8), MULTIAPPEND (RFC 3502: one APPEND, several messages) and the extended
//! LIST syntax (RFC 5258: selection options, several patterns, `RETURN (...)`). They are
//! peeled off here and the rest — a plain RFC 3501 command — is parsed by imap-codec as usual.
//! This only recognises tokens; anything it does not understand is left for imap-codec to
//! reject.

use std::borrow::Cow;

/// RFC 4731 result options, and RFC 5267 §4.1's context options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchReturn {
    Min,
    Max,
    All,
    Count,
    Save,
    /// RFC 5267 §4.3: keep the result up to date with ADDTO/REMOVEFROM.
    Update,
    /// RFC 5267 §4.2: a hint that the result will be used again; nothing to do.
    Context,
    /// RFC 5267 §4.4: only the matches at these positions.
    Partial(Partial),
}

/// A `PARTIAL` range as the client wrote it: 1-based positions in the result, or, both
/// negative, counted from its end (`-1` is the last match; RFC 9394 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    pub first: i64,
    pub last: i64,
}

impl Partial {
    /// `lo:hi` or `-lo:-hi` with non-zero numbers of at most 32 bits and one sign (RFC 5267
    /// §5 `partial-range`; the negative form is RFC 9394 §5's `partial-range-last`).
    fn parse(word: &str) -> Option<Partial> {
        let (a, b) = word.split_once(':')?;
        let number = |s: &str| -> Option<i64> {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let n: i64 = digits
                .parse()
                .ok()
                .filter(|n| (1..=u32::MAX as i64).contains(n))?;
            Some(if s.starts_with('-') { -n } else { n })
        };
        let (first, last) = (number(a)?, number(b)?);
        ((first > 0) == (last > 0)).then_some(Partial { first, last })
    }

    /// The 0-based index range this selects in a result of `len` matches (empty when it
    /// lies beyond the result); `lo:hi` and `hi:lo` are the same range.
    pub fn window(&self, len: usize) -> std::ops::Range<usize> {
        let (lo, hi) = (
            self.first.abs().min(self.last.abs()),
            self.first.abs().max(self.last.abs()),
        );
        let (lo, hi) = (lo as usize, hi as usize);
        let range = if self.first > 0 {
            (lo - 1)..hi.min(len)
        } else {
            len.saturating_sub(hi)..len.saturating_sub(lo - 1)
        };
        if range.start >= range.end {
            0..0
        } else {
            range
        }
    }
}

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.first, self.last)
    }
}

/// RFC 5258 selection and return options, and patterns beyond the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub extended: bool,
    pub select_subscribed: bool,
    pub select_special_use: bool,
    pub recursive_match: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    /// RFC 5819 LIST-STATUS: the STATUS items, upper-case.
    pub return_status: Option<Vec<String>>,
    /// Patterns after the first (decoded bytes).
    pub more_patterns: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `Some` when the SEARCH had RETURN (...); empty list means `RETURN ()` (= ALL).
    pub search_return: Option<Vec<SearchReturn>>,
    /// `Some` when the SORT had RETURN (...) (ESORT); never SAVE.
    pub sort_return: Option<Vec<SearchReturn>>,
    /// MULTIAPPEND: the messages after the first, each as a complete single-message
    /// APPEND command (same tag and mailbox) for imap-codec to parse.
    pub more_appends: Vec<Vec<u8>>,
    /// CATENATE (RFC 4469): per message of the APPEND (first, then `more_appends`), its
    /// parts, `None` for a plain literal; empty when no message used CATENATE.
    pub catenate: Vec<Option<Vec<CatPart>>>,
    pub list: Option<ListOptions>,
    /// CANCELUPDATE (RFC 5267 §4.3.5): the tags named; imap-codec is handed a NOOP.
    pub cancel_update: Option<Vec<String>>,
    /// NOTIFY (RFC 5465 §3): the request; imap-codec is handed a NOOP.
    pub notify: Option<Notify>,
}

/// Event groups one NOTIFY SET may hold, and mailboxes it may name in all (bounds what a
/// session watches and what parsing allocates).
pub const MAX_NOTIFY_GROUPS: usize = 8;
pub const MAX_NOTIFY_MAILBOXES: usize = 100;

/// A NOTIFY command (RFC 5465 §3, §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// `None` for NOTIFY NONE (§3.1): no notifications beyond what IMAP4 sends anyway.
    pub set: Option<NotifySet>,
    /// An event this server does not support was named: NO [BADEVENT] (§3.2, §5).
    pub bad_event: bool,
}

/// NOTIFY SET [STATUS] event-group... (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySet {
    /// STATUS: send STATUS for the non-selected mailboxes watched at once.
    pub status: bool,
    pub groups: Vec<NotifyGroup>,
}

/// One event group: the mailboxes (§6) and what to report of them (§5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: NotifyEvents,
}

/// RFC 5465 §6 mailbox specifiers; names are the bytes the client sent, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

impl NotifyFilter {
    pub fn is_selected(&self) -> bool {
        matches!(self, NotifyFilter::Selected | NotifyFilter::SelectedDelayed)
    }
}

/// The supported events of a group (§5); all false for `NONE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyEvents {
    pub message_new: bool,
    pub message_expunge: bool,
    pub flag_change: bool,
    pub mailbox_name: bool,
    pub subscription_change: bool,
}

impl NotifyEvents {
    pub fn messages(&self) -> bool {
        self.message_new || self.message_expunge || self.flag_change
    }
}

/// Peels extension syntax off a complete command message (line plus literals).
pub fn preparse(message: &[u8]) -> Result<(Cow<'_, [u8]>, Extras), String> {
    let mut extras = Extras::default();
    let mut s = Scanner { b: message, pos: 0 };
    let Some(tag) = s.atom() else {
        return Ok((Cow::Borrowed(message), extras));
    };
    let tag_end = s.pos;
    if !s.eat(b' ') {
        return Ok((Cow::Borrowed(message), extras));
    }
    let Some(mut name) = s.atom() else {
        return Ok((Cow::Borrowed(message), extras));
    };
    // RFC 3501 §9: a tag is ASTRING-CHARs but "+"; the scanner's atoms also take "%" and
    // "*". With another tag, imap-codec rejects the command as it is.
    let valid_tag = !tag.iter().any(|c| matches!(c, b'+' | b'%' | b'*'));
    if name.eq_ignore_ascii_case(b"CANCELUPDATE") && valid_tag {
        let tags = cancel_update_tags(message, s.pos)?;
        extras.cancel_update = Some(tags);
        let mut noop = message[..tag_end].to_vec();
        noop.extend_from_slice(b" NOOP\r\n");
        return Ok((Cow::Owned(noop), extras));
    }
    if name.eq_ignore_ascii_case(b"NOTIFY") && valid_tag {
        extras.notify = Some(notify(message, s.pos)?);
        let mut noop = message[..tag_end].to_vec();
        noop.extend_from_slice(b" NOOP\r\n");
        return Ok((Cow::Owned(noop), extras));
    }
    if name.eq_ignore_ascii_case(b"UID") && s.eat(b' ') {
        match s.atom() {
            Some(n) => name = n,
            None => return Ok((Cow::Borrowed(message), extras)),
        }
    }
    if !s.eat(b' ') {
        return Ok((Cow::Borrowed(message), extras));
    }
    let args_at = s.pos;
    let is_sort = name.eq_ignore_ascii_case(b"SORT");
    if name.eq_ignore_ascii_case(b"SEARCH") || is_sort {
        let mut t = Scanner {
            b: message,
            pos: args_at,
        };
        if t.atom().is_some_and(|a| a.eq_ignore_ascii_case(b"RETURN")) && t.eat(b' ') {
            let words = t.group()?.ok_or("RETURN needs a parenthesised list")?;
            let opts = return_options(&words, is_sort)?;
            if !t.eat(b' ') {
                return Err("RETURN (...) must be followed by the command's arguments".into());
            }
            if is_sort {
                extras.sort_return = Some(opts);
            } else {
                extras.search_return = Some(opts);
            }
            let mut rebuilt = message[..args_at].to_vec();
            rebuilt.extend_from_slice(&message[t.pos..]);
            return Ok((Cow::Owned(rebuilt), extras));
        }
        return Ok((Cow::Borrowed(message), extras));
    }
    if name.eq_ignore_ascii_case(b"LIST") {
        return preparse_list(message, args_at, extras);
    }
    if name.eq_ignore_ascii_case(b"APPEND") {
        if let Some((first, more, catenate)) = split_appends(message, args_at) {
            extras.more_appends = more;
            extras.catenate = catenate;
            return Ok((Cow::Owned(first), extras));
        }
    }
    Ok((Cow::Borrowed(message), extras))
}

/// RFC 4731 §3.1 and RFC 5267 §4.1 return options, in order. RFC 5267 §4.4: one PARTIAL at
/// most, and never with ALL (both say which matches to list). SAVE is SEARCH's alone
/// (RFC 5182 §2.1 has no SORT form).
fn return_options(words: &[Word], is_sort: bool) -> Result<Vec<SearchReturn>, String> {
    let mut opts = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let Word::Atom(w) = &words[i] else {
            return Err("RETURN options are atoms".into());
        };
        opts.push(match w.to_ascii_uppercase().as_str() {
            "MIN" => SearchReturn::Min,
            "MAX" => SearchReturn::Max,
            "ALL" => SearchReturn::All,
            "COUNT" => SearchReturn::Count,
            "SAVE" if !is_sort => SearchReturn::Save,
            "UPDATE" => SearchReturn::Update,
            "CONTEXT" => SearchReturn::Context,
            "PARTIAL" => {
                i += 1;
                let range = match words.get(i) {
                    Some(Word::Atom(r)) => Partial::parse(r),
                    _ => None,
                };
                SearchReturn::Partial(range.ok_or("PARTIAL needs a range like 1:100")?)
            }
            other => return Err(format!("Unknown RETURN option {other}")),
        });
        i += 1;
    }
    let partials = opts
        .iter()
        .filter(|o| matches!(o, SearchReturn::Partial(_)))
        .count();
    if partials > 1 {
        return Err("RETURN has more than one PARTIAL".into());
    }
    if partials == 1 && opts.contains(&SearchReturn::All) {
        return Err("RETURN cannot have both PARTIAL and ALL".into());
    }
    Ok(opts)
}

/// RFC 5267 §5: `"CANCELUPDATE" 1*(SP quoted)` up to the end of the line; `at` is just after
/// the command name.
fn cancel_update_tags(message: &[u8], at: usize) -> Result<Vec<String>, String> {
    let mut s = Scanner {
        b: message,
        pos: at,
    };
    if !s.eat(b' ') {
        return Err("CANCELUPDATE needs the tags of the searches to stop".into());
    }
    let mut tags = Vec::new();
    loop {
        if s.peek() != Some(b'"') {
            return Err("CANCELUPDATE takes quoted tags".into());
        }
        let tag = s.astring().ok_or("CANCELUPDATE: bad quoted tag")?;
        tags.push(String::from_utf8(tag).map_err(|_| "CANCELUPDATE: tags are ASCII")?);
        if &message[s.pos..] == b"\r\n" {
            return Ok(tags);
        }
        if !s.eat(b' ') {
            return Err("CANCELUPDATE takes quoted tags separated by spaces".into());
        }
    }
}

/// RFC 5465 §8: `"NOTIFY" SP (notify-set / notify-none)` up to the end of the line; `at`
/// is just after the command name. Syntax errors and the combinations §5 forbids are BAD
/// (the `Err`); events it names but this server lacks set [`Notify::bad_event`].
fn notify(message: &[u8], at: usize) -> Result<Notify, String> {
    let mut s = Scanner {
        b: message,
        pos: at,
    };
    let mut out = Notify {
        set: None,
        bad_event: false,
    };
    if !s.eat(b' ') {
        return Err("NOTIFY needs NONE or SET".into());
    }
    let verb = s.atom().ok_or("NOTIFY needs NONE or SET")?;
    if verb.eq_ignore_ascii_case(b"NONE") {
        return match &message[s.pos..] {
            b"\r\n" => Ok(out),
            _ => Err("NOTIFY NONE takes no arguments".into()),
        };
    }
    if !verb.eq_ignore_ascii_case(b"SET") || !s.eat(b' ') {
        return Err("NOTIFY needs NONE or SET event-groups".into());
    }
    let mut set = NotifySet {
        status: false,
        groups: Vec::new(),
    };
    if s.peek() != Some(b'(') {
        let word = s.atom().ok_or("NOTIFY SET needs event groups")?;
        if !word.eq_ignore_ascii_case(b"STATUS") || !s.eat(b' ') {
            return Err("NOTIFY SET takes STATUS, then event groups".into());
        }
        set.status = true;
    }
    let mut named = 0usize;
    loop {
        if set.groups.len() == MAX_NOTIFY_GROUPS {
            return Err(format!("NOTIFY: at most {MAX_NOTIFY_GROUPS} event groups"));
        }
        let group = notify_group(&mut s, &mut named, &mut out.bad_event)?;
        if group.filter.is_selected() && set.groups.iter().any(|g| g.filter.is_selected()) {
            return Err("NOTIFY: SELECTED or SELECTED-DELAYED at most once".into());
        }
        set.groups.push(group);
        if &message[s.pos..] == b"\r\n" {
            break;
        }
        if !s.eat(b' ') {
            return Err("NOTIFY: event groups are separated by spaces".into());
        }
    }
    out.set = Some(set);
    Ok(out)
}

/// `"(" filter-mailboxes SP events ")"` (RFC 5465 §8).
fn notify_group(
    s: &mut Scanner<'_>,
    named: &mut usize,
    bad_event: &mut bool,
) -> Result<NotifyGroup, String> {
    if !s.eat(b'(') {
        return Err("NOTIFY: an event group is parenthesised".into());
    }
    let word = s.atom().ok_or("NOTIFY: expected a mailbox filter")?;
    let word = String::from_utf8_lossy(word).to_ascii_uppercase();
    let filter = match word.as_str() {
        "SELECTED" => NotifyFilter::Selected,
        "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
        "INBOXES" => NotifyFilter::Inboxes,
        "PERSONAL" => NotifyFilter::Personal,
        "SUBSCRIBED" => NotifyFilter::Subscribed,
        "SUBTREE" | "MAILBOXES" => {
            if !s.eat(b' ') {
                return Err(format!("NOTIFY: {word} needs mailboxes"));
            }
            let names = notify_mailboxes(s, named)?;
            if word == "SUBTREE" {
                NotifyFilter::Subtree(names)
            } else {
                NotifyFilter::Mailboxes(names)
            }
        }
        _ => return Err("NOTIFY: unknown mailbox filter".into()),
    };
    if !s.eat(b' ') {
        return Err("NOTIFY: a filter is followed by its events".into());
    }
    let mut events = NotifyEvents::default();
    if s.eat(b'(') {
        loop {
            let word = s.atom().ok_or("NOTIFY: expected an event")?;
            let word = String::from_utf8_lossy(word).to_ascii_uppercase();
            match word.as_str() {
                "MESSAGENEW" => {
                    events.message_new = true;
                    if s.b.get(s.pos..s.pos + 2) == Some(b" (") {
                        // §5.2: FETCH items to send with each new message; only for the
                        // selected mailbox. EXISTS is sent, the items are not.
                        if !filter.is_selected() {
                            return Err("NOTIFY: MessageNew fetch items only for SELECTED".into());
                        }
                        s.pos += 1;
                        skip_balanced(s)?;
                    }
                }
                "MESSAGEEXPUNGE" => events.message_expunge = true,
                "FLAGCHANGE" => events.flag_change = true,
                "MAILBOXNAME" => events.mailbox_name = true,
                "SUBSCRIPTIONCHANGE" => events.subscription_change = true,
                // AnnotationChange, MailboxMetadataChange, ServerMetadataChange and any
                // extension event: not supported here (§5: NO [BADEVENT]).
                _ => *bad_event = true,
            }
            if s.eat(b')') {
                break;
            }
            if !s.eat(b' ') {
                return Err("NOTIFY: events are separated by spaces".into());
            }
        }
    } else {
        let word = s.atom().ok_or("NOTIFY: expected events or NONE")?;
        if !word.eq_ignore_ascii_case(b"NONE") {
            return Err("NOTIFY: events are a parenthesised list or NONE".into());
        }
    }
    if !s.eat(b')') {
        return Err("NOTIFY: an event group ends with )".into());
    }
    // §5.2-5.4: MessageNew and MessageExpunge only together; FlagChange needs both.
    if events.message_new != events.message_expunge {
        return Err("NOTIFY: MessageNew and MessageExpunge must be given together".into());
    }
    if events.flag_change && !events.message_new {
        return Err("NOTIFY: FlagChange needs MessageNew and MessageExpunge".into());
    }
    Ok(NotifyGroup { filter, events })
}

/// `one-or-more-mailbox` (RFC 5465 §8): a mailbox, or several in parentheses.
fn notify_mailboxes(s: &mut Scanner<'_>, named: &mut usize) -> Result<Vec<Vec<u8>>, String> {
    let mut names = Vec::new();
    let many = s.eat(b'(');
    loop {
        *named += 1;
        if *named > MAX_NOTIFY_MAILBOXES {
            return Err(format!("NOTIFY: at most {MAX_NOTIFY_MAILBOXES} mailboxes"));
        }
        names.push(s.astring().ok_or("NOTIFY: bad mailbox name")?);
        if !many || s.eat(b')') {
            return Ok(names);
        }
        if !s.eat(b' ') {
            return Err("NOTIFY: mailboxes are separated by spaces".into());
        }
    }
}

/// Skips one parenthesised list (nested lists, brackets and quoted strings inside) on
/// the line; literals are refused.
fn skip_balanced(s: &mut Scanner<'_>) -> Result<(), String> {
    let mut depth = 0usize;
    loop {
        match s.peek() {
            None | Some(b'\r' | b'\n' | b'{') => return Err("NOTIFY: bad fetch items".into()),
            Some(b'"') => {
                s.astring().ok_or("NOTIFY: bad quoted string")?;
                continue;
            }
            Some(b'(') => depth += 1,
            Some(b')') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    s.pos += 1;
                    return Ok(());
                }
            }
            Some(_) => {}
        }
        s.pos += 1;
    }
}

/// One part of a CATENATE message (RFC 4469 §5): literal text, or an IMAP URL of a message
/// or a part of one (RFC 5092), resolved when the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

/// Stands in for a CATENATE message's data in the APPEND imap-codec parses; the command
/// replaces it with the parts put together.
pub const CATENATE_PLACEHOLDER: &[u8] = b"{1+}\r\n.";

/// RFC 3502 §6.3.11 and RFC 4469 §5: `APPEND mailbox 1*(SP [flag-list SP] [date-time SP]
/// (literal / "CATENATE" SP "(" cat-part *(SP cat-part) ")"))`. With more than one message
/// or any CATENATE, returns the command cut into single-message APPENDs (the first and the
/// rest, CATENATE data replaced by [`CATENATE_PLACEHOLDER`]) and each message's parts;
/// `None` for a plain APPEND or anything it does not follow, which imap-codec then parses
/// (or rejects) as usual.
#[allow(clippy::type_complexity)]
fn split_appends(
    message: &[u8],
    args_at: usize,
) -> Option<(Vec<u8>, Vec<Vec<u8>>, Vec<Option<Vec<CatPart>>>)> {
    let head = &message[..args_at];
    let mut s = Scanner {
        b: message,
        pos: args_at,
    };
    s.astring()?;
    let mailbox = &message[args_at..s.pos];
    let mut pieces: Vec<Vec<u8>> = Vec::new();
    let mut parts: Vec<Option<Vec<CatPart>>> = Vec::new();
    while s.peek() == Some(b' ') {
        let start = s.pos;
        s.pos += 1;
        if s.peek() == Some(b'(') {
            // A flag list holds no parentheses or literals: up to the closing one.
            let close = message[s.pos..].iter().position(|&c| c == b')')?;
            s.pos += close + 1;
            if !s.eat(b' ') {
                return None;
            }
        }
        if s.peek() == Some(b'"') {
            s.astring()?;
            if !s.eat(b' ') {
                return None;
            }
        }
        let opts_end = s.pos;
        if matches!(s.peek(), Some(b'{') | Some(b'~')) {
            s.astring()?;
            pieces.push(message[start..s.pos].to_vec());
            parts.push(None);
            continue;
        }
        let word = s.atom()?;
        if !word.eq_ignore_ascii_case(b"CATENATE") || !s.eat(b' ') || !s.eat(b'(') {
            return None;
        }
        let mut cat = Vec::new();
        loop {
            let kind = s.atom()?.to_ascii_uppercase();
            if !s.eat(b' ') {
                return None;
            }
            match kind.as_slice() {
                b"TEXT" if matches!(s.peek(), Some(b'{') | Some(b'~')) => {
                    cat.push(CatPart::Text(s.astring()?));
                }
                b"URL" => {
                    let url = s.astring()?;
                    cat.push(CatPart::Url(String::from_utf8(url).ok()?));
                }
                _ => return None,
            }
            if s.eat(b')') {
                break;
            }
            if !s.eat(b' ') {
                return None;
            }
        }
        let mut piece = message[start..opts_end].to_vec();
        piece.extend_from_slice(CATENATE_PLACEHOLDER);
        pieces.push(piece);
        parts.push(Some(cat));
    }
    let catenates = parts.iter().any(Option::is_some);
    if pieces.is_empty() || (pieces.len() < 2 && !catenates) || &message[s.pos..] != b"\r\n" {
        return None;
    }
    let command = |piece: &[u8]| [head, mailbox, piece, b"\r\n"].concat();
    let first = command(&pieces[0]);
    let more = pieces[1..].iter().map(|p| command(p)).collect();
    Some((first, more, if catenates { parts } else { Vec::new() }))
}

fn preparse_list(
    message: &[u8],
    args_at: usize,
    mut extras: Extras,
) -> Result<(Cow<'_, [u8]>, Extras), String> {
    let mut opts = ListOptions::default();
    let mut s = Scanner {
        b: message,
        pos: args_at,
    };
    if s.peek() == Some(b'(') {
        opts.extended = true;
        let words = s.group()?.ok_or("bad LIST selection options")?;
        for w in words.iter().flat_map(Word::atoms) {
            match w.to_ascii_uppercase().as_str() {
                "SUBSCRIBED" => opts.select_subscribed = true,
                "SPECIAL-USE" => opts.select_special_use = true,
                "RECURSIVEMATCH" => opts.recursive_match = true,
                "REMOTE" => {}
                other => return Err(format!("Unknown LIST selection option {other}")),
            }
        }
        if opts.recursive_match && !opts.select_subscribed {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        if !s.eat(b' ') {
            return Err("LIST needs a reference and a pattern".into());
        }
    }
    let reference_at = s.pos;
    s.astring().ok_or("LIST needs a reference name")?;
    let reference = &message[reference_at..s.pos];
    if !s.eat(b' ') {
        return Ok((Cow::Borrowed(message), extras));
    }
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let first_pattern: Vec<u8>;
    if s.peek() == Some(b'(') {
        opts.extended = true;
        s.pos += 1;
        loop {
            let at = s.pos;
            let decoded = s.astring().ok_or("bad LIST pattern list")?;
            patterns.push(decoded);
            let _ = at;
            if s.eat(b')') {
                break;
            }
            if !s.eat(b' ') {
                return Err("bad LIST pattern list".into());
            }
        }
        first_pattern = quote_for_codec(&patterns.remove(0));
    } else {
        let at = s.pos;
        s.astring().ok_or("LIST needs a pattern")?;
        first_pattern = message[at..s.pos].to_vec();
    }
    let tail_at = s.pos;
    if s.eat(b' ') {
        let mut t = Scanner {
            b: message,
            pos: s.pos,
        };
        if t.atom().is_some_and(|a| a.eq_ignore_ascii_case(b"RETURN")) && t.eat(b' ') {
            opts.extended = true;
            let words = t.group()?.ok_or("bad LIST RETURN options")?;
            let mut i = 0;
            while i < words.len() {
                match &words[i] {
                    Word::Atom(a) => match a.to_ascii_uppercase().as_str() {
                        "SUBSCRIBED" => opts.return_subscribed = true,
                        "CHILDREN" => opts.return_children = true,
                        "SPECIAL-USE" => opts.return_special_use = true,
                        "STATUS" => {
                            let Some(Word::Group(items)) = words.get(i + 1) else {
                                return Err("STATUS return option needs a list".into());
                            };
                            opts.return_status = Some(
                                items
                                    .iter()
                                    .flat_map(Word::atoms)
                                    .map(|a| a.to_ascii_uppercase())
                                    .collect(),
                            );
                            i += 1;
                        }
                        other => return Err(format!("Unknown LIST return option {other}")),
                    },
                    Word::Group(_) => return Err("bad LIST RETURN options".into()),
                }
                i += 1;
            }
            s.pos = t.pos;
        } else {
            s.pos = tail_at;
        }
    }
    if !opts.extended {
        return Ok((Cow::Borrowed(message), extras));
    }
    opts.more_patterns = patterns;
    let mut rebuilt = message[..args_at].to_vec();
    rebuilt.extend_from_slice(reference);
    rebuilt.push(b' ');
    rebuilt.extend_from_slice(&first_pattern);
    rebuilt.extend_from_slice(&message[s.pos..]);
    extras.list = Some(opts);
    Ok((Cow::Owned(rebuilt), extras))
}

/// A decoded pattern written back as a literal, which imap-codec accepts for any bytes.
fn quote_for_codec(decoded: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}+}}\r\n", decoded.len()).into_bytes();
    out.extend_from_slice(decoded);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Atom(String),
    Group(Vec<Word>),
}

impl Word {
    fn atoms(&self) -> Vec<String> {
        match self {
            Word::Atom(a) => vec![a.clone()],
            Word::Group(_) => Vec::new(),
        }
    }
}

struct Scanner<'b> {
    b: &'b [u8],
    pos: usize,
}

impl<'b> Scanner<'b> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// ASTRING-CHAR run (atom, also accepting list wildcards and `]`).
    fn atom(&mut self) -> Option<&'b [u8]> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c <= b' ' || c >= 0x7f || matches!(c, b'(' | b')' | b'{' | b'"' | b'\\') {
                break;
            }
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.b[start..self.pos])
    }

    /// atom, quoted string or literal; returns the decoded bytes.
    fn astring(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    let c = self.peek()?;
                    self.pos += 1;
                    match c {
                        b'"' => return Some(out),
                        b'\\' => {
                            out.push(self.peek()?);
                            self.pos += 1;
                        }
                        b'\r' | b'\n' => return None,
                        c => out.push(c),
                    }
                }
            }
            // `~{` opens a literal8 (RFC 4466); a lone `~` is an ordinary ASTRING-CHAR.
            b'{' | b'~' if self.peek() == Some(b'{') || self.b.get(self.pos + 1) == Some(&b'{') => {
                if self.peek() == Some(b'~') {
                    self.pos += 1;
                }
                self.pos += 1;
                let start = self.pos;
                while self.peek()?.is_ascii_digit() {
                    self.pos += 1;
                }
                let n: usize = std::str::from_utf8(&self.b[start..self.pos])
                    .ok()?
                    .parse()
                    .ok()?;
                self.eat(b'+');
                if !(self.eat(b'}') && self.eat(b'\r') && self.eat(b'\n')) {
                    return None;
                }
                let data = self.b.get(self.pos..self.pos.checked_add(n)?)?.to_vec();
                self.pos += n;
                Some(data)
            }
            _ => self.atom().map(<[u8]>::to_vec),
        }
    }

    /// A parenthesised list of atoms and nested lists.
    fn group(&mut self) -> Result<Option<Vec<Word>>, String> {
        if !self.eat(b'(') {
            return Ok(None);
        }
        let mut words = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(Some(words));
            }
            if !words.is_empty() && !self.eat(b' ') {
                return Err("expected a space in option list".into());
            }
            if self.peek() == Some(b'(') {
                words.push(Word::Group(self.group()?.unwrap_or_default()));
            } else {
                let a = self.atom().ok_or("bad option list")?;
                words.push(Word::Atom(String::from_utf8_lossy(a).into_owned()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiappend_is_cut_into_single_appends() {
        let m = b"a APPEND Drafts (\\Seen) {3+}\r\none \"01-Jan-2026 10:00:00 +0000\" {3+}\r\ntwo ~{3}\r\nthr\r\n";
        let (first, extras) = preparse(m).unwrap();
        assert_eq!(&*first, b"a APPEND Drafts (\\Seen) {3+}\r\none\r\n");
        assert_eq!(
            extras.more_appends,
            vec![
                b"a APPEND Drafts \"01-Jan-2026 10:00:00 +0000\" {3+}\r\ntwo\r\n".to_vec(),
                b"a APPEND Drafts ~{3}\r\nthr\r\n".to_vec(),
            ]
        );
        // CATENATE: the parts come out, a placeholder goes to imap-codec.
        let m = b"a APPEND Sent (\\Seen) CATENATE (URL \"/Drafts;UIDVALIDITY=7/;UID=3/;SECTION=HEADER\" TEXT {4+}\r\nbody URL /INBOX/;UID=1)\r\n";
        let (first, extras) = preparse(m).unwrap();
        assert_eq!(&*first, b"a APPEND Sent (\\Seen) {1+}\r\n.\r\n");
        assert_eq!(
            extras.catenate,
            vec![Some(vec![
                CatPart::Url("/Drafts;UIDVALIDITY=7/;UID=3/;SECTION=HEADER".into()),
                CatPart::Text(b"body".to_vec()),
                CatPart::Url("/INBOX/;UID=1".into()),
            ])]
        );
        assert!(preparse(b"a APPEND Sent CATENATE (BOGUS x)\r\n")
            .is_ok_and(|(r, e)| e.catenate.is_empty() && !r.is_empty()));
        // One message: untouched.
        let one = b"a APPEND INBOX {3+}\r\none\r\n";
        let (rest, extras) = preparse(one).unwrap();
        assert_eq!(&*rest, one);
        assert!(extras.more_appends.is_empty());
    }

    #[test]
    fn search_return_is_peeled() {
        let (rest, extras) = preparse(b"a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"a UID SEARCH UNSEEN\r\n");
        assert_eq!(
            extras.search_return,
            Some(vec![SearchReturn::Min, SearchReturn::Count])
        );
        let (rest, extras) = preparse(b"a SEARCH RETURN () ALL\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"a SEARCH ALL\r\n");
        assert_eq!(extras.search_return, Some(vec![]));
        let (rest, extras) = preparse(b"a SEARCH ALL\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"a SEARCH ALL\r\n");
        assert!(extras.search_return.is_none());
    }

    /// Each of `commands` is refused by the pre-parser (a tagged BAD).
    fn refused(commands: &[&[u8]]) {
        for bad in commands {
            assert!(preparse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn context_return_options_are_peeled() {
        let (rest, extras) =
            preparse(b"a UID SEARCH RETURN (UPDATE CONTEXT PARTIAL -1:-10 COUNT) UNSEEN\r\n")
                .unwrap();
        assert_eq!(rest.as_ref(), b"a UID SEARCH UNSEEN\r\n");
        let partial = Partial {
            first: -1,
            last: -10,
        };
        assert_eq!(
            extras.search_return,
            Some(vec![
                SearchReturn::Update,
                SearchReturn::Context,
                SearchReturn::Partial(partial),
                SearchReturn::Count
            ])
        );
        assert_eq!(partial.to_string(), "-1:-10");
        let (rest, extras) =
            preparse(b"b SORT RETURN (PARTIAL 1:5 UPDATE) (DATE) UTF-8 ALL\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"b SORT (DATE) UTF-8 ALL\r\n");
        assert_eq!(
            extras.sort_return,
            Some(vec![
                SearchReturn::Partial(Partial { first: 1, last: 5 }),
                SearchReturn::Update
            ])
        );
        refused(&[
            b"c SEARCH RETURN (PARTIAL) ALL\r\n",
            b"c SEARCH RETURN (PARTIAL 0:4) ALL\r\n",
            b"c SEARCH RETURN (PARTIAL 1:-4) ALL\r\n",
            b"c SEARCH RETURN (PARTIAL 1:4294967296) ALL\r\n",
            b"c SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL\r\n",
            b"c SEARCH RETURN (ALL PARTIAL 1:2) ALL\r\n",
            b"c SEARCH RETURN (PARTIAL (1:2)) ALL\r\n",
            b"c SORT RETURN (SAVE) (DATE) UTF-8 ALL\r\n",
        ]);
    }

    #[test]
    fn partial_windows_stay_inside_the_result() {
        let w = |first, last, len| Partial { first, last }.window(len);
        assert_eq!(w(1, 3, 10), 0..3);
        assert_eq!(w(3, 1, 10), 0..3);
        assert_eq!(w(8, 20, 10), 7..10);
        assert_eq!(w(11, 20, 10), 0..0);
        assert_eq!(w(-1, -3, 10), 7..10);
        assert_eq!(w(-9, -20, 10), 0..2);
        assert_eq!(w(-11, -20, 10), 0..0);
        assert_eq!(w(1, 1, 0), 0..0);
    }

    #[test]
    fn notify_becomes_a_noop_with_its_request() {
        let (rest, extras) = preparse(
            b"n NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from)]) MessageExpunge)) (subtree (Lists \"My Box\") (MessageNew MessageExpunge FlagChange))\r\n",
        )
        .unwrap();
        assert_eq!(rest.as_ref(), b"n NOOP\r\n");
        let notify = extras.notify.unwrap();
        assert!(!notify.bad_event);
        let set = notify.set.unwrap();
        assert!(set.status);
        assert_eq!(set.groups.len(), 2);
        assert_eq!(set.groups[0].filter, NotifyFilter::Selected);
        assert_eq!(
            set.groups[1].filter,
            NotifyFilter::Subtree(vec![b"Lists".to_vec(), b"My Box".to_vec()])
        );
        assert!(set.groups[1].events.flag_change);

        let (_, extras) = preparse(b"n notify none\r\n").unwrap();
        assert_eq!(extras.notify.unwrap().set, None);
        let (_, extras) =
            preparse(b"n NOTIFY SET (personal (MailboxName AnnotationChange))\r\n").unwrap();
        assert!(extras.notify.unwrap().bad_event);
        let (_, extras) =
            preparse(b"n NOTIFY SET (inboxes NONE) (mailboxes INBOX (SubscriptionChange))\r\n")
                .unwrap();
        assert_eq!(extras.notify.unwrap().set.unwrap().groups.len(), 2);
        refused(&[
            b"n NOTIFY\r\n",
            b"n NOTIFY SET\r\n",
            b"n NOTIFY NONE x\r\n",
            b"n NOTIFY SET ()\r\n",
            b"n NOTIFY SET (personal ())\r\n",
            b"n NOTIFY SET (personal (MessageNew))\r\n",
            b"n NOTIFY SET (personal (MessageExpunge))\r\n",
            b"n NOTIFY SET (personal (FlagChange))\r\n",
            b"n NOTIFY SET (personal (MessageNew (UID) MessageExpunge))\r\n",
            b"n NOTIFY SET (selected NONE) (selected-delayed NONE)\r\n",
            b"n NOTIFY SET (everything NONE)\r\n",
            b"n NOTIFY SET (subtree NONE)\r\n",
            b"n NOTIFY SET (personal NONE)  (inboxes NONE)\r\n",
            b"n NOTIFY SET STATUS\r\n",
        ]);
        let many: String = (0..101).map(|i| format!(" m{i}")).collect();
        let line = format!("n NOTIFY SET (mailboxes ({}) NONE)\r\n", many.trim_start());
        refused(&[line.as_bytes()]);
        // The fuzz seeds: two parse (one with BADEVENT and a literal name), one is BAD.
        let seed = include_bytes!("../fuzz/seeds/imap_preparse/notify_set");
        assert_eq!(
            preparse(seed)
                .unwrap()
                .1
                .notify
                .unwrap()
                .set
                .unwrap()
                .groups
                .len(),
            3
        );
        let seed = include_bytes!("../fuzz/seeds/imap_preparse/notify_badevent");
        assert!(preparse(seed).unwrap().1.notify.unwrap().bad_event);
        refused(&[include_bytes!(
            "../fuzz/seeds/imap_preparse/notify_bad_combination"
        )]);
        let groups: String = (0..9).map(|_| " (inboxes NONE)").collect();
        let line = format!("n NOTIFY SET{groups}\r\n");
        refused(&[line.as_bytes()]);
    }

    #[test]
    fn cancelupdate_becomes_a_noop_with_its_tags() {
        let (rest, extras) = preparse(b"x1 CANCELUPDATE \"A01\" \"b\\\"2\"\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"x1 NOOP\r\n");
        assert_eq!(
            extras.cancel_update,
            Some(vec!["A01".to_string(), "b\"2".to_string()])
        );
        // Not a tag: left for imap-codec to refuse.
        let odd = b"a+b CANCELUPDATE \"x\"\r\n";
        assert_eq!(
            preparse(odd).unwrap(),
            (Cow::Borrowed(&odd[..]), Extras::default())
        );
        refused(&[
            b"x CANCELUPDATE\r\n",
            b"x CANCELUPDATE \r\n",
            b"x CANCELUPDATE A01\r\n",
            b"x CANCELUPDATE \"A01\"  \"B\"\r\n",
            b"x CANCELUPDATE \"A01\" extra\r\n",
            b"x CANCELUPDATE {3}\r\nA01\r\n",
        ]);
    }

    #[test]
    fn extended_list_is_peeled() {
        let (rest, extras) =
            preparse(b"t LIST (SUBSCRIBED) \"\" (\"INBOX\" Sent) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n")
                .unwrap();
        assert_eq!(rest.as_ref(), b"t LIST \"\" {5+}\r\nINBOX\r\n");
        let list = extras.list.unwrap();
        assert!(list.select_subscribed && list.return_children);
        assert_eq!(list.more_patterns, vec![b"Sent".to_vec()]);
        assert_eq!(
            list.return_status,
            Some(vec!["MESSAGES".to_string(), "UNSEEN".to_string()])
        );
        let (rest, extras) = preparse(b"t LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"t LIST \"\" \"*\"\r\n");
        assert!(extras.list.unwrap().return_special_use);
        let (rest, extras) = preparse(b"t LIST \"\" %\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"t LIST \"\" %\r\n");
        assert!(extras.list.is_none());
        assert!(preparse(b"t LIST (BOGUS) \"\" *\r\n").is_err());
    }
}

/// Where a command uses the SEARCHRES `$` marker (RFC 5182 / RFC 9051 §6.4.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DollarUse {
    /// A UID command (so `$` stands for UIDs) or a SEARCH (where `$` is a key).
    pub by_uid: bool,
    pub is_search: bool,
    /// Byte offsets of standalone `$` tokens outside strings and literals.
    pub positions: Vec<usize>,
}

/// Finds `$` tokens in FETCH, STORE, COPY, MOVE, SEARCH and UID EXPUNGE commands, only where
/// the grammar of RFC 5182 §3 puts a `seq-set` or a `search-key`: the first argument of the
/// message-set commands, and a search key that is not the argument of a string or keyword key
/// (`KEYWORD $` and `SUBJECT $` name a keyword and a string, not the saved result).
pub fn find_dollar(message: &[u8]) -> Option<DollarUse> {
    if !message.contains(&b'$') {
        return None;
    }
    let mut s = Scanner { b: message, pos: 0 };
    s.atom()?;
    if !s.eat(b' ') {
        return None;
    }
    let mut name = s.atom()?.to_ascii_uppercase();
    let mut by_uid = false;
    if name == b"UID" && s.eat(b' ') {
        by_uid = true;
        name = s.atom()?.to_ascii_uppercase();
    }
    let allowed: &[&[u8]] = &[b"FETCH", b"STORE", b"COPY", b"MOVE", b"SEARCH", b"EXPUNGE"];
    if !allowed.contains(&name.as_slice()) || (name == b"EXPUNGE" && !by_uid) {
        return None;
    }
    let is_search = name == b"SEARCH";
    let tokens = tokens(message, s.pos);
    let mut positions = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if &message[t.clone()] != b"$" {
            continue;
        }
        if !is_search {
            if i == 0 {
                positions.push(t.start);
            }
            continue;
        }
        let word = |k: Option<usize>| {
            k.and_then(|k| tokens.get(k))
                .map(|r| message[r.clone()].to_ascii_uppercase())
                .unwrap_or_default()
        };
        let prev = word(i.checked_sub(1));
        let takes_argument: &[&[u8]] = &[
            b"KEYWORD",
            b"UNKEYWORD",
            b"BCC",
            b"BODY",
            b"CC",
            b"FROM",
            b"SUBJECT",
            b"TEXT",
            b"TO",
            b"CHARSET",
            b"HEADER",
        ];
        if takes_argument.contains(&prev.as_slice()) || word(i.checked_sub(2)) == b"HEADER" {
            continue;
        }
        positions.push(t.start);
    }
    (!positions.is_empty()).then_some(DollarUse {
        by_uid,
        is_search,
        positions,
    })
}

/// Byte ranges of the argument tokens from `at` on: atoms, quoted strings (with quotes),
/// literals (announcement and data) and single parentheses.
fn tokens(b: &[u8], mut i: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    while i < b.len() {
        let start = i;
        match b[i] {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' | b')' => i += 1,
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(b.len());
            }
            b'{' => {
                let digits = i + 1;
                let mut j = digits;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                let n: usize = std::str::from_utf8(&b[digits..j])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                if j < b.len() && b[j] == b'+' {
                    j += 1;
                }
                // `}` CRLF then n bytes of literal data.
                i = if b.get(j..j + 3) == Some(b"}\r\n") {
                    (j + 3).saturating_add(n).min(b.len())
                } else {
                    j.max(i + 1)
                };
            }
            _ => {
                while i < b.len()
                    && !matches!(b[i], b' ' | b'\r' | b'\n' | b'(' | b')' | b'"' | b'{')
                {
                    i += 1;
                }
            }
        }
        out.push(start..i);
    }
    out
}

/// Replaces the `$` tokens found by [`find_dollar`] with `set`.
pub fn replace_dollar(message: &[u8], found: &DollarUse, set: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + set.len() * found.positions.len());
    let mut last = 0;
    for &p in &found.positions {
        out.extend_from_slice(&message[last..p]);
        out.extend_from_slice(set.as_bytes());
        last = p + 1;
    }
    out.extend_from_slice(&message[last..]);
    out
}

#[cfg(test)]
mod dollar_tests {
    use super::*;

    #[test]
    fn dollar_tokens_outside_strings_are_found() {
        let m = b"a UID FETCH $ (FLAGS)\r\n";
        let d = find_dollar(m).unwrap();
        assert!(d.by_uid && !d.is_search);
        assert_eq!(replace_dollar(m, &d, "1:3"), b"a UID FETCH 1:3 (FLAGS)\r\n");
        let m = b"b SEARCH SUBJECT \"$\" $ {1}\r\n$\r\n";
        let d = find_dollar(m).unwrap();
        assert!(d.is_search);
        assert_eq!(d.positions.len(), 1);
        assert!(find_dollar(b"c APPEND INBOX {3}\r\n $ \r\n").is_none());
        assert!(find_dollar(b"d FETCH 1 BODY[$]\r\n").is_none());
        assert!(find_dollar(b"e FETCH {18446744073709551615}\r\n $\r\n").is_none());
        let _ = preparse(b"f LIST \"\" {18446744073709551615}\r\nx\r\n");
    }
}

/// The pre-parser against imap-codec as oracle: every command imap-codec accepts passes
/// through both pre-parse steps unchanged (the fuzz target `imap_preparse` checks the same
/// on generated input).
#[cfg(test)]
mod oracle_tests {
    use imap_codec::{decode::Decoder, CommandCodec};

    use super::*;

    fn codec_accepts(m: &[u8]) -> bool {
        matches!(CommandCodec::default().decode(m), Ok((rest, _)) if rest.is_empty())
    }

    /// Commands built from RFC 3501 §9 / RFC 9051 §9: atoms with every ATOM-CHAR, `~` not
    /// followed by `{`, `]` in astrings, and `$` as a keyword or string.
    const ACCEPTED: &[&[u8]] = &[
        b"a LIST \"\" ~\r\n",
        b"a LIST \"\" ~foo\r\n",
        b"a LIST ~ref ~foo*\r\n",
        b"a LIST ~ *\r\n",
        b"a LIST \"\" ~/%\r\n",
        b"a LIST ]a ]\r\n",
        b"a LIST !#$&'+,-./:;<=>?@[^_`|}~ %\r\n",
        b"~tag LIST \"\" *\r\n",
        b"a LIST {3}\r\n~ab {1+}\r\n~\r\n",
        b"a LSUB \"\" ~x\r\n",
        b"a SELECT ~archive\r\n",
        b"a CREATE ~\r\n",
        b"a STATUS ~x (MESSAGES)\r\n",
        b"a SEARCH KEYWORD $\r\n",
        b"a SEARCH SUBJECT $ UNSEEN\r\n",
        b"a SEARCH HEADER $ $\r\n",
        b"a SEARCH NOT KEYWORD $\r\n",
        b"a UID SEARCH OR UNKEYWORD $ TEXT $\r\n",
        b"a STORE 1 +FLAGS ($)\r\n",
        b"a UID STORE 1:* FLAGS ($ $Junk)\r\n",
        b"a COPY 1 $\r\n",
        b"a UID MOVE 2 $\r\n",
        b"a FETCH 1 (FLAGS)\r\n",
        b"a LOGIN ~user ~pass\r\n",
    ];

    #[test]
    fn what_imap_codec_accepts_passes_unchanged() {
        for m in ACCEPTED {
            let shown = String::from_utf8_lossy(m);
            assert!(codec_accepts(m), "imap-codec rejects {shown:?}");
            let (out, extras) =
                preparse(m).unwrap_or_else(|e| panic!("pre-parser rejects {shown:?}: {e}"));
            assert_eq!(out.as_ref(), *m, "{shown:?}");
            assert_eq!(extras, Extras::default(), "{shown:?}");
            assert_eq!(find_dollar(m), None, "{shown:?}");
        }
    }

    #[test]
    fn extension_forms_still_peel_with_tilde_atoms() {
        let (rest, extras) = preparse(b"t LIST (SUBSCRIBED) ~r (~a b) RETURN (CHILDREN)\r\n")
            .expect("extended LIST with ~ atoms");
        assert_eq!(rest.as_ref(), b"t LIST ~r {2+}\r\n~a\r\n");
        assert_eq!(extras.list.unwrap().more_patterns, vec![b"b".to_vec()]);
        let (rest, _) = preparse(b"t LIST \"\" ~x RETURN (SPECIAL-USE)\r\n").unwrap();
        assert_eq!(rest.as_ref(), b"t LIST \"\" ~x\r\n");
    }

    #[test]
    fn dollar_marks_only_sets_and_search_keys() {
        let cases: &[(&[u8], usize)] = &[
            (b"a FETCH $ (FLAGS)\r\n", 1),
            (b"a STORE $ +FLAGS ($)\r\n", 1),
            (b"a UID COPY $ $\r\n", 1),
            (b"a UID EXPUNGE $\r\n", 1),
            (b"a SEARCH $\r\n", 1),
            (b"a SEARCH NOT $ KEYWORD $\r\n", 1),
            (b"a SEARCH SUBJECT $ $\r\n", 1),
            (b"a SEARCH HEADER X $ (OR $ SEEN)\r\n", 1),
            (b"a SEARCH UID $\r\n", 1),
            (b"a SEARCH KEYWORD $\r\n", 0),
        ];
        for (m, n) in cases {
            let found = find_dollar(m).map(|d| d.positions.len()).unwrap_or(0);
            assert_eq!(found, *n, "{}", String::from_utf8_lossy(m));
        }
        let m = b"a STORE $ +FLAGS ($)\r\n";
        let d = find_dollar(m).unwrap();
        assert_eq!(replace_dollar(m, &d, "4:5"), b"a STORE 4:5 +FLAGS ($)\r\n");
    }
}
