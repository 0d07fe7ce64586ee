//! Protocol-level tests with a raw socket: state machine, literals, limits, bad input,
//! replicas (IDLE across servers, UID allocation under concurrent APPENDs), CONDSTORE, QUOTA,
//! COPY blobs, UIDVALIDITY.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use postbay_imap::ImapLimits;

fn tagged<'a>(lines: &'a [String], tag: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .map(String::as_str)
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_select_append_fetch_flow() {
    each_backend(test_limits(), |env| async move {
        let (mut c, greeting) = Raw::connect(env.port()).await;
        assert!(
            greeting.starts_with("* OK [CAPABILITY IMAP4REV1 IMAP4rev2"),
            "{greeting}"
        );
        assert!(
            greeting.contains("STARTTLS") && greeting.contains("AUTH=PLAIN"),
            "{greeting}"
        );
        let caps = c.cmd("a CAPABILITY").await;
        assert!(caps[0].starts_with("* CAPABILITY"), "{caps:?}");
        let r = c.cmd("b LOGIN alice@example.test secret").await;
        assert!(tagged(&r, "b").starts_with("b OK [CAPABILITY"), "{r:?}");
        assert!(tagged(&r, "b").contains("UIDPLUS"), "{r:?}");

        // APPEND with a synchronizing literal: wait for the continuation.
        let msg = message("first", "hello");
        c.send(format!("c APPEND INBOX (\\Seen) {{{}}}\r\n", msg.len()).as_bytes())
            .await;
        let cont = c.line().await;
        assert!(cont.starts_with("+ "), "{cont}");
        c.send(&msg).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("c").await;
        assert!(tagged(&r, "c").starts_with("c OK [APPENDUID "), "{r:?}");
        // LITERAL+: no continuation.
        let msg2 = message("second", "world");
        c.send(format!("d APPEND INBOX {{{}+}}\r\n", msg2.len()).as_bytes())
            .await;
        c.send(&msg2).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("d").await;
        assert!(tagged(&r, "d").starts_with("d OK [APPENDUID "), "{r:?}");

        let r = c.cmd("e SELECT INBOX").await;
        assert!(r.contains(&"* 2 EXISTS".to_string()), "{r:?}");
        assert!(
            r.iter().any(|l| l.starts_with("* OK [UIDVALIDITY ")),
            "{r:?}"
        );
        assert!(r.iter().any(|l| l.starts_with("* OK [UIDNEXT 3]")), "{r:?}");
        assert!(tagged(&r, "e").starts_with("e OK [READ-WRITE]"), "{r:?}");

        let r = c.cmd("f FETCH 1:* (UID FLAGS RFC822.SIZE)").await;
        assert!(
            r[0].starts_with("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) RFC822.SIZE "),
            "{r:?}"
        );
        assert!(
            r[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Recent) RFC822.SIZE "),
            "{r:?}"
        );

        let r = c.cmd("g FETCH 2 (BODY[TEXT])").await;
        assert!(r.iter().any(|l| l.contains("BODY[TEXT] {7}")), "{r:?}");
        assert!(
            r.iter().any(|l| l.contains("FLAGS (\\Seen \\Recent)")),
            "non-peek sets \\Seen: {r:?}"
        );
        let r = c.cmd("h UID SEARCH UNSEEN").await;
        assert_eq!(r[0], "* SEARCH", "{r:?}");
        let r = c.cmd("i LOGOUT").await;
        assert!(r[0].starts_with("* BYE"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_answers() {
    let limits = ImapLimits {
        max_line_length: 1024,
        max_unauthenticated_literal: 100,
        ..test_limits()
    };
    each_backend(limits, |env| async move {
        let (mut c, _) = Raw::connect(env.port()).await;
        let r = c.cmd("a FROBNICATE").await;
        assert_eq!(r[0], "a BAD Unknown command FROBNICATE");
        let r = c.cmd("b SELECT INBOX").await;
        assert!(
            r[0].starts_with("b BAD") && r[0].contains("Not authenticated"),
            "{r:?}"
        );
        let r = c.cmd("c FETCH 1 FLAGS").await;
        assert!(r[0].starts_with("c BAD"), "{r:?}");
        c.send(b"garbage-without-command\r\n").await;
        let line = c.line().await;
        assert!(
            line.starts_with("garbage-without-command BAD") || line.starts_with("* BAD"),
            "{line}"
        );
        // A NUL byte can't be in a command line.
        c.send(b"d LOGIN a\0b c\r\n").await;
        let line = c.line().await;
        assert!(line.starts_with("d BAD"), "{line}");
        // A literal over the pre-auth limit is refused before its bytes are sent.
        c.send(b"e LOGIN {5000}\r\n").await;
        let line = c.line().await;
        assert!(line.starts_with("e NO [TOOBIG]"), "{line}");
        // ...and the session continues normally.
        let r = c.cmd("f LOGIN alice@example.test secret").await;
        assert!(tagged(&r, "f").starts_with("f OK"), "{r:?}");
        let r = c.cmd("g LOGIN alice@example.test secret").await;
        assert!(
            r[0].starts_with("g BAD") && r[0].contains("Already authenticated"),
            "{r:?}"
        );
        let r = c.cmd("h FETCH 1 FLAGS").await;
        assert!(r[0].contains("No mailbox selected"), "{r:?}");
        c.cmd("i SELECT INBOX").await;
        let r = c.cmd("j FETCH 5 FLAGS").await;
        assert!(tagged(&r, "j").starts_with("j BAD"), "{r:?}");
        let r = c.cmd("k SEARCH CHARSET KOI8-R TEXT x").await;
        assert!(tagged(&r, "k").starts_with("k NO [BADCHARSET"), "{r:?}");
        let r = c.cmd("l SEARCH CHARSET UTF-8 TEXT x").await;
        assert!(tagged(&r, "l").starts_with("l OK"), "{r:?}");
        let r = c.cmd("m SELECT nosuch").await;
        assert!(tagged(&r, "m").starts_with("m NO [NONEXISTENT]"), "{r:?}");
        let r = c.cmd("n CREATE \"a//b\"").await;
        assert!(tagged(&r, "n").starts_with("n NO"), "{r:?}");
        let r = c.cmd("o FETCH 1:* (BODY[").await;
        assert!(tagged(&r, "o").starts_with("o BAD"), "{r:?}");
        let r = c.cmd("p LIST (NOSUCHOPTION) \"\" *").await;
        assert!(tagged(&r, "p").starts_with("p BAD"), "{r:?}");
        // A line longer than the limit ends the connection with BYE.
        let long = format!("q NOOP {}\r\n", "x".repeat(5000));
        c.send(long.as_bytes()).await;
        let line = c.line().await;
        assert!(
            line.starts_with("* BYE") && line.contains("too long"),
            "{line}"
        );
        assert_eq!(c.line().await, "", "connection closed");

        // An over-limit non-synchronizing literal cannot be skipped: BYE.
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        c.send(b"r APPEND INBOX {999999999+}\r\nabc").await;
        let line = c.line().await;
        assert!(line.starts_with("* BYE"), "{line}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_delayed_limited_and_disconnected() {
    let limits = ImapLimits {
        max_failures_per_user: 3,
        failed_login_delay: Duration::from_millis(300),
        ..test_limits()
    };
    each_backend(limits, |env| async move {
        let (mut c, _) = Raw::connect(env.port()).await;
        let started = Instant::now();
        let r = c.cmd("a LOGIN bob@example.test wrong").await;
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "failure is delayed"
        );
        assert!(r[0].starts_with("a NO [AUTHENTICATIONFAILED]"), "{r:?}");
        let r = c.cmd("b LOGIN nobody@example.test wrong").await;
        assert!(r[0].starts_with("b NO [AUTHENTICATIONFAILED]"), "{r:?}");
        let r = c
            .cmd("c AUTHENTICATE PLAIN AGJvYkBleGFtcGxlLnRlc3QAd3Jvbmc=")
            .await;
        assert!(tagged(&r, "c").starts_with("c NO"), "{r:?}");
        // Third failure on one connection: BYE.
        let line = c.line().await;
        assert!(line.starts_with("* BYE"), "{line}");

        // bob has 3 failures; a 4th, then even the right password is refused for a while.
        let (mut c, _) = Raw::connect(env.port()).await;
        c.cmd("d LOGIN bob@example.test wrong").await;
        let r = c.cmd("e LOGIN bob@example.test hunter2").await;
        assert!(r[0].starts_with("e NO [UNAVAILABLE]"), "{r:?}");
        // Other users are not affected.
        let r = c.cmd("f LOGIN alice@example.test secret").await;
        assert!(tagged(&r, "f").starts_with("f OK"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_and_login_mechanisms() {
    each_backend(test_limits(), |env| async move {
        // SASL PLAIN with a continuation.
        let (mut c, _) = Raw::connect(env.port()).await;
        c.send(b"a AUTHENTICATE PLAIN\r\n").await;
        assert_eq!(c.line().await, "+ ");
        c.send(b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n").await;
        let r = c.until_tag("a").await;
        assert!(tagged(&r, "a").starts_with("a OK"), "{r:?}");
        // LOGIN mechanism, cancelled then done.
        let (mut c, _) = Raw::connect(env.port()).await;
        c.send(b"b AUTHENTICATE LOGIN\r\n").await;
        assert_eq!(c.line().await, "+ VXNlcm5hbWU6");
        c.send(b"*\r\n").await;
        let r = c.until_tag("b").await;
        assert!(tagged(&r, "b").starts_with("b BAD"), "{r:?}");
        c.send(b"c AUTHENTICATE LOGIN\r\n").await;
        c.line().await;
        c.send(b"Ym9iQGV4YW1wbGUudGVzdA==\r\n").await;
        assert_eq!(c.line().await, "+ UGFzc3dvcmQ6");
        c.send(b"aHVudGVyMg==\r\n").await;
        let r = c.until_tag("c").await;
        assert!(tagged(&r, "c").starts_with("c OK"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autologout_before_authentication() {
    let limits = ImapLimits {
        auth_timeout: Duration::from_secs(1),
        ..test_limits()
    };
    each_backend(limits, |env| async move {
        let (mut c, _) = Raw::connect(env.port()).await;
        let started = Instant::now();
        let line = c.line().await;
        assert!(line.starts_with("* BYE"), "{line}");
        assert!(started.elapsed() < Duration::from_secs(5));
        env
    })
    .await;
}

/// IDLE on one replica sees APPEND, delivery, flag changes and expunges made through another
/// replica (its own store handle on the same database) within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sees_changes_from_another_replica() {
    each_backend(test_limits(), |mut env| async move {
        let limits = test_limits();
        let second = env.add_server(limits).await;
        let port_b = env.servers[second].port;
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        a.cmd("s SELECT INBOX").await;
        a.send(b"i IDLE\r\n").await;
        assert!(a.line().await.starts_with("+ "));

        // APPEND through replica B's IMAP.
        let mut b = Raw::login(port_b, ALICE, ALICE_PASSWORD).await;
        let msg = message("via b", "x");
        let started = Instant::now();
        b.send(format!("a APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes())
            .await;
        b.send(&msg).await;
        b.send(b"\r\n").await;
        b.until_tag("a").await;
        assert_eq!(a.line().await, "* 1 EXISTS");
        // An IMAP4rev1 session hears how many are \Recent with every new message.
        assert_eq!(a.line().await, "* 1 RECENT");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // Delivery straight into replica B's store (as LMTP does).
        let started = Instant::now();
        deliver(
            &env.servers[second].store,
            ALICE,
            "INBOX",
            message("lmtp", "y"),
        )
        .await;
        assert_eq!(a.line().await, "* 2 EXISTS");
        assert_eq!(a.line().await, "* 2 RECENT");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );

        // Flags and expunge through B.
        b.cmd("b SELECT INBOX").await;
        b.cmd("c STORE 1 +FLAGS (\\Flagged)").await;
        let line = a.line().await;
        assert!(
            line.starts_with("* 1 FETCH (FLAGS (\\Flagged \\Recent) UID 1"),
            "{line}"
        );
        b.cmd("d STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        b.cmd("e EXPUNGE").await;
        let mut line = a.line().await;
        while line.starts_with("* 1 FETCH") {
            line = a.line().await;
        }
        assert_eq!(line, "* 1 EXPUNGE");
        a.send(b"DONE\r\n").await;
        let r = a.until_tag("i").await;
        assert!(tagged(&r, "i").starts_with("i OK"), "{r:?}");
        let r = a.cmd("j FETCH 1 (UID)").await;
        assert!(r[0].starts_with("* 1 FETCH (UID 2)"), "{r:?}");
        env
    })
    .await;
}

/// Concurrent APPENDs through two replicas: every message gets its own UID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_on_two_replicas_never_share_a_uid() {
    each_backend(test_limits(), |mut env| async move {
        let second = env.add_server(test_limits()).await;
        let ports = [env.port(), env.servers[second].port];
        let mut tasks = Vec::new();
        for client in 0..6 {
            let port = ports[client % 2];
            tasks.push(tokio::spawn(async move {
                let mut c = Raw::login(port, ALICE, ALICE_PASSWORD).await;
                let mut uids = Vec::new();
                for i in 0..15 {
                    let msg = message(&format!("c{client} m{i}"), "body");
                    c.send(format!("a APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes())
                        .await;
                    c.send(&msg).await;
                    c.send(b"\r\n").await;
                    let r = c.until_tag("a").await;
                    let last = r.last().unwrap();
                    assert!(last.starts_with("a OK [APPENDUID "), "{r:?}");
                    let uid: u32 = last
                        .split(' ')
                        .nth(4)
                        .unwrap()
                        .trim_end_matches(']')
                        .parse()
                        .unwrap();
                    uids.push(uid);
                }
                uids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let unique: HashSet<u32> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "duplicate UIDs: {all:?}");
        assert_eq!(all.len(), 90);
        assert_eq!(
            env.store().count_messages(ALICE, "INBOX").await.unwrap(),
            90
        );
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("s SELECT INBOX").await;
        assert!(r.contains(&"* 90 EXISTS".to_string()), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_changes_when_a_name_is_reused() {
    each_backend(test_limits(), |env| async move {
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let uidvalidity = |r: &[String]| {
            r.iter()
                .find(|l| l.starts_with("* OK [UIDVALIDITY "))
                .unwrap()
                .split(' ')
                .nth(3)
                .unwrap()
                .trim_end_matches(']')
                .to_string()
        };
        assert!(tagged(&c.cmd("a CREATE Projects/2024").await, "a").starts_with("a OK"));
        let r = c.cmd("b LIST \"\" \"Projects*\"").await;
        assert!(
            r.iter()
                .any(|l| l.contains("\\HasChildren") && l.ends_with("Projects")),
            "{r:?}"
        );
        let first = uidvalidity(&c.cmd("c SELECT Projects/2024").await);
        c.cmd("d UNSELECT").await;
        assert!(tagged(&c.cmd("e DELETE Projects/2024").await, "e").starts_with("e OK"));
        assert!(tagged(&c.cmd("f CREATE Projects/2024").await, "f").starts_with("f OK"));
        let second = uidvalidity(&c.cmd("g SELECT Projects/2024").await);
        assert_ne!(first, second);
        let r = c.cmd("h CREATE Projects/2024").await;
        assert!(tagged(&r, "h").starts_with("h NO [ALREADYEXISTS]"), "{r:?}");
        let r = c.cmd("i RENAME Projects Archive2").await;
        assert!(tagged(&r, "i").starts_with("i OK"), "{r:?}");
        let r = c.cmd("j LIST \"\" \"Archive2/*\"").await;
        assert!(r.iter().any(|l| l.ends_with("Archive2/2024")), "{r:?}");
        let r = c.cmd("k DELETE INBOX").await;
        assert!(tagged(&r, "k").starts_with("k NO"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_have_their_own_blob_and_move_is_atomic() {
    each_backend(test_limits(), |env| async move {
        deliver(env.store(), ALICE, "INBOX", message("keep me", "payload")).await;
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        c.cmd("a SELECT INBOX").await;
        let r = c.cmd("b COPY 1 Archive").await;
        assert!(tagged(&r, "b").starts_with("b OK [COPYUID "), "{r:?}");
        c.cmd("c STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        let r = c.cmd("d EXPUNGE").await;
        assert_eq!(r[0], "* 1 EXPUNGE");
        c.cmd("e SELECT Archive").await;
        let r = c.cmd("f FETCH 1 BODY.PEEK[TEXT]").await;
        assert!(
            r.iter().any(|l| l == "payload"),
            "copy survives the original: {r:?}"
        );
        let r = c.cmd("g MOVE 1 Trash").await;
        assert!(r.iter().any(|l| l.starts_with("* OK [COPYUID ")), "{r:?}");
        assert!(r.contains(&"* 1 EXPUNGE".to_string()), "{r:?}");
        let r = c.cmd("h STATUS Trash (MESSAGES UIDNEXT UNSEEN SIZE)").await;
        assert!(
            r[0].starts_with("* STATUS Trash (MESSAGES 1 UIDNEXT 2 UNSEEN 1 SIZE "),
            "{r:?}"
        );
        let r = c.cmd("i STATUS Archive (MESSAGES)").await;
        assert_eq!(r[0], "* STATUS Archive (MESSAGES 0)");
        let r = c.cmd("j COPY 1 NoSuchFolder").await;
        assert!(tagged(&r, "j").starts_with("j NO [TRYCREATE]"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_is_reported_and_enforced() {
    each_backend(test_limits(), |env| async move {
        env.store()
            .put_mailbox(&postbay_store::directory::MailboxSpec {
                address: BOB.into(),
                password_hash: format!("{{PLAIN}}{BOB_PASSWORD}"),
                quota_bytes: 4096,
                enabled: true,
                owner: None,
            })
            .await
            .unwrap();
        let mut c = Raw::login(env.port(), BOB, BOB_PASSWORD).await;
        let r = c.cmd("a GETQUOTAROOT INBOX").await;
        assert_eq!(r[0], "* QUOTAROOT INBOX \"\"");
        assert_eq!(r[1], "* QUOTA \"\" (STORAGE 0 4)");
        let big = vec![b'x'; 5000];
        c.send(format!("b APPEND INBOX {{{}+}}\r\n", big.len() + 14).as_bytes())
            .await;
        c.send(b"Subject: x\r\n\r\n").await;
        c.send(&big).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("b").await;
        assert!(tagged(&r, "b").starts_with("b NO [OVERQUOTA]"), "{r:?}");
        let r = c.cmd("c GETQUOTA \"\"").await;
        assert_eq!(r[0], "* QUOTA \"\" (STORAGE 0 4)");

        // Into the selected folder (the session sends where it knows, without a lookup):
        // the quota still holds, and space an EXPUNGE frees can be used at once.
        c.cmd("d SELECT INBOX").await;
        let append = |tag: &str, size: usize| {
            let mut bytes = format!("{tag} APPEND INBOX {{{}+}}\r\n", size + 14).into_bytes();
            bytes.extend_from_slice(b"Subject: x\r\n\r\n");
            bytes.extend(std::iter::repeat_n(b'y', size));
            bytes.extend_from_slice(b"\r\n");
            bytes
        };
        c.send(&append("e", 3000)).await;
        let r = c.until_tag("e").await;
        assert!(tagged(&r, "e").starts_with("e OK"), "{r:?}");
        c.send(&append("f", 3000)).await;
        let r = c.until_tag("f").await;
        assert!(tagged(&r, "f").starts_with("f NO [OVERQUOTA]"), "{r:?}");
        assert!(
            tagged(&r, "f").contains("Quota exceeded"),
            "says why: {r:?}"
        );
        c.cmd("g STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        c.cmd("h EXPUNGE").await;
        c.send(&append("i", 3000)).await;
        let r = c.until_tag("i").await;
        assert!(tagged(&r, "i").starts_with("i OK"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_modseq_changedsince_unchangedsince() {
    each_backend(test_limits(), |env| async move {
        for i in 0..3 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("m{i}"), "b")).await;
        }
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("a SELECT INBOX (CONDSTORE)").await;
        let highest: u64 = r
            .iter()
            .find(|l| l.starts_with("* OK [HIGHESTMODSEQ "))
            .unwrap()
            .split(' ')
            .nth(3)
            .unwrap()
            .trim_end_matches(']')
            .parse()
            .unwrap();
        let r = c.cmd("b STORE 2 +FLAGS (\\Seen)").await;
        assert!(
            r[0].starts_with("* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2 MODSEQ ("),
            "{r:?}"
        );
        let r = c
            .cmd(&format!("c FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})"))
            .await;
        assert_eq!(r.len(), 2, "only the changed message: {r:?}");
        assert!(r[0].starts_with("* 2 FETCH"), "{r:?}");
        let r = c
            .cmd(&format!(
                "d STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Flagged)"
            ))
            .await;
        assert!(tagged(&r, "d").starts_with("d OK [MODIFIED 2]"), "{r:?}");
        let r = c.cmd(&format!("e SEARCH MODSEQ {}", highest + 1)).await;
        assert!(r[0].starts_with("* SEARCH 1 2 3 (MODSEQ "), "{r:?}");
        let r = c.cmd("f UID SEARCH RETURN (MIN MAX COUNT) FLAGGED").await;
        assert_eq!(r[0], "* ESEARCH (TAG \"f\") UID MIN 1 MAX 3 COUNT 2");
        env
    })
    .await;
}

/// The number after `key ` in `line` (`MODSEQ (7)`, `[HIGHESTMODSEQ 7]`, `MODSEQ 7`).
fn number_after(line: &str, key: &str) -> u64 {
    let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[at..]
        .trim_start_matches([' ', '('])
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condstore_enabling_commands_report_highestmodseq_and_esearch_min_max_modseq() {
    each_backend(test_limits(), |env| async move {
        for i in 0..3 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("m{i}"), "b")).await;
        }
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("a SELECT INBOX").await;
        assert!(
            !r.iter().any(|l| l.contains("HIGHESTMODSEQ")),
            "not enabled yet: {r:?}"
        );
        c.cmd("b STORE 1 +FLAGS (\\Seen)").await;
        c.cmd("c STORE 3 +FLAGS (\\Seen)").await;
        // RFC 7162 §3.1: the first CONDSTORE-enabling command (here FETCH MODSEQ) in the
        // selected state reports HIGHESTMODSEQ, before its own responses; later ones do not.
        let r = c.cmd("d FETCH 1:* (MODSEQ)").await;
        assert!(r[0].starts_with("* OK [HIGHESTMODSEQ "), "{r:?}");
        let modseqs: Vec<u64> = r[1..4].iter().map(|l| number_after(l, "MODSEQ")).collect();
        assert_eq!(
            number_after(&r[0], "HIGHESTMODSEQ"),
            *modseqs.iter().max().unwrap()
        );
        assert!(
            modseqs[0] < modseqs[2],
            "message 3 changed last: {modseqs:?}"
        );
        let r = c.cmd("e FETCH 2 (MODSEQ)").await;
        assert!(!r.iter().any(|l| l.contains("HIGHESTMODSEQ")), "{r:?}");
        // RFC 7162 §3.1.5: with only MIN or MAX returned, MODSEQ is that message's.
        let search = |ret: &str| format!("SEARCH RETURN ({ret}) MODSEQ 1");
        let r = c.cmd(&format!("f {}", search("MIN"))).await;
        assert_eq!(
            r[0],
            format!("* ESEARCH (TAG \"f\") MIN 1 MODSEQ {}", modseqs[0])
        );
        let r = c.cmd(&format!("g {}", search("MAX"))).await;
        assert_eq!(
            r[0],
            format!("* ESEARCH (TAG \"g\") MAX 3 MODSEQ {}", modseqs[2])
        );
        let r = c.cmd(&format!("h {}", search("MIN COUNT"))).await;
        let highest = *modseqs.iter().max().unwrap();
        assert_eq!(
            r[0],
            format!("* ESEARCH (TAG \"h\") MIN 1 COUNT 3 MODSEQ {highest}")
        );

        // ENABLE CONDSTORE with a mailbox selected reports it too.
        let mut other = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        other.cmd("a EXAMINE INBOX").await;
        let r = other.cmd("b ENABLE CONDSTORE").await;
        assert!(r.iter().any(|l| l == "* ENABLED CONDSTORE"), "{r:?}");
        let line = r
            .iter()
            .find(|l| l.starts_with("* OK [HIGHESTMODSEQ "))
            .expect("HIGHESTMODSEQ");
        assert_eq!(number_after(line, "HIGHESTMODSEQ"), highest);
        // Not selected: nothing to report.
        let mut third = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = third.cmd("a ENABLE CONDSTORE").await;
        assert!(!r.iter().any(|l| l.contains("HIGHESTMODSEQ")), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qresync_reports_vanished_and_changes_since_a_modseq() {
    each_backend(test_limits(), |env| async move {
        for i in 0..5 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("q{i}"), "b")).await;
        }
        // RFC 7162 §3.2.5: the QRESYNC parameter needs ENABLE QRESYNC first.
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("a SELECT INBOX (QRESYNC (1 1))").await;
        assert!(tagged(&r, "a").starts_with("a BAD"), "{r:?}");
        let r = c.cmd("b ENABLE QRESYNC").await;
        assert!(r.iter().any(|l| l == "* ENABLED QRESYNC"), "{r:?}");
        let r = c.cmd("c SELECT INBOX").await;
        let line = |r: &[String], prefix: &str| {
            r.iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix} in {r:?}"))
                .clone()
        };
        // QRESYNC implies CONDSTORE (§3.2.3).
        let h0 = number_after(&line(&r, "* OK [HIGHESTMODSEQ "), "HIGHESTMODSEQ");
        let uidvalidity = number_after(&line(&r, "* OK [UIDVALIDITY "), "UIDVALIDITY");

        // Another session without QRESYNC changes one message and expunges two.
        let mut other = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        other.cmd("a SELECT INBOX").await;
        other.cmd("b STORE 2 +FLAGS (\\Seen)").await;
        other.cmd("c STORE 3:4 +FLAGS (\\Deleted)").await;
        let r = other.cmd("d EXPUNGE").await;
        assert_eq!(r[..2], ["* 4 EXPUNGE", "* 3 EXPUNGE"], "{r:?}");

        // §3.2.10: this session hears of it as VANISHED, never EXPUNGE.
        let r = c.cmd("d NOOP").await;
        assert!(r.iter().any(|l| l == "* VANISHED 3:4"), "{r:?}");
        assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.starts_with("* 2 FETCH (FLAGS (\\Seen \\Recent) UID 2 MODSEQ (")),
            "{r:?}"
        );

        // §3.2.5.1: a client that last saw h0 resyncs in the SELECT itself.
        let mut d = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        d.cmd("a ENABLE QRESYNC").await;
        let r = d
            .cmd(&format!("b SELECT INBOX (QRESYNC ({uidvalidity} {h0}))"))
            .await;
        let vanished = r.iter().position(|l| l == "* VANISHED (EARLIER) 3:4");
        let fetch = r
            .iter()
            .position(|l| l.starts_with("* 2 FETCH (FLAGS (\\Seen) UID 2 MODSEQ ("));
        assert!(vanished.is_some() && fetch.is_some(), "{r:?}");
        assert!(vanished < fetch, "VANISHED before FETCH: {r:?}");
        assert_eq!(
            r.iter().filter(|l| l.contains(" FETCH ")).count(),
            1,
            "only the changed message: {r:?}"
        );
        assert!(tagged(&r, "b").starts_with("b OK [READ-WRITE]"), "{r:?}");
        // Known UIDs narrow it; another UIDVALIDITY gets a plain SELECT.
        let r = d
            .cmd(&format!(
                "c SELECT INBOX (QRESYNC ({uidvalidity} {h0} 1:2))"
            ))
            .await;
        assert!(r.iter().any(|l| l.starts_with("* OK [CLOSED]")), "{r:?}");
        assert!(!r.iter().any(|l| l.contains("VANISHED")), "{r:?}");
        assert!(r.iter().any(|l| l.starts_with("* 2 FETCH")), "{r:?}");
        let r = d
            .cmd(&format!(
                "d EXAMINE INBOX (QRESYNC ({} {h0}))",
                uidvalidity + 1
            ))
            .await;
        assert!(
            !r.iter()
                .any(|l| l.contains("VANISHED") || l.contains(" FETCH ")),
            "{r:?}"
        );
        d.cmd("e SELECT INBOX").await;

        // §3.2.6: UID FETCH (CHANGEDSINCE m VANISHED).
        let r = d
            .cmd(&format!(
                "f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)"
            ))
            .await;
        assert_eq!(r[0], "* VANISHED (EARLIER) 3:4", "{r:?}");
        assert!(r[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Seen)"), "{r:?}");
        assert_eq!(r.len(), 3, "{r:?}");
        let r = d
            .cmd(&format!(
                "g UID FETCH 4:5 (FLAGS) (CHANGEDSINCE {h0} VANISHED)"
            ))
            .await;
        assert_eq!(r[0], "* VANISHED (EARLIER) 4", "{r:?}");
        let r = d
            .cmd(&format!("h FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)"))
            .await;
        assert!(tagged(&r, "h").starts_with("h BAD"), "not UID FETCH: {r:?}");
        let r = d.cmd("i UID FETCH 1:* (FLAGS) (VANISHED)").await;
        assert!(
            tagged(&r, "i").starts_with("i BAD"),
            "no CHANGEDSINCE: {r:?}"
        );

        // This session's own EXPUNGE and MOVE answer VANISHED too.
        d.cmd("j STORE 1 +FLAGS (\\Deleted)").await;
        let r = d.cmd("k EXPUNGE").await;
        assert_eq!(r[0], "* VANISHED 1", "{r:?}");
        let r = d.cmd("l UID MOVE 2 Trash").await;
        assert!(r.iter().any(|l| l == "* VANISHED 2"), "{r:?}");
        assert!(!r.iter().any(|l| l.contains("EXPUNGE")), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_goes_to_the_first_imap4rev1_session_across_replicas() {
    each_backend(test_limits(), |mut env| async move {
        let second = env.add_server(test_limits()).await;
        let port_b = env.servers[second].port;
        for i in 0..2 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("r{i}"), "b")).await;
        }
        let has = |r: &[String], line: &str| r.iter().any(|l| l == line);
        let fetch_recent = |r: &[String], seq: u32| {
            r.iter()
                .find(|l| l.starts_with(&format!("* {seq} FETCH")))
                .unwrap_or_else(|| panic!("FETCH {seq} in {r:?}"))
                .contains("\\Recent")
        };
        // RFC 3501 §2.3.2: the first session to SELECT sees both as \Recent.
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = a.cmd("a SELECT INBOX").await;
        assert!(has(&r, "* 2 RECENT"), "{r:?}");
        let r = a.cmd("b FETCH 1:* (FLAGS)").await;
        assert!(fetch_recent(&r, 1) && fetch_recent(&r, 2), "{r:?}");
        assert_eq!(a.cmd("c SEARCH RECENT").await[0], "* SEARCH 1 2");
        a.cmd("d STORE 1 +FLAGS.SILENT (\\Seen)").await;
        assert_eq!(a.cmd("e SEARCH NEW").await[0], "* SEARCH 2");
        assert_eq!(a.cmd("f SEARCH OLD").await[0], "* SEARCH");

        // Another replica's session comes second: nothing is recent to it.
        let mut b = Raw::login(port_b, ALICE, ALICE_PASSWORD).await;
        let r = b.cmd("a STATUS INBOX (RECENT)").await;
        assert_eq!(r[0], "* STATUS INBOX (RECENT 0)", "{r:?}");
        let r = b.cmd("b SELECT INBOX").await;
        assert!(has(&r, "* 0 RECENT"), "{r:?}");
        let r = b.cmd("c FETCH 1:* (FLAGS)").await;
        assert!(!fetch_recent(&r, 1) && !fetch_recent(&r, 2), "{r:?}");

        // New mail: whoever hears of it first gets it as \Recent, with EXISTS then RECENT.
        deliver(env.store(), ALICE, "INBOX", message("r2", "b")).await;
        let mut r = Vec::new();
        for _ in 0..50 {
            r = b.cmd("d NOOP").await;
            if has(&r, "* 3 EXISTS") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let exists = r.iter().position(|l| l == "* 3 EXISTS");
        let recent = r.iter().position(|l| l == "* 1 RECENT");
        assert!(exists.is_some() && exists < recent, "{r:?}");
        let r = a.cmd("g NOOP").await;
        assert!(has(&r, "* 3 EXISTS") && has(&r, "* 2 RECENT"), "{r:?}");
        let r = a.cmd("h FETCH 3 (FLAGS)").await;
        assert!(!fetch_recent(&r, 3), "{r:?}");
        let r = b.cmd("e FETCH 3 (FLAGS)").await;
        assert!(fetch_recent(&r, 3), "{r:?}");

        // EXAMINE sees what nobody claimed, and claims nothing (§6.3.2).
        deliver(env.store(), ALICE, "INBOX", message("r3", "b")).await;
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("a EXAMINE INBOX").await;
        assert!(has(&r, "* 1 RECENT"), "{r:?}");
        let r = c.cmd("b FETCH 4 (FLAGS)").await;
        assert!(fetch_recent(&r, 4), "{r:?}");
        let mut d = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = d.cmd("a STATUS INBOX (RECENT)").await;
        assert_eq!(r[0], "* STATUS INBOX (RECENT 1)", "{r:?}");

        // IMAP4rev2 sessions neither see \Recent nor take it from anyone.
        let mut e = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        e.cmd("a ENABLE IMAP4rev2").await;
        let r = e.cmd("b SELECT INBOX").await;
        assert!(!r.iter().any(|l| l.contains("RECENT")), "{r:?}");
        let r = e.cmd("c FETCH 1:* (FLAGS)").await;
        assert!(!r.iter().any(|l| l.contains("\\Recent")), "{r:?}");
        let r = d.cmd("b STATUS INBOX (RECENT)").await;
        assert_eq!(r[0], "* STATUS INBOX (RECENT 1)", "{r:?}");

        // COPY and APPEND targets: new there, recent to the next session to select it.
        a.cmd("i COPY 1:2 Archive").await;
        let r = d.cmd("c STATUS Archive (RECENT MESSAGES)").await;
        assert_eq!(r[0], "* STATUS Archive (RECENT 2 MESSAGES 2)", "{r:?}");
        let r = d.cmd("d SELECT Archive").await;
        assert!(has(&r, "* 2 RECENT"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_literal_longer_than_a_line_is_not_a_line_too_long() {
    each_backend(test_limits(), |env| async move {
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let mut msg = b"Subject: big\r\n\r\n".to_vec();
        while msg.len() < 3 * test_limits().max_line_length {
            msg.extend_from_slice(b"a line of a message bigger than the longest command line\r\n");
        }
        c.send(format!("a APPEND INBOX {{{}+}}\r\n", msg.len()).as_bytes())
            .await;
        c.send(&msg).await;
        // The CRLF that ends the command comes in a later read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("a").await;
        assert!(tagged(&r, "a").starts_with("a OK"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiappend_appends_all_or_nothing() {
    each_backend(test_limits(), |env| async move {
        env.store()
            .put_mailbox(&postbay_store::directory::MailboxSpec {
                address: BOB.into(),
                password_hash: format!("{{PLAIN}}{BOB_PASSWORD}"),
                quota_bytes: 4096,
                enabled: true,
                owner: None,
            })
            .await
            .unwrap();
        let mut c = Raw::login(env.port(), BOB, BOB_PASSWORD).await;
        let caps = c.cmd("a CAPABILITY").await;
        assert!(caps[0].contains(" MULTIAPPEND"), "{caps:?}");
        let msg = |subject: &str, pad: usize| {
            format!("Subject: {subject}\r\n\r\n{}\r\n", "z".repeat(pad)).into_bytes()
        };
        // RFC 3502 §6.3.11: one command, three messages (a synchronising literal among
        // them), each with its own flags and date; UIDs in order, APPENDUID as a set.
        let (one, two, three) = (msg("one", 10), msg("two", 10), msg("three", 10));
        c.send(format!("b APPEND INBOX (\\Seen) {{{}+}}\r\n", one.len()).as_bytes())
            .await;
        c.send(&one).await;
        c.send(format!(" \"01-Feb-2026 10:00:00 +0000\" {{{}}}\r\n", two.len()).as_bytes())
            .await;
        assert!(
            c.line().await.starts_with("+ "),
            "continuation for the literal"
        );
        c.send(&two).await;
        c.send(format!(" (\\Flagged $Work) {{{}+}}\r\n", three.len()).as_bytes())
            .await;
        c.send(&three).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("b").await;
        let ok = tagged(&r, "b");
        assert!(
            ok.starts_with("b OK [APPENDUID ") && ok.contains(" 1:3]"),
            "{r:?}"
        );
        c.cmd("c SELECT INBOX").await;
        let r = c
            .cmd("d FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            .await;
        let all = r.join("\n");
        assert!(all.contains("* 1 FETCH (FLAGS (\\Seen"), "{r:?}");
        assert!(all.contains("01-Feb-2026 10:00:00 +0000"), "{r:?}");
        assert!(all.contains("$Work") && all.contains("\\Flagged"), "{r:?}");
        let order: Vec<usize> = ["Subject: one", "Subject: two", "Subject: three"]
            .iter()
            .map(|s| all.find(s).unwrap_or_else(|| panic!("{s} in {r:?}")))
            .collect();
        assert!(order[0] < order[1] && order[1] < order[2], "{r:?}");

        // Each fits the quota, together they do not: none goes in.
        let (a, b) = (msg("a", 2500), msg("b", 2500));
        c.send(format!("e APPEND INBOX {{{}+}}\r\n", a.len()).as_bytes())
            .await;
        c.send(&a).await;
        c.send(format!(" {{{}+}}\r\n", b.len()).as_bytes()).await;
        c.send(&b).await;
        c.send(b"\r\n").await;
        let r = c.until_tag("e").await;
        assert!(tagged(&r, "e").starts_with("e NO [OVERQUOTA]"), "{r:?}");
        assert_eq!(env.store().count_messages(BOB, "INBOX").await.unwrap(), 3);
        let r = c.cmd("f NOOP").await;
        assert!(!r.iter().any(|l| l.contains("EXISTS")), "{r:?}");
        // A bad message refuses the whole command before anything is stored.
        c.send(b"g APPEND INBOX {5+}\r\nhello {0+}\r\n\r\n").await;
        let r = c.until_tag("g").await;
        assert!(tagged(&r, "g").starts_with("g NO"), "{r:?}");
        assert_eq!(env.store().count_messages(BOB, "INBOX").await.unwrap(), 3);
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catenate_builds_a_message_from_text_and_urls() {
    each_backend(test_limits(), |env| async move {
        let original = b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
first part\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsecond part\r\n--XX--\r\n";
        deliver(env.store(), ALICE, "INBOX", original.to_vec()).await;
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let caps = c.cmd("a CAPABILITY").await;
        assert!(caps[0].contains(" CATENATE"), "{caps:?}");
        let r = c.cmd("b EXAMINE INBOX").await;
        let uidvalidity = number_after(
            r.iter().find(|l| l.contains("[UIDVALIDITY ")).unwrap(),
            "UIDVALIDITY",
        );
        let fetch_drafts = async |c: &mut Raw, tag: &str| {
            c.cmd(&format!("{tag}1 EXAMINE Drafts")).await;
            let r = c.cmd(&format!("{tag}2 FETCH * BODY.PEEK[]")).await;
            c.cmd(&format!("{tag}3 EXAMINE INBOX")).await;
            // Raw gives lines without their CRLF, literals included.
            r.join("\n").replace('\r', "")
        };
        // RFC 4469 §5: an absolute URL's header, then new text.
        let text = b"new text\r\n";
        c.send(
            format!(
                "c APPEND Drafts (\\Draft) CATENATE (URL \"/INBOX;UIDVALIDITY={uidvalidity}/;UID=1/;SECTION=HEADER\" TEXT {{{}+}}\r\n",
                text.len()
            )
            .as_bytes(),
        )
        .await;
        c.send(text).await;
        c.send(b")\r\n").await;
        let r = c.until_tag("c").await;
        assert!(tagged(&r, "c").starts_with("c OK [APPENDUID "), "{r:?}");
        let body = fetch_drafts(&mut c, "d").await;
        assert!(
            body.contains("Subject: parts\nMIME-Version: 1.0\n")
                && body.contains("boundary=\"XX\"\n\nnew text\n)"),
            "{body}"
        );
        // A relative URL (to the selected INBOX) of a part, with PARTIAL, after text.
        let head = b"Subject: fwd\r\n\r\n";
        c.send(
            format!("e APPEND Drafts CATENATE (TEXT {{{}+}}\r\n", head.len()).as_bytes(),
        )
        .await;
        c.send(head).await;
        c.send(b" URL \";UID=1/;SECTION=2/;PARTIAL=0.6\")\r\n").await;
        let r = c.until_tag("e").await;
        assert!(tagged(&r, "e").starts_with("e OK"), "{r:?}");
        let body = fetch_drafts(&mut c, "f").await;
        assert!(body.contains("Subject: fwd\n\nsecond)"), "{body}");

        // MULTIAPPEND with a CATENATE message: both, in one transaction.
        c.send(b"g APPEND Drafts {5+}\r\nhello CATENATE (URL \"/INBOX/;UID=1/;SECTION=1\")\r\n")
            .await;
        let r = c.until_tag("g").await;
        assert!(tagged(&r, "g").starts_with("g OK [APPENDUID "), "{r:?}");
        let drafts = env.store().count_messages(ALICE, "Drafts").await.unwrap();
        assert_eq!(drafts, 4);

        // URLs it cannot use: NO [BADURL], nothing stored.
        for (tag, url) in [
            ("h", "/INBOX/;UID=99".to_string()),
            ("i", format!("/INBOX;UIDVALIDITY={}/;UID=1", uidvalidity + 1)),
            ("j", "/NoSuchFolder/;UID=1".into()),
            ("k", "/INBOX/;UID=1;URLAUTH=anonymous:internal:00".into()),
            ("l", "/INBOX/;UID=1/;SECTION=9.9".into()),
        ] {
            let r = c
                .cmd(&format!("{tag} APPEND Drafts CATENATE (URL \"{url}\")"))
                .await;
            assert!(
                tagged(&r, tag).starts_with(&format!("{tag} NO [BADURL]")),
                "{url}: {r:?}"
            );
        }
        assert_eq!(env.store().count_messages(ALICE, "Drafts").await.unwrap(), drafts);
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_their_own_list() {
    each_backend(test_limits(), |env| async move {
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let lines = |r: &[String], prefix: &str| -> Vec<String> {
            r.iter().filter(|l| l.starts_with(prefix)).cloned().collect()
        };
        // (command, lines it must answer, lines it must not): RFC 3501 §6.3.6-9, RFC 9051
        // §6.3.7-9, RFC 5258 §3.
        let table: &[(&str, &[&str], &[&str])] = &[
            // A new mailbox's special-use folders start subscribed.
            (
                "LIST (SUBSCRIBED) \"\" \"*\"",
                &[
                    "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX",
                    "* LIST (\\HasNoChildren \\Subscribed \\Sent) \"/\" Sent",
                    "* LIST (\\HasNoChildren \\Subscribed \\Junk) \"/\" Junk",
                ],
                &[],
            ),
            // CREATE does not subscribe.
            ("CREATE Projects/2026", &[], &[]),
            ("LSUB \"\" \"Projects*\"", &[], &["* LSUB"]),
            (
                "LIST \"\" \"Projects*\" RETURN (SUBSCRIBED)",
                &["* LIST (\\HasNoChildren) \"/\" Projects/2026"],
                &["\\Subscribed"],
            ),
            // A name that does not exist may be subscribed; plain LIST does not show it.
            ("SUBSCRIBE Ghost", &[], &[]),
            (
                "LIST (SUBSCRIBED) \"\" Ghost",
                &["* LIST (\\Noselect \\NonExistent \\HasNoChildren \\Subscribed) \"/\" Ghost"],
                &[],
            ),
            ("LIST \"\" Ghost", &[], &["* LIST"]),
            ("LSUB \"\" Ghost", &["* LSUB () \"/\" Ghost"], &[]),
            // LSUB with % reports an unsubscribed parent of a subscribed child as \Noselect;
            // with * the child itself, and not the parent.
            ("SUBSCRIBE Projects/2026", &[], &[]),
            (
                "LSUB \"\" %",
                &["* LSUB (\\Noselect) \"/\" Projects", "* LSUB () \"/\" INBOX"],
                &["Projects/2026"],
            ),
            (
                "LSUB \"\" \"*\"",
                &["* LSUB () \"/\" Projects/2026"],
                &["* LSUB (\\Noselect) \"/\" Projects"],
            ),
            // LIST (SUBSCRIBED) lists exactly the subscribed names; RECURSIVEMATCH adds
            // their parents with CHILDINFO.
            ("LIST (SUBSCRIBED) \"\" %", &[], &[" Projects"]),
            (
                "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" %",
                &["* LIST (\\HasChildren) \"/\" Projects (\"CHILDINFO\" (\"SUBSCRIBED\"))"],
                &["Projects/2026"],
            ),
            // DELETE keeps the subscription.
            ("DELETE Projects/2026", &[], &[]),
            (
                "LIST (SUBSCRIBED) \"\" Projects/2026",
                &["* LIST (\\Noselect \\NonExistent \\HasNoChildren \\Subscribed) \"/\" Projects/2026"],
                &[],
            ),
            // RENAME moves the subscriptions of the names it moves.
            ("CREATE Old/a", &[], &[]),
            ("SUBSCRIBE Old/a", &[], &[]),
            ("RENAME Old New", &[], &[]),
            ("LSUB \"\" \"*\"", &["* LSUB () \"/\" New/a"], &["Old/a"]),
            // UNSUBSCRIBE twice is not an error.
            ("UNSUBSCRIBE Ghost", &[], &[]),
            ("UNSUBSCRIBE Ghost", &[], &[]),
            ("LSUB \"\" Ghost", &[], &["* LSUB"]),
        ];
        for (i, (command, want, not)) in table.iter().enumerate() {
            let tag = format!("s{i}");
            let r = c.cmd(&format!("{tag} {command}")).await;
            assert!(
                tagged(&r, &tag).starts_with(&format!("{tag} OK")),
                "{command}: {r:?}"
            );
            let reported = lines(&r, "* ");
            for w in *want {
                assert!(reported.iter().any(|l| l == w), "{command}: want {w} in {r:?}");
            }
            for n in *not {
                assert!(!reported.iter().any(|l| l.contains(n)), "{command}: {n} in {r:?}");
            }
        }
        // RFC 5258 §3: RECURSIVEMATCH alone is a syntax error.
        let r = c.cmd("z LIST (RECURSIVEMATCH) \"\" %").await;
        assert!(tagged(&r, "z").starts_with("z BAD"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keywords_are_announced_before_the_fetch_that_carries_them() {
    each_backend(test_limits(), |env| async move {
        deliver(env.store(), ALICE, "INBOX", message("k", "b")).await;
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = c.cmd("a SELECT INBOX").await;
        let flags = r.iter().find(|l| l.starts_with("* FLAGS ")).unwrap();
        assert!(!flags.contains("$Work"), "{flags}");
        let mut other = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        other.cmd("a SELECT INBOX").await;

        // RFC 3501 §7.2.6: FLAGS and PERMANENTFLAGS with the new keyword come first.
        let r = c.cmd("b STORE 1 +FLAGS ($Work)").await;
        let at = |prefix: &str| r.iter().position(|l| l.starts_with(prefix));
        let (flags, permanent, fetch) = (
            at("* FLAGS ("),
            at("* OK [PERMANENTFLAGS ("),
            at("* 1 FETCH"),
        );
        assert!(
            flags.is_some() && permanent.is_some() && fetch.is_some(),
            "{r:?}"
        );
        assert!(
            flags < fetch && permanent < fetch,
            "announced before the FETCH: {r:?}"
        );
        assert!(
            r[flags.unwrap()].contains("$Work") && r[flags.unwrap()].contains("\\Seen"),
            "{r:?}"
        );
        assert!(
            r[permanent.unwrap()].contains("$Work") && r[permanent.unwrap()].contains("\\*"),
            "{r:?}"
        );
        // Once known, not again.
        let r = c.cmd("c STORE 1 -FLAGS ($Work)").await;
        assert!(!r.iter().any(|l| l.starts_with("* FLAGS")), "{r:?}");

        // The other session hears of it with the change, before the FETCH.
        c.cmd("d STORE 1 +FLAGS (Project-X)").await;
        let r = other.cmd("b NOOP").await;
        let flags = r
            .iter()
            .position(|l| l.starts_with("* FLAGS ("))
            .expect("FLAGS in the other session");
        let fetch = r
            .iter()
            .position(|l| l.starts_with("* 1 FETCH"))
            .expect("the change");
        assert!(flags < fetch && r[flags].contains("Project-X"), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_is_refused_without_tls_by_default() {
    each_backend(ImapLimits::default(), |env| async move {
        let (mut c, greeting) = Raw::connect(env.port()).await;
        assert!(
            greeting.contains("LOGINDISABLED") && greeting.contains("STARTTLS"),
            "{greeting}"
        );
        assert!(!greeting.contains("AUTH=PLAIN"), "{greeting}");
        let r = c.cmd("a LOGIN alice@example.test secret").await;
        assert!(r[0].starts_with("a NO [PRIVACYREQUIRED]"), "{r:?}");
        let r = c
            .cmd("b AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=")
            .await;
        assert!(
            tagged(&r, "b").starts_with("b NO [PRIVACYREQUIRED]"),
            "{r:?}"
        );
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap4rev2_list_extended_status_special_use_esearch() {
    each_backend(test_limits(), |env| async move {
        for i in 0..3 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("m{i}"), "b")).await;
        }
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        // IMAP4rev1 names are modified UTF-7.
        c.cmd("a CREATE Entw&APw-rfe/Alt").await;
        let r = c.cmd("b LIST \"\" Entw*").await;
        assert!(
            r.iter()
                .any(|l| l == "* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe/Alt"),
            "{r:?}"
        );
        let r = c.cmd("c LIST (SPECIAL-USE) \"\" \"*\"").await;
        let names: Vec<&String> = r.iter().filter(|l| l.starts_with("* LIST")).collect();
        assert_eq!(names.len(), 5, "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.contains("\\Sent") && l.ends_with(" Sent")),
            "{r:?}"
        );
        let r = c
            .cmd("d LIST \"\" (INBOX Trash) RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN))")
            .await;
        assert_eq!(
            r[0], "* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX",
            "{r:?}"
        );
        assert_eq!(r[1], "* STATUS INBOX (MESSAGES 3 UNSEEN 3)", "{r:?}");
        assert!(r[2].ends_with("Trash"), "{r:?}");
        c.cmd("e UNSUBSCRIBE Junk").await;
        let r = c.cmd("f LIST (SUBSCRIBED) \"\" \"*\"").await;
        assert!(!r.iter().any(|l| l.ends_with(" Junk")), "{r:?}");
        let r = c.cmd("g LSUB \"\" \"*\"").await;
        assert!(
            r.iter()
                .any(|l| l.starts_with("* LSUB") && l.ends_with(" Sent")),
            "{r:?}"
        );
        let r = c.cmd("h LIST \"\" \"\"").await;
        assert_eq!(r[0], "* LIST (\\Noselect) \"/\" \"\"");

        // IMAP4rev2: UTF-8 names, ESEARCH, no RECENT.
        let r = c.cmd("i ENABLE IMAP4rev2").await;
        assert_eq!(r[0], "* ENABLED IMAP4rev2");
        let r = c.cmd("j LIST \"\" Entw*").await;
        assert!(r.iter().any(|l| l.contains("Entwürfe/Alt")), "{r:?}");
        let r = c.cmd("k SELECT INBOX").await;
        assert!(!r.iter().any(|l| l.contains("RECENT")), "{r:?}");
        assert!(
            r.iter().any(|l| l.starts_with("* LIST () \"/\" INBOX")),
            "{r:?}"
        );
        let r = c.cmd("l SEARCH ALL").await;
        assert_eq!(r[0], "* ESEARCH (TAG \"l\") ALL 1:3");
        let r = c.cmd("m UID SEARCH RETURN (COUNT) DELETED").await;
        assert_eq!(r[0], "* ESEARCH (TAG \"m\") UID COUNT 0");
        let r = c.cmd("n NAMESPACE").await;
        assert_eq!(r[0], "* NAMESPACE ((\"\" \"/\")) NIL NIL");
        let r = c.cmd("o ID NIL").await;
        assert!(r[0].starts_with("* ID (\"name\" \"Postbay\""), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_bodystructure_and_sections() {
    each_backend(test_limits(), |env| async move {
        let msg = b"From: a@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
hello\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAw==\r\n--XX--\r\n";
        deliver(env.store(), ALICE, "INBOX", msg.to_vec()).await;
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        c.cmd("a EXAMINE INBOX").await;
        let r = c.cmd("b FETCH 1 BODYSTRUCTURE").await;
        assert!(r[0].contains("(\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 1"), "{r:?}");
        assert!(r[0].contains("\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8"), "{r:?}");
        assert!(r[0].contains("(\"attachment\" (\"filename\" \"a.bin\"))"), "{r:?}");
        assert!(r[0].contains(" \"mixed\" (\"boundary\" \"XX\")"), "{r:?}");
        let r = c.cmd("c FETCH 1 (BODY[1] BODY[2.MIME])").await;
        assert!(r.iter().any(|l| l.starts_with("hello BODY[2.MIME] {")), "{r:?}");
        let r = c.cmd("d FETCH 1 (BINARY[2] BINARY.SIZE[2])").await;
        assert!(r[0].contains("BINARY[2] ~{4}"), "{r:?}");
        assert!(r.iter().any(|l| l.contains("BINARY.SIZE[2] 4")), "{r:?}");
        // RFC 3516 §4.3: a partial fetch answers with its origin, as BODY[]<origin> does.
        let r = c
            .cmd("d2 FETCH 1 (BINARY.PEEK[2]<1.2> BINARY.PEEK[1]<0.3> BINARY.PEEK[2]<0.2>)")
            .await;
        let all = r.join("\n");
        assert!(all.contains("BINARY[2]<1> {2}"), "{r:?}");
        assert!(all.contains("BINARY[1]<0> {3}"), "{r:?}");
        assert!(all.contains("BINARY[2]<0> ~{2}"), "NUL needs literal8: {r:?}");
        assert!(!all.contains("BINARY[2] "), "no answer without its origin: {r:?}");
        let r = c.cmd("e FETCH 1 BODY[]").await;
        assert!(!r.iter().any(|l| l.contains("\\Seen")), "EXAMINE never sets \\Seen: {r:?}");
        let r = c.cmd("f FETCH 1 (BODY.PEEK[3])").await;
        assert!(r[0].contains("BODY[3] {0}") || r[0].contains("BODY[3] \"\""), "{r:?}");
        env
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searchres_saves_and_reuses_results() {
    each_backend(test_limits(), |env| async move {
        for i in 0..4 {
            deliver(env.store(), ALICE, "INBOX", message(&format!("m{i}"), "b")).await;
        }
        let mut c = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        c.cmd("a SELECT INBOX").await;
        c.cmd("b STORE 2:3 +FLAGS (\\Flagged)").await;
        let r = c.cmd("c SEARCH RETURN (SAVE) FLAGGED").await;
        assert_eq!(r, vec!["c OK SEARCH completed".to_string()]);
        let r = c.cmd("d FETCH $ (UID)").await;
        assert_eq!(
            r[..2],
            [
                "* 2 FETCH (UID 2)".to_string(),
                "* 3 FETCH (UID 3)".to_string()
            ]
        );
        let r = c.cmd("e UID SEARCH RETURN (SAVE MIN) NOT $").await;
        assert_eq!(r[0], "* ESEARCH (TAG \"e\") UID MIN 1");
        let r = c.cmd("f UID FETCH $ (FLAGS)").await;
        assert_eq!(r.len(), 3, "UIDs 1 and 4: {r:?}");
        c.cmd("g SEARCH RETURN (SAVE) DELETED").await;
        let r = c.cmd("h FETCH $ (UID)").await;
        assert_eq!(r, vec!["h OK No messages".to_string()]);
        let r = c.cmd("i SEARCH $").await;
        assert_eq!(r[0], "* SEARCH");
        env
    })
    .await;
}

/// The selected folder's own changes are announced without reading the store, others' by
/// reading it; interleaved, every EXISTS, EXPUNGE and FETCH must still be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_and_foreign_changes_interleaved_are_announced_exactly() {
    each_backend(test_limits(), |env| async move {
        let mut a = Raw::login(env.port(), "alice@example.test", "secret").await;
        let mut b = Raw::login(env.port(), "alice@example.test", "secret").await;
        a.cmd("a1 SELECT INBOX").await;
        b.cmd("b1 SELECT INBOX").await;
        let append = |tag: &str, subject: &str| {
            let msg = message(subject, "x");
            let mut bytes = format!("{tag} APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
            bytes.extend_from_slice(&msg);
            bytes.extend_from_slice(b"\r\n");
            bytes
        };
        // Own append: announced with the APPEND itself.
        a.send(&append("a2", "one")).await;
        let r = a.until_tag("a2").await;
        assert!(r.contains(&"* 1 EXISTS".to_string()), "{r:?}");
        // Another session appends, then this one: both arrive, in order, once.
        b.send(&append("b2", "two")).await;
        b.until_tag("b2").await;
        a.send(&append("a3", "three")).await;
        let r = a.until_tag("a3").await;
        let exists: Vec<&String> = r.iter().filter(|l| l.ends_with(" EXISTS")).collect();
        assert_eq!(
            exists.last().map(|s| s.as_str()),
            Some("* 3 EXISTS"),
            "{r:?}"
        );
        let r = a.cmd("a4 UID FETCH 1:* (UID)").await;
        let uids: Vec<&String> = r.iter().filter(|l| l.contains("FETCH (UID")).collect();
        assert_eq!(uids.len(), 3, "{r:?}");
        // The other session flags message 2; this one expunges message 1 itself.
        b.cmd("b3 NOOP").await;
        b.cmd("b4 STORE 2 +FLAGS (\\Flagged)").await;
        let r = a.cmd("a5 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        assert!(
            r.iter()
                .any(|l| l.starts_with("* 2 FETCH (FLAGS (\\Flagged)")),
            "{r:?}"
        );
        let r = a.cmd("a6 EXPUNGE").await;
        assert_eq!(r[0], "* 1 EXPUNGE", "{r:?}");
        assert!(tagged(&r, "a6").starts_with("a6 OK"), "{r:?}");
        let r = a.cmd("a7 NOOP").await;
        assert_eq!(r.len(), 1, "nothing left to announce: {r:?}");
        let r = b.cmd("b5 NOOP").await;
        assert_eq!(r[0], "* 1 EXPUNGE", "{r:?}");
        env
    })
    .await;
}

/// SEARCH, FETCH FLAGS and EXPUNGE answer from the session's view of the folder, which
/// must first take in what another session just changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_answers_include_another_sessions_latest_changes() {
    each_backend(test_limits(), |env| async move {
        for subject in ["one", "two", "three"] {
            deliver(
                env.store(),
                "alice@example.test",
                "INBOX",
                message(subject, "x"),
            )
            .await;
        }
        let mut a = Raw::login(env.port(), "alice@example.test", "secret").await;
        let mut b = Raw::login(env.port(), "alice@example.test", "secret").await;
        a.cmd("a1 SELECT INBOX").await;
        b.cmd("b1 SELECT INBOX").await;
        b.cmd("b2 STORE 1 +FLAGS (\\Seen \\Deleted)").await;
        // No NOOP in between: the SEARCH itself must see b's change.
        let r = a.cmd("a2 SEARCH UNSEEN").await;
        assert!(r.contains(&"* SEARCH 2 3".to_string()), "{r:?}");
        assert!(
            r.iter()
                .any(|l| l.starts_with("* 1 FETCH (FLAGS (\\Seen \\Deleted \\Recent)")),
            "the change is announced too: {r:?}"
        );
        let r = a.cmd("a3 FETCH 1:* (FLAGS)").await;
        assert!(
            r.iter()
                .any(|l| l == "* 1 FETCH (FLAGS (\\Seen \\Deleted \\Recent))"),
            "{r:?}"
        );
        assert!(
            r.iter().any(|l| l == "* 3 FETCH (FLAGS (\\Recent))"),
            "{r:?}"
        );
        // b flags message 3 and takes \Deleted off message 1 again: a's EXPUNGE goes by
        // the flags as they are now, not as a last saw them.
        b.cmd("b3 STORE 3 +FLAGS.SILENT (\\Deleted)").await;
        b.cmd("b4 STORE 1 -FLAGS.SILENT (\\Deleted)").await;
        let r = a.cmd("a4 EXPUNGE").await;
        let expunged: Vec<&String> = r.iter().filter(|l| l.ends_with(" EXPUNGE")).collect();
        assert_eq!(expunged, vec!["* 3 EXPUNGE"], "{r:?}");
        let r = a.cmd("a5 UID SEARCH DELETED").await;
        assert!(r.contains(&"* SEARCH".to_string()), "{r:?}");
        let r = b.cmd("b5 NOOP").await;
        assert!(r.contains(&"* 3 EXPUNGE".to_string()), "{r:?}");
        env
    })
    .await;
}

/// ENVELOPE, header sections and header SEARCH keys come from the header cache; without it
/// (messages stored before it, or with huge headers) from the blob, with the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fetches_are_the_same_from_cache_and_from_the_blob() {
    each_backend(test_limits(), |env| async move {
        let message = b"From: \"Ann Example\" <ann@example.test>\r\nTo: bob@example.test, \
carl@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?= menu\r\nMessage-ID: <m1@example.test>\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody line\r\n"
            .to_vec();
        deliver(env.store(), "alice@example.test", "INBOX", message).await;
        let mut c = Raw::login(env.port(), "alice@example.test", "secret").await;
        c.cmd("a SELECT INBOX").await;
        let fetch = "FETCH 1 (ENVELOPE RFC822.HEADER BODY.PEEK[HEADER.FIELDS (SUBJECT)])";
        let cached = c.cmd(&format!("b {fetch}")).await;
        assert!(tagged(&cached, "b").starts_with("b OK"), "{cached:?}");
        let r = c.cmd("b2 SEARCH FROM ann SUBJECT menu").await;
        assert!(r.contains(&"* SEARCH 1".to_string()), "{r:?}");
        assert!(
            cached
                .iter()
                .any(|l| l.contains("\"Ann Example\" NIL \"ann\" \"example.test\"")),
            "{cached:?}"
        );
        // COPY takes the cached header along.
        c.cmd("c COPY 1 INBOX").await;
        let with_header: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE header IS NOT NULL AND uid IN (1, 2)",
        )
        .fetch_one(env.store().pool())
        .await
        .expect("count cached headers");
        assert_eq!(with_header, 2);
        sqlx::query("UPDATE messages SET header = NULL")
            .execute(env.store().pool())
            .await
            .expect("clear the header cache");
        let from_blob = c.cmd(&format!("d {fetch}")).await;
        let body = |lines: &[String]| lines[..lines.len() - 1].to_vec();
        assert_eq!(body(&cached), body(&from_blob));
        let r = c.cmd("d2 SEARCH FROM ann SUBJECT menu").await;
        assert!(r.contains(&"* SEARCH 1 2".to_string()), "{r:?}");
        // Mixed: message 2 read from its blob, a cached one from the cache, in one FETCH.
        c.cmd("e COPY 1 INBOX").await;
        sqlx::query("UPDATE messages SET header = NULL WHERE uid = 1")
            .execute(env.store().pool())
            .await
            .expect("clear one cached header");
        let mixed = c.cmd("f FETCH 1:3 (ENVELOPE)").await;
        let envelopes: Vec<&String> = mixed.iter().filter(|l| l.contains("ENVELOPE")).collect();
        assert_eq!(envelopes.len(), 3, "{mixed:?}");
        assert!(
            envelopes.iter().all(|l| l.contains("<m1@example.test>")),
            "{mixed:?}"
        );
        env
    })
    .await;
}

/// APPEND into the selected folder goes where the session knows the folder to be, but not
/// after someone renamed it: then the name decides, as for any other APPEND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_to_a_selected_folder_renamed_elsewhere_goes_by_name() {
    each_backend(test_limits(), |env| async move {
        let mut a = Raw::login(env.port(), "alice@example.test", "secret").await;
        let mut b = Raw::login(env.port(), "alice@example.test", "secret").await;
        a.cmd("a1 CREATE Work").await;
        a.cmd("a2 SELECT Work").await;
        let append = |tag: &str, folder: &str| {
            let msg = message("renamed", "x");
            let mut bytes = format!("{tag} APPEND {folder} {{{}+}}\r\n", msg.len()).into_bytes();
            bytes.extend_from_slice(&msg);
            bytes.extend_from_slice(b"\r\n");
            bytes
        };
        // Someone else renames the selected folder away: "Work" no longer exists.
        b.cmd("b1 RENAME Work Old").await;
        a.send(&append("a3", "Work")).await;
        let r = a.until_tag("a3").await;
        assert!(tagged(&r, "a3").starts_with("a3 NO [TRYCREATE]"), "{r:?}");
        // A new "Work" takes the name: the APPEND goes there, not into "Old".
        b.cmd("b2 CREATE Work").await;
        a.send(&append("a4", "Work")).await;
        let r = a.until_tag("a4").await;
        assert!(tagged(&r, "a4").starts_with("a4 OK"), "{r:?}");
        let r = b.cmd("b3 STATUS Work (MESSAGES UIDVALIDITY)").await;
        assert!(r[0].contains("MESSAGES 1"), "{r:?}");
        let r = b.cmd("b4 STATUS Old (MESSAGES)").await;
        assert!(r[0].contains("MESSAGES 0"), "{r:?}");
        // Renamed by this session: APPENDUID carries the folder's UIDVALIDITY under its new name.
        a.cmd("a5 SELECT Work").await;
        a.cmd("a6 RENAME Work Projects").await;
        a.send(&append("a7", "Projects")).await;
        let r = a.until_tag("a7").await;
        let status = b.cmd("b5 STATUS Projects (UIDVALIDITY MESSAGES)").await;
        let uidvalidity = status[0]
            .split("UIDVALIDITY ")
            .nth(1)
            .and_then(|v| v.split([' ', ')']).next())
            .unwrap_or_else(|| panic!("no UIDVALIDITY in {status:?}"))
            .to_string();
        assert!(
            tagged(&r, "a7").starts_with(&format!("a7 OK [APPENDUID {uidvalidity} ")),
            "{r:?} / {status:?}"
        );
        assert!(status[0].contains("MESSAGES 2"), "{status:?}");
        env
    })
    .await;
}

/// Who sends a row of [`CONTEXT_STEPS`]: the session with the live results, or another
/// session of the same user on the same server, which changes the folder.
#[derive(Clone, Copy)]
enum Who {
    A,
    B,
}

/// RFC 5267 §4 (CONTEXT=SEARCH, CONTEXT=SORT) as a transcript: a command, the untagged
/// lines the RFC requires of session A (exactly, in order; a line ending in `...` is a
/// prefix), and the tagged status. B's untagged lines are not checked. INBOX starts with
/// UIDs 1-4, subjects d, b, c, a, all unseen: SORT (SUBJECT) orders them 4 2 3 1.
const CONTEXT_STEPS: &[(Who, &str, &[&str], &str)] = &[
    (
        Who::A,
        "s0 ENABLE IMAP4rev2",
        &["* ENABLED IMAP4rev2"],
        "OK",
    ),
    (Who::A, "s0 SELECT INBOX", &[], "OK"),
    (Who::B, "b0 SELECT INBOX", &[], "OK"),
    // §4.1: both advertised once logged in.
    (
        Who::A,
        "c0 CAPABILITY",
        &["* CAPABILITY ...CONTEXT=SEARCH CONTEXT=SORT..."],
        "OK",
    ),
    // §4.3: UPDATE alone answers the whole result (ALL) and keeps it.
    (
        Who::A,
        "s1 UID SEARCH RETURN (UPDATE) UNSEEN",
        &["* ESEARCH (TAG \"s1\") UID ALL 1:4"],
        "OK",
    ),
    (
        Who::A,
        "s2 UID SORT RETURN (UPDATE COUNT) (SUBJECT) UTF-8 UNSEEN",
        &["* ESEARCH (TAG \"s2\") UID COUNT 4"],
        "OK",
    ),
    // §4.4: PARTIAL lists the matches at those positions, in sort order, echoing the range;
    // RFC 9394 §3.1: negative positions count from the end; none there: NIL.
    (
        Who::A,
        "p1 SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL",
        &["* ESEARCH (TAG \"p1\") PARTIAL (2:3 2:3)"],
        "OK",
    ),
    (
        Who::A,
        "p2 SORT RETURN (PARTIAL 1:1 COUNT) (REVERSE SUBJECT) UTF-8 ALL",
        &["* ESEARCH (TAG \"p2\") COUNT 4 PARTIAL (1:1 1)"],
        "OK",
    ),
    (
        Who::A,
        "p3 SEARCH RETURN (PARTIAL -1:-2) ALL",
        &["* ESEARCH (TAG \"p3\") PARTIAL (-1:-2 3:4)"],
        "OK",
    ),
    (
        Who::A,
        "p4 UID SEARCH RETURN (PARTIAL 5:9 CONTEXT) ALL",
        &["* ESEARCH (TAG \"p4\") UID PARTIAL (5:9 NIL)"],
        "OK",
    ),
    // New mail from another session: after EXISTS, the search says ADDTO at position 0
    // (§4.3.2 allows it for SEARCH), the sort at the place "aa" takes (2, after "a").
    (Who::B, "APPEND aa", &[], "OK"),
    (
        Who::A,
        "n1 NOOP",
        &[
            "* 5 EXISTS",
            "* ESEARCH (TAG \"s1\") UID ADDTO (0 5)",
            "* ESEARCH (TAG \"s2\") UID ADDTO (2 5)",
        ],
        "OK",
    ),
    // Another session's flag change takes a message out of both results: 2 ("b") is third
    // in sort order (a, aa, b, c, d).
    (Who::B, "b1 UID STORE 2 +FLAGS (\\Seen)", &[], "OK"),
    (
        Who::A,
        "n2 NOOP",
        &[
            "* 2 FETCH (FLAGS (\\Seen) UID 2)",
            "* ESEARCH (TAG \"s1\") UID REMOVEFROM (0 2)",
            "* ESEARCH (TAG \"s2\") UID REMOVEFROM (3 2)",
        ],
        "OK",
    ),
    // The session's own change counts too, answered before its tagged OK.
    (
        Who::A,
        "f1 UID STORE 2 -FLAGS (\\Seen)",
        &[
            "* 2 FETCH (FLAGS () UID 2)",
            "* ESEARCH (TAG \"s1\") UID ADDTO (0 2)",
            "* ESEARCH (TAG \"s2\") UID ADDTO (3 2)",
        ],
        "OK",
    ),
    // A flag change that does not change the match: no update.
    (
        Who::B,
        "b2 UID STORE 3 +FLAGS.SILENT (\\Deleted)",
        &[],
        "OK",
    ),
    (
        Who::A,
        "n3 NOOP",
        &["* 3 FETCH (FLAGS (\\Deleted) UID 3)"],
        "OK",
    ),
    // Expunged elsewhere: REMOVEFROM while the numbers still hold, then the EXPUNGE.
    (Who::B, "b3 EXPUNGE", &[], "OK"),
    (
        Who::A,
        "n4 NOOP",
        &[
            "* ESEARCH (TAG \"s1\") UID REMOVEFROM (0 3)",
            "* ESEARCH (TAG \"s2\") UID REMOVEFROM (4 3)",
            "* 3 EXPUNGE",
        ],
        "OK",
    ),
    // Not UID: sequence numbers (UID 4 is message 3 now).
    (
        Who::A,
        "q1 SEARCH RETURN (UPDATE MIN) UNSEEN",
        &["* ESEARCH (TAG \"q1\") MIN 1"],
        "OK",
    ),
    (Who::B, "b4 UID STORE 4 +FLAGS (\\Seen)", &[], "OK"),
    (
        Who::A,
        "n5 NOOP",
        &[
            "* 3 FETCH (FLAGS (\\Seen) UID 4)",
            "* ESEARCH (TAG \"s1\") UID REMOVEFROM (0 4)",
            "* ESEARCH (TAG \"s2\") UID REMOVEFROM (1 4)",
            "* ESEARCH (TAG \"q1\") REMOVEFROM (0 3)",
        ],
        "OK",
    ),
    // §4.3.5: CANCELUPDATE stops the tags named; unknown tags and bad syntax are refused.
    (Who::A, "c1 CANCELUPDATE \"s1\" \"q1\"", &[], "OK"),
    (Who::A, "c2 CANCELUPDATE \"s1\"", &[], "NO"),
    (Who::A, "c3 CANCELUPDATE s2", &[], "BAD"),
    (Who::A, "c4 CANCELUPDATE", &[], "BAD"),
    (Who::B, "b5 UID STORE 5 +FLAGS (\\Seen)", &[], "OK"),
    (
        Who::A,
        "n6 NOOP",
        &[
            "* 4 FETCH (FLAGS (\\Seen) UID 5)",
            "* ESEARCH (TAG \"s2\") UID REMOVEFROM (1 5)",
        ],
        "OK",
    ),
    // Bad RETURN syntax is BAD: PARTIAL needs one range of non-zero positions of one sign,
    // at most once and not with ALL (§4.4); SAVE is not a SORT option.
    (Who::A, "x1 SEARCH RETURN (PARTIAL) ALL", &[], "BAD"),
    (Who::A, "x2 SEARCH RETURN (PARTIAL 0:5) ALL", &[], "BAD"),
    (Who::A, "x3 SEARCH RETURN (PARTIAL 1:-5) ALL", &[], "BAD"),
    (Who::A, "x4 SEARCH RETURN (PARTIAL 1:5 ALL) ALL", &[], "BAD"),
    (
        Who::A,
        "x5 SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (SUBJECT) UTF-8 ALL",
        &[],
        "BAD",
    ),
    (Who::A, "x6 SEARCH RETURN (UPDATES) ALL", &[], "BAD"),
    (
        Who::A,
        "x7 SORT RETURN (SAVE UPDATE) (SUBJECT) UTF-8 ALL",
        &[],
        "BAD",
    ),
    // §4.3.1: eight live results at most (s2 and these seven); the ninth is answered, not kept.
    (
        Who::A,
        "l1 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l1\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l2 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l2\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l3 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l3\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l4 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l4\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l5 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l5\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l6 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l6\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l7 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &["* ESEARCH (TAG \"l7\") UID COUNT 4"],
        "OK",
    ),
    (
        Who::A,
        "l8 UID SEARCH RETURN (UPDATE COUNT) ALL",
        &[
            "* ESEARCH (TAG \"l8\") UID COUNT 4",
            "* NO [NOUPDATE \"l8\"] ...",
        ],
        "OK",
    ),
    // A tag already live is replaced, not a ninth.
    (
        Who::A,
        "l7 UID SEARCH RETURN (UPDATE COUNT) SEEN",
        &["* ESEARCH (TAG \"l7\") UID COUNT 2"],
        "OK",
    ),
    // Leaving the folder ends them all.
    (Who::A, "u1 UNSELECT", &[], "OK"),
    (Who::A, "u2 CANCELUPDATE \"s2\"", &[], "BAD"),
    (Who::A, "u3 SELECT INBOX", &[], "OK"),
    (Who::B, "APPEND ab", &[], "OK"),
    (Who::A, "u4 NOOP", &["* 5 EXISTS"], "OK"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_search_and_sort_keep_results_up_to_date() {
    each_backend(test_limits(), |env| async move {
        for subject in ["d", "b", "c", "a"] {
            deliver(env.store(), ALICE, "INBOX", message(subject, "x")).await;
        }
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let mut b = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        for &(who, command, want, status) in CONTEXT_STEPS {
            let c = match who {
                Who::A => &mut a,
                Who::B => &mut b,
            };
            let r = match command.strip_prefix("APPEND ") {
                Some(subject) => {
                    let msg = message(subject, "x");
                    let mut bytes = format!("ap APPEND INBOX {{{}+}}\r\n", msg.len()).into_bytes();
                    bytes.extend_from_slice(&msg);
                    bytes.extend_from_slice(b"\r\n");
                    c.send(&bytes).await;
                    c.until_tag("ap").await
                }
                None => c.cmd(command).await,
            };
            let (last, lines) = r.split_last().expect("a tagged answer");
            let tag = command.split(' ').next().unwrap_or_default();
            let tag = if command.starts_with("APPEND ") {
                "ap"
            } else {
                tag
            };
            assert!(
                last.starts_with(&format!("{tag} {status}")),
                "{command}: {last} ({lines:?})"
            );
            if let Who::B = who {
                continue;
            }
            let got: Vec<&str> = lines
                .iter()
                .map(String::as_str)
                .filter(|l| !command.ends_with("SELECT INBOX") || l.contains("ESEARCH"))
                .collect();
            let matched = got.len() == want.len()
                && got
                    .iter()
                    .zip(want.iter())
                    .all(|(g, w)| match w.strip_suffix("...") {
                        Some(prefix) => match prefix.split_once("...") {
                            Some((head, middle)) => g.starts_with(head) && g.contains(middle),
                            None => g.starts_with(prefix),
                        },
                        None => g == w,
                    });
            assert!(matched, "{command}:\n got {got:?}\nwant {want:?}");
        }
        env
    })
    .await;
}

/// A live result hears of mail delivered through another replica while it IDLEs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_updates_reach_idle_from_another_replica() {
    each_backend(test_limits(), |mut env| async move {
        deliver(env.store(), ALICE, "INBOX", message("first", "x")).await;
        let second = env.add_server(test_limits()).await;
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        a.cmd("a1 ENABLE IMAP4rev2").await;
        a.cmd("a2 SELECT INBOX").await;
        let r = a
            .cmd("a3 UID SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 ALL")
            .await;
        assert_eq!(r[0], "* ESEARCH (TAG \"a3\") UID ALL 1", "{r:?}");
        a.send(b"a4 IDLE\r\n").await;
        assert!(a.line().await.starts_with("+ "));
        deliver(
            &env.servers[second].store,
            ALICE,
            "INBOX",
            message("second", "y"),
        )
        .await;
        assert_eq!(a.line().await, "* 2 EXISTS");
        // REVERSE SUBJECT: "second" before "first".
        assert_eq!(a.line().await, "* ESEARCH (TAG \"a3\") UID ADDTO (1 2)");
        a.send(b"DONE\r\n").await;
        let r = a.until_tag("a4").await;
        assert!(tagged(&r, "a4").starts_with("a4 OK"), "{r:?}");
        env
    })
    .await;
}

/// Reads lines until one satisfies `want`, failing after `limit`; returns it.
async fn line_matching(c: &mut Raw, want: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let line = c.line().await;
        if want(&line) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{line} came late"
            );
            return line;
        }
        assert!(!line.is_empty(), "connection closed");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still waiting, got {line}"
        );
    }
}

/// RFC 5465 §3.1, §5.2-5.3: after NOTIFY SET with PERSONAL (MessageNew MessageExpunge), a
/// delivery into another folder made by a second replica shows as an untagged STATUS
/// without the client sending a command; NOTIFY SET STATUS sends the STATUS of the
/// watched mailboxes at once; NOTIFY NONE stops the notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reports_other_mailboxes_as_status_across_replicas() {
    each_backend(test_limits(), |mut env| async move {
        let second = env.add_server(test_limits()).await;
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = a.cmd("c CAPABILITY").await;
        assert!(r[0].contains(" NOTIFY"), "{r:?}");
        a.cmd("s SELECT INBOX").await;

        // §3.1 STATUS: the watched mailboxes' STATUS before the tagged OK.
        let r = a
            .cmd("n NOTIFY SET STATUS (mailboxes (Drafts Sent \"No Such\") (MessageNew MessageExpunge))")
            .await;
        assert_eq!(
            r,
            vec![
                "* STATUS \"Drafts\" (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS \"Sent\" (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "n OK NOTIFY completed".to_string(),
            ]
        );

        let r = a
            .cmd("m NOTIFY SET (selected NONE) (personal (MessageNew MessageExpunge))")
            .await;
        assert_eq!(r, vec!["m OK NOTIFY completed".to_string()]);
        deliver(
            &env.servers[second].store,
            ALICE,
            "Archive",
            message("elsewhere", "x"),
        )
        .await;
        let line = a.line().await;
        assert_eq!(line, "* STATUS \"Archive\" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)");

        // The selected mailbox is not reported as STATUS (§5.1).
        deliver(&env.servers[second].store, ALICE, "INBOX", message("here", "y")).await;
        deliver(&env.servers[second].store, ALICE, "Junk", message("junk", "z")).await;
        let line = a.line().await;
        assert_eq!(line, "* STATUS \"Junk\" (MESSAGES 1 UIDNEXT 2 UNSEEN 1)");

        // An expunge through the other replica (MessageExpunge); with CONDSTORE on,
        // HIGHESTMODSEQ comes along.
        a.cmd("e ENABLE CONDSTORE").await;
        let mut b = Raw::login(env.servers[second].port, ALICE, ALICE_PASSWORD).await;
        b.cmd("b1 SELECT Archive").await;
        b.cmd("b2 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        b.cmd("b3 EXPUNGE").await;
        let line = a.line().await;
        assert!(
            line.starts_with("* STATUS \"Archive\" (MESSAGES 0 UIDNEXT 2 UNSEEN 0 HIGHESTMODSEQ "),
            "{line}"
        );

        // NOTIFY NONE: nothing more without a command.
        let r = a.cmd("x NOTIFY NONE").await;
        assert_eq!(r, vec!["x OK NOTIFY NONE completed".to_string()]);
        deliver(&env.servers[second].store, ALICE, "Junk", message("junk", "z")).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let r = a.cmd("y NOOP").await;
        assert!(
            r.iter().all(|l| !l.starts_with("* STATUS")),
            "{r:?}"
        );
        env
    })
    .await;
}

/// RFC 5465 §6 SELECTED: new messages, flag changes and expunges of the selected mailbox
/// made on another replica arrive as EXISTS, FETCH and EXPUNGE without a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_selected_events_arrive_without_a_command() {
    each_backend(test_limits(), |mut env| async move {
        let second = env.add_server(test_limits()).await;
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        a.cmd("e ENABLE IMAP4rev2").await;
        a.cmd("s SELECT INBOX").await;
        let r = a
            .cmd("n NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))")
            .await;
        assert_eq!(r, vec!["n OK NOTIFY completed".to_string()]);
        deliver(
            &env.servers[second].store,
            ALICE,
            "INBOX",
            message("one", "x"),
        )
        .await;
        assert_eq!(a.line().await, "* 1 EXISTS");

        let mut b = Raw::login(env.servers[second].port, ALICE, ALICE_PASSWORD).await;
        b.cmd("b1 SELECT INBOX").await;
        b.cmd("b2 STORE 1 +FLAGS (\\Flagged)").await;
        let line = a.line().await;
        assert!(line.starts_with("* 1 FETCH (FLAGS (\\Flagged)"), "{line}");
        b.cmd("b3 STORE 1 +FLAGS.SILENT (\\Deleted)").await;
        b.cmd("b4 EXPUNGE").await;
        let line = line_matching(&mut a, |l| !l.starts_with("* 1 FETCH")).await;
        assert_eq!(line, "* 1 EXPUNGE");

        // SELECTED-DELAYED keeps the expunge until a command ends.
        let r = a
            .cmd("d NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))")
            .await;
        assert_eq!(r, vec!["d OK NOTIFY completed".to_string()]);
        deliver(
            &env.servers[second].store,
            ALICE,
            "INBOX",
            message("two", "y"),
        )
        .await;
        assert_eq!(a.line().await, "* 1 EXISTS");
        b.cmd("b5 UID STORE 2 +FLAGS.SILENT (\\Deleted)").await;
        let line = a.line().await;
        assert!(line.starts_with("* 1 FETCH (FLAGS (\\Deleted)"), "{line}");
        b.cmd("b6 EXPUNGE").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let r = a.cmd("f NOOP").await;
        assert_eq!(
            r,
            vec!["* 1 EXPUNGE".to_string(), "f OK NOOP completed".to_string()]
        );
        env
    })
    .await;
}

/// RFC 5465 §5.4 MailboxName and §5.5 SubscriptionChange: CREATE, RENAME, SUBSCRIBE,
/// UNSUBSCRIBE and DELETE on another replica show as LIST lines without a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reports_mailbox_list_changes_from_another_replica() {
    each_backend(test_limits(), |mut env| async move {
        let second = env.add_server(test_limits()).await;
        let mut a = Raw::login(env.port(), ALICE, ALICE_PASSWORD).await;
        let r = a
            .cmd("n NOTIFY SET (personal (MailboxName SubscriptionChange))")
            .await;
        assert_eq!(r, vec!["n OK NOTIFY completed".to_string()]);
        let mut b = Raw::login(env.servers[second].port, ALICE, ALICE_PASSWORD).await;
        b.cmd("b1 CREATE Projects").await;
        assert_eq!(a.line().await, "* LIST () \"/\" \"Projects\"");
        b.cmd("b2 RENAME Projects Work").await;
        assert_eq!(
            a.line().await,
            "* LIST () \"/\" \"Work\" (\"OLDNAME\" (\"Projects\"))"
        );
        b.cmd("b3 SUBSCRIBE Work").await;
        assert_eq!(a.line().await, "* LIST (\\Subscribed) \"/\" \"Work\"");
        b.cmd("b4 UNSUBSCRIBE Work").await;
        assert_eq!(a.line().await, "* LIST () \"/\" \"Work\"");
        b.cmd("b5 DELETE Work").await;
        assert_eq!(a.line().await, "* LIST (\\NonExistent) \"/\" \"Work\"");

        // In IDLE too.
        a.send(b"i IDLE\r\n").await;
        assert!(a.line().await.starts_with("+ "));
        b.cmd("b6 CREATE Later").await;
        assert_eq!(a.line().await, "* LIST () \"/\" \"Later\"");
        a.send(b"DONE\r\n").await;
        let r = a.until_tag("i").await;
        assert!(tagged(&r, "i").starts_with("i OK"), "{r:?}");

        // Only MailboxName for a subtree: other names and subscriptions are not reported.
        let r = a.cmd("m NOTIFY SET (subtree Lists (MailboxName))").await;
        assert_eq!(r, vec!["m OK NOTIFY completed".to_string()]);
        b.cmd("b7 CREATE Elsewhere").await;
        b.cmd("b8 SUBSCRIBE Lists").await;
        b.cmd("b9 CREATE Lists/rust").await;
        assert_eq!(a.line().await, "* LIST () \"/\" \"Lists\"");
        assert_eq!(a.line().await, "* LIST () \"/\" \"Lists/rust\"");
        let r = a.cmd("x NOTIFY NONE").await;
        assert_eq!(r, vec!["x OK NOTIFY NONE completed".to_string()]);
        b.cmd("b10 DELETE Elsewhere").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let r = a.cmd("y NOOP").await;
        assert_eq!(r, vec!["y OK NOOP completed".to_string()]);
        env
    })
    .await;
}

/// RFC 5465 §3.2 and §5: unsupported events get NO [BADEVENT] listing the supported ones;
/// MessageNew without MessageExpunge, FlagChange without both, fetch items outside
/// SELECTED and two SELECTED filters are BAD; NOTIFY needs a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_refuses_unsupported_events_and_wrong_combinations() {
    each_backend(test_limits(), |env| async move {
        let (mut c, _) = Raw::connect(env.port()).await;
        let r = c.cmd("p NOTIFY NONE").await;
        assert!(tagged(&r, "p").starts_with("p BAD"), "{r:?}");
        let r = c.cmd("l LOGIN alice@example.test secret").await;
        assert!(tagged(&r, "l").starts_with("l OK"), "{r:?}");
        for event in ["AnnotationChange", "MailboxMetadataChange", "ServerMetadataChange"] {
            let r = c
                .cmd(&format!("x NOTIFY SET (personal (MessageNew MessageExpunge {event}))"))
                .await;
            assert_eq!(
                tagged(&r, "x"),
                "x NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)] Unsupported event in NOTIFY",
                "{r:?}"
            );
        }
        for wrong in [
            "NOTIFY SET (personal (MessageNew))",
            "NOTIFY SET (personal (MessageExpunge))",
            "NOTIFY SET (inboxes (FlagChange))",
            "NOTIFY SET (selected (FlagChange MessageNew))",
            "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
            "NOTIFY SET (selected NONE) (selected-delayed NONE)",
            "NOTIFY SET (personal ())",
            "NOTIFY SET",
            "NOTIFY FOO",
        ] {
            let r = c.cmd(&format!("y {wrong}")).await;
            assert!(tagged(&r, "y").starts_with("y BAD"), "{wrong}: {r:?}");
        }
        // Names that do not exist are fine (§6).
        let r = c
            .cmd("z NOTIFY SET (subtree (Nope \"Not/There\") (MessageNew MessageExpunge FlagChange))")
            .await;
        assert_eq!(r, vec!["z OK NOTIFY completed".to_string()]);
        env
    })
    .await;
}
