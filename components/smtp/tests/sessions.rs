//! SMTP and LMTP sessions driven over in-memory streams with a transcript (postbay-testkit),
//! against real stores on SQLite and MariaDB: the protocol rules without sockets, so a
//! change to a session shows up here in seconds. The same paths are exercised over real
//! sockets with swaks, smtplib, msmtp, curl and Postfix in tests/ (Python).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postbay_net::MaybeTls;
use postbay_smtp::inbound::{Role, Session};
use postbay_smtp::lmtp::session::{LmtpContext, LmtpSession};
use postbay_smtp::queue::Queue;
use postbay_smtp::{ServerContext, SmtpConfig};
use postbay_testkit::transcript::Transcript;
use postbay_testkit::{seed_domain, seed_mailbox, stores, TestStore};

fn peer() -> SocketAddr {
    "192.0.2.10:40000".parse().expect("an address")
}

async fn seeded(prefix: &str) -> Vec<TestStore> {
    let all = stores(prefix).await;
    for t in &all {
        seed_domain(&t.store, "example.test").await;
        seed_mailbox(&t.store, "bob@example.test", "{PLAIN}bob-secret").await;
    }
    all
}

/// A server context on `t`'s store with its queue in `t`'s volume.
fn context(t: &TestStore) -> Arc<ServerContext> {
    let (queue, _wake) = Queue::open(&t.dir.path().join("spool"), "node-test").expect("queue");
    Arc::new(ServerContext {
        config: SmtpConfig {
            hostname: "mx.example.test".into(),
            max_errors: 5,
            ..SmtpConfig::default()
        },
        store: t.store.clone(),
        auth: postbay_auth::Authenticator::new(
            t.store.clone(),
            postbay_auth::AuthConfig::default(),
        ),
        signer: postbay_dkim::Signer::new(
            t.store.clone(),
            postbay_dkim::KeySource { keys_dir: None },
        ),
        sends: Default::default(),
        queue,
    })
}

fn smtp(ctx: &Arc<ServerContext>, role: Role) -> Transcript {
    let (client, server) = Transcript::pair();
    let session = Session::new(ctx.clone(), MaybeTls::Plain(server), peer(), None, role);
    tokio::spawn(session.run());
    client
}

fn queued_envelopes(ctx: &ServerContext) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(ctx.queue.dir())
        .expect("queue dir")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".msg") {
            let bytes = std::fs::read(entry.path()).expect("queue file");
            let line = bytes.split(|&b| b == b'\n').next().expect("envelope line");
            out.push(serde_json::from_slice(line).expect("envelope json"));
        }
    }
    out
}

#[tokio::test]
async fn mx_accepts_local_mail_refuses_relay_and_queues_before_250() {
    for t in seeded("smtp_mx").await {
        let ctx = context(&t);
        let mut c = smtp(&ctx, Role::Mx { auth: false });
        c.expect("220 mx.example.test").await;
        c.cmd("EHLO client.test", "250").await;
        c.cmd("MAIL FROM:<sender@remote.test>", "250 2.1.0").await;
        c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1").await;
        c.cmd("RCPT TO:<friend@remote.test>", "554 5.7.1").await;
        c.cmd("RCPT TO:<bob+tag@example.test>", "250 2.1.5").await;
        c.cmd("DATA", "354").await;
        c.send(b"Subject: hi\r\n\r\n..leading dot\r\n.\r\n").await;
        let queued = c.expect("250 2.0.0 Ok: queued as").await;
        let id = queued.rsplit(' ').next().expect("an id").to_string();
        // The 250 came after the file was written: it is there now, with one recipient.
        let envelopes = queued_envelopes(&ctx);
        assert_eq!(envelopes.len(), 1, "{}", t.name);
        assert_eq!(envelopes[0]["id"], id.as_str());
        assert_eq!(envelopes[0]["recipients"][0]["address"], "bob@example.test");
        assert_eq!(envelopes[0]["recipients"][0]["local"], true);
        c.cmd("AUTH PLAIN AGJvYgBib2Itc2VjcmV0", "503 5.5.1").await;
        c.cmd("QUIT", "221").await;
        assert!(c.closed().await);
        t.cleanup().await;
    }
}

