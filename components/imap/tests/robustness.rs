//! The fuzz target's oracle on stable Rust: many generated hostile inputs (mixtures of valid
//! commands, broken literals, NULs, unbalanced parentheses, random bytes) played into whole
//! sessions and into the message parser. Nothing may panic or hang.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use postbay_imap::message::Parsed;
use postbay_imap::ImapContext;

/// A small deterministic PRNG (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&[u8]] = &[
    b"a LOGIN alice@example.test secret\r\n",
    b"a1 AUTHENTICATE PLAIN\r\n",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n",
    b"b SELECT INBOX\r\n",
    b"b2 EXAMINE \"Sent\"\r\n",
    b"c FETCH 1:* (UID FLAGS BODY[] ENVELOPE BODYSTRUCTURE BINARY[1] BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.5>)\r\n",
    b"d APPEND INBOX (\\Seen) {23+}\r\nSubject: x\r\n\r\nhello\r\n\r\n",
    b"d2 APPEND INBOX ~{5+}\r\na\0b\0c\r\n",
    b"e SEARCH OR UNSEEN (FROM x SUBJECT y) NOT 1:* TEXT \"q\"\r\n",
    b"e2 UID SEARCH RETURN (MIN MAX COUNT ALL) ALL\r\n",
    b"e3 SEARCH RETURN (SAVE) UNSEEN\r\n",
    b"e4 UID FETCH $ (FLAGS)\r\ne5 STORE $ +FLAGS (\\Seen)\r\n",
    b" $",
    b"f STORE 1:* +FLAGS (\\Deleted $x)\r\n",
    b"g EXPUNGE\r\n",
    b"h LIST (SUBSCRIBED) \"\" (\"*\" %) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
    b"i IDLE\r\nDONE\r\n",
    b"j CREATE a/b/c\r\nk RENAME a z\r\nl DELETE z/b\r\n",
    b"m UID MOVE 1:3 Trash\r\nn UID COPY * Archive\r\n",
    b"o STATUS INBOX (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)\r\n",
    b"p ENABLE IMAP4rev2 CONDSTORE\r\n",
    b"q GETQUOTAROOT INBOX\r\n",
    b"{5}\r\n",
    b"{4294967295}\r\n",
    b"{12+}\r\n",
    b"~{3}\r\n",
    b"\0",
    b"(((((",
    b")))",
    b"\"unterminated",
    b"*",
    b"%",
    b"\r\n",
    b"\n",
    b"UID ",
    b" BODY[1.2.3.MIME]",
    b"r STARTTLS\r\n",
    b"s NOOP\r\n",
    b"t LOGOUT\r\n",
];

fn input(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    // Most inputs log in and select first, so the hostile part reaches deep states.
    match rng.below(5) {
        0 => {}
        1 => out.extend_from_slice(PIECES[0]),
        _ => {
            out.extend_from_slice(PIECES[0]);
            out.extend_from_slice(PIECES[3]);
        }
    }
    let n = 1 + rng.below(12);
    for _ in 0..n {
        if rng.below(5) == 0 {
            let len = rng.below(64);
            out.extend((0..len).map(|_| rng.next() as u8));
        } else {
            out.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sessions_neither_panic_nor_hang() {
    let dir = tempfile::tempdir().unwrap();
    // SQLite only: this test is about the protocol layer, not the database.
    let mut all = backends(dir.path()).await;
    let backend = all.remove(0);
    for other in all {
        other.cleanup().await;
    }
    let limits = postbay_imap::ImapLimits {
        failed_login_delay: Duration::ZERO,
        max_failures_per_ip: u32::MAX,
        max_failures_per_user: u32::MAX,
        ..test_limits()
    };
    let env = Env::new(
        backend,
        tempfile::TempDir::new_in(dir.path()).unwrap(),
        limits.clone(),
    )
    .await;
    deliver(env.store(), ALICE, "INBOX", message("seed", "body")).await;
    let ctx = Arc::new(ImapContext::new(env.store().clone(), "test", limits));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut selected = 0;
    for i in 0..300 {
        let data = input(&mut rng);
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            postbay_imap::fuzzing::run_session(ctx.clone(), &data),
        )
        .await
        .unwrap_or_else(|_| panic!("input {i} hung: {:?}", String::from_utf8_lossy(&data)));
        assert!(out.starts_with(b"* OK "), "input {i}: no greeting");
        if out.windows(12).any(|w| w == b"[READ-WRITE]") {
            selected += 1;
        }
    }
    // The generator must reach deep states, or it tests little.
    assert!(
        selected > 100,
        "only {selected} sessions selected a mailbox"
    );
    env.finish().await;
}

#[test]
fn hostile_messages_parse() {
    let mut rng = Rng(42);
    let pieces: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=\"b\"\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"From: =?utf-8?b?w7w=?= <a@b>, group: c@d, e@f;\r\n",
        b"Subject: \xff\xfe\0\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"body =3D text\r\n",
        b"QUJD\r\n",
        b"\n\n",
    ];
    for _ in 0..2000 {
        let mut msg = Vec::new();
        for _ in 0..rng.below(16) {
            msg.extend_from_slice(pieces[rng.below(pieces.len())]);
        }
        let p = Parsed::new(&msg);
        assert_eq!(p.section(None).unwrap().as_ref(), &msg[..]);
        let _ = p.envelope();
        let _ = p.body_structure(true);
        let _ = p.body_search_text();
        for path in [&[1u32][..], &[2], &[1, 1], &[2, 1]] {
            let nz: Vec<_> = path
                .iter()
                .map(|n| std::num::NonZeroU32::new(*n).unwrap())
                .collect();
            let _ = p.binary(&nz);
        }
    }
}