#[tokio::test]
async fn submission_wants_tls_before_auth_and_auth_before_mail() {
    for t in seeded("smtp_sub").await {
        let ctx = context(&t);
        let mut c = smtp(&ctx, Role::Submission);
        c.expect("220").await;
        c.send(b"EHLO client.test\r\n").await;
        let mut ehlo = Vec::new();
        loop {
            let line = c.reply().await;
            let last = line.as_bytes().get(3) == Some(&b' ');
            ehlo.push(line);
            if last {
                break;
            }
        }
        // No TLS acceptor here, so neither STARTTLS nor AUTH may be offered.
        assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
        c.cmd(
            "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAYm9iLXNlY3JldA==",
            "530 5.7.0",
        )
        .await;
        c.cmd("MAIL FROM:<bob@example.test>", "530 5.7.0").await;
        c.cmd("RCPT TO:<bob@example.test>", "503").await;
        assert!(queued_envelopes(&ctx).is_empty());
        t.cleanup().await;
    }
}

#[tokio::test]
async fn an_over_long_line_is_one_error_and_too_many_errors_close_the_session() {
    for t in seeded("smtp_err").await {
        let ctx = context(&t);
        let mut c = smtp(&ctx, Role::Mx { auth: false });
        c.expect("220").await;
        let mut long = b"NOOP ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        long.extend_from_slice(b"MAIL FROM:<smuggled@remote.test>\r\n");
        c.send(&long).await;
        c.expect("500 5.5.2").await;
        // The tail of the long line was not taken for a command: the next reply is NOOP's.
        c.cmd("NOOP", "250").await;
        for _ in 0..3 {
            c.cmd("BOGUS", "500 5.5.1").await;
        }
        c.send(b"BOGUS\r\n").await;
        c.expect("500").await;
        c.expect("421 4.7.0").await;
        assert!(c.closed().await);
        t.cleanup().await;
    }
}

fn lmtp(store: &postbay_store::Store) -> Transcript {
    let ctx = Arc::new(LmtpContext {
        hostname: "mailbox.example.test".into(),
        store: store.clone(),
        max_message_size: 1 << 20,
        timeout: Duration::from_secs(30),
        max_recipients: 100,
    });
    let (client, server) = Transcript::pair();
    tokio::spawn(LmtpSession::new(ctx, MaybeTls::Plain(server), peer()).run());
    client
}

async fn lmtp_deliver(store: &postbay_store::Store, transid: &str) {
    let mut c = lmtp(store);
    c.expect("220").await;
    c.cmd("LHLO queue.test", "250").await;
    c.cmd(
        &format!("MAIL FROM:<sender@remote.test> TRANSID=<{transid}@postbay>"),
        "250",
    )
    .await;
    c.cmd("RCPT TO:<bob@example.test>", "250").await;
    c.cmd("RCPT TO:<nobody@example.test>", "550 5.1.1").await;
    c.cmd("DATA", "354").await;
    c.send(b"Subject: via lmtp\r\n\r\nbody\r\n.\r\n").await;
    // RFC 2033 §4.2: one reply per accepted recipient, here one.
    c.expect("250").await;
    c.cmd("QUIT", "221").await;
}

/// Delivers through LMTP with `transid` and returns how many messages bob's INBOX holds.
async fn deliver_and_count(store: &postbay_store::Store, transid: &str) -> i64 {
    lmtp_deliver(store, transid).await;
    store
        .count_messages("bob@example.test", "INBOX")
        .await
        .expect("count")
}

#[tokio::test]
async fn lmtp_stores_once_per_transid_and_answers_per_recipient() {
    for t in seeded("lmtp").await {
        assert_eq!(deliver_and_count(&t.store, "01TEST").await, 1, "{}", t.name);
        // The queue retrying after a crash sends the same TRANSID: no second copy.
        assert_eq!(deliver_and_count(&t.store, "01TEST").await, 1, "{}", t.name);
        assert_eq!(
            deliver_and_count(&t.store, "01OTHER").await,
            2,
            "{}",
            t.name
        );
        t.cleanup().await;
    }
}
