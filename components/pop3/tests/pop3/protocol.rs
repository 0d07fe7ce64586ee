//! Transcripts over real sockets: what a client sends, what it must read back.

use std::time::{Duration, Instant};

use base64::Engine;
use postbay_pop3::{PlaintextAuth, Pop3Limits};
use tokio_rustls::rustls::pki_types::ServerName;

use crate::common::*;

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commands_and_update_state() {
    for backend in backends() {
        let server = Server::start(&backend).await;
        let name = server.backend;
        let mut c = server.connect().await;

        // Before login: CAPA advertises the login methods and STLS.
        c.cmd("CAPA", "+OK").await;
        let (capa, _) = c.body().await;
        for cap in [
            "TOP",
            "UIDL",
            "USER",
            "SASL PLAIN",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "STLS",
        ] {
            assert!(
                capa.iter().any(|c| c == cap),
                "{name}: CAPA lacks {cap}: {capa:?}"
            );
        }
        c.cmd("STAT", "-ERR Not logged in").await;
        let login = c.login(ALICE, ALICE_PASS).await;
        let sizes: Vec<u64> = EXPECTED.iter().map(|m| m.len() as u64).collect();
        let total: u64 = sizes.iter().sum();
        assert_eq!(
            login,
            format!("+OK Logged in, maildrop has 3 messages ({total} octets)")
        );

        c.cmd("STAT", &format!("+OK 3 {total}")).await;
        c.cmd("LIST", "+OK 3 messages").await;
        let (list, _) = c.body().await;
        let want: Vec<String> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{} {s}", i + 1))
            .collect();
        assert_eq!(list, want, "{name}");
        c.cmd("LIST 2", &format!("+OK 2 {}", sizes[1])).await;
        c.cmd("LIST 4", "-ERR No such message 4").await;
        c.cmd("LIST 0", "-ERR No such message 0").await;

        let uidls = server.expected_uidls(ALICE).await;
        c.cmd("UIDL", "+OK").await;
        let (listing, _) = c.body().await;
        let want: Vec<String> = uidls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("{} {u}", i + 1))
            .collect();
        assert_eq!(listing, want, "{name}");
        c.cmd("UIDL 3", &format!("+OK 3 {}", uidls[2])).await;

        // RETR: byte-stuffed on the wire, exact after unstuffing, size as announced.
        for (i, expected) in EXPECTED.iter().enumerate() {
            let status = c.cmd(&format!("RETR {}", i + 1), "+OK").await;
            assert_eq!(status, format!("+OK {} octets", expected.len()));
            let (raw, content) = c.body().await;
            assert_eq!(
                String::from_utf8_lossy(&content),
                String::from_utf8_lossy(expected),
                "{name}"
            );
            if i == 0 {
                assert!(raw.contains(&"..leading dot".to_string()), "{raw:?}");
                assert!(raw.contains(&"...two dots".to_string()), "{raw:?}");
                assert!(raw.contains(&"..".to_string()), "{raw:?}");
            }
        }
        // TOP: header, blank line, n body lines.
        c.cmd("TOP 1 0", "+OK").await;
        let (_, top) = c.body().await;
        assert_eq!(
            top,
            b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: first\r\n\r\n"
        );
        c.cmd("TOP 2 2", "+OK").await;
        let (_, top) = c.body().await;
        assert_eq!(
            top,
            b"From: b@remote.test\r\nSubject: second\r\n\r\nline one\r\nline two\r\n"
        );
        c.cmd("TOP 9 1", "-ERR No such message 9").await;

        // DELE marks; RSET unmarks; deletions apply only at QUIT.
        c.cmd("DELE 1", "+OK Message 1 deleted").await;
        c.cmd("DELE 1", "-ERR Message 1 already deleted").await;
        c.cmd("RETR 1", "-ERR Message 1 already deleted").await;
        c.cmd("STAT", &format!("+OK 2 {}", sizes[1] + sizes[2]))
            .await;
        c.cmd(
            "RSET",
            &format!("+OK Maildrop has 3 messages ({total} octets)"),
        )
        .await;
        c.cmd("DELE 2", "+OK").await;
        c.cmd("NOOP", "+OK").await;
        assert_eq!(
            server.count(ALICE).await,
            3,
            "{name}: nothing removed before QUIT"
        );
        c.cmd(
            "QUIT",
            "+OK pop.example.test POP3 Postbay signing off (2 messages left)",
        )
        .await;
        c.expect_closed().await;
        assert_eq!(server.count(ALICE).await, 2, "{name}");

        // Next session: message 2 is gone, the others keep their UIDL ids.
        let mut c = server.connect().await;
        c.login(ALICE, ALICE_PASS).await;
        c.cmd("UIDL", "+OK").await;
        let (listing, _) = c.body().await;
        assert_eq!(
            listing,
            [format!("1 {}", uidls[0]), format!("2 {}", uidls[2])],
            "{name}"
        );
        c.cmd("RETR 2", "+OK").await;
        assert_eq!(c.body().await.1, EXPECTED[2]);
        c.cmd("QUIT", "+OK").await;

        // RETR marked the message \Seen for IMAP users.
        let inbox = server.inbox(ALICE).await;
        let messages = server.store.messages(inbox.id).await.unwrap();
        let seen: Vec<bool> = messages
            .iter()
            .map(|m| m.flags.iter().any(|f| f == "\\Seen"))
            .collect();
        assert_eq!(
            seen,
            [true, true],
            "{name}: both were retrieved in the first session"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_counted() {
    let limits = Pop3Limits {
        max_bad_commands: 7,
        ..test_limits()
    };
    let server = Server::start_with(&Backend::Sqlite, limits, PlaintextAuth::LoopbackOnly).await;
    let mut c = server.connect().await;
    c.cmd("HELO there", "-ERR Unknown command").await;
    c.cmd("APOP alice 0123", "-ERR APOP is not supported").await;
    c.cmd("LIST", "-ERR Not logged in").await;
    // Over-long line: read to its end, refused, and the session stays in step.
    c.send(&format!("USER {}", "x".repeat(5000))).await;
    c.expect("-ERR Command line too long").await;
    c.cmd("NOOP", "-ERR Not logged in").await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("RETR x", "-ERR Syntax error").await;
    // The seventh bad command closes the connection.
    c.cmd("USER again", "-ERR Already logged in").await;
    c.expect_closed().await;
    // No UPDATE state: nothing was deleted, and the numbers are as seeded.
    assert_eq!(server.count(ALICE).await, 3);

    // Pipelined commands in one write are answered in order (RFC 2449 PIPELINING), and a
    // bare LF ends a line too.
    let mut c = server.connect().await;
    c.send_raw(format!("USER {ALICE}\r\nPASS {ALICE_PASS}\nSTAT\r\nLIST 1\r\nQUIT\r\n").as_bytes())
        .await;
    c.expect("+OK").await;
    c.expect("+OK Logged in").await;
    c.expect("+OK 3 ").await;
    c.expect("+OK 1 ").await;
    c.expect("+OK pop.example.test POP3 Postbay signing off")
        .await;
    c.expect_closed().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_plain_variants_and_failures() {
    let server = Server::start(&Backend::Sqlite).await;
    let mut c = server.connect().await;
    // Mechanism listing (RFC 1734 style).
    c.cmd("AUTH", "+OK").await;
    assert_eq!(c.body().await.0, ["PLAIN"]);
    c.cmd("AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism")
        .await;
    // Continuation, then cancel: not a failure.
    c.cmd("AUTH PLAIN", "+ ").await;
    c.cmd("*", "-ERR Authentication cancelled").await;
    // Garbage base64 and malformed PLAIN count as failures.
    c.cmd("AUTH PLAIN !!!notbase64!!!", "-ERR Invalid base64")
        .await;
    c.cmd("AUTH PLAIN", "+ ").await;
    c.cmd(&b64(b"no-nul-separators"), "-ERR Malformed PLAIN response")
        .await;
    // Continuation with correct credentials (bob: SHA512-CRYPT, spaces in the password).
    c.cmd("AUTH PLAIN", "+ ").await;
    c.cmd(
        &b64(format!("\0{BOB}\0{BOB_PASS}").as_bytes()),
        "+OK Logged in, maildrop has 1 messages",
    )
    .await;
    c.cmd("AUTH PLAIN =", "-ERR Already logged in").await;
    c.cmd("QUIT", "+OK").await;

    // Initial response; an authorization identity equal to the user is fine.
    let mut c = server.connect().await;
    let token = b64(format!("{ALICE}\0{ALICE}\0{ALICE_PASS}").as_bytes());
    c.cmd(&format!("AUTH PLAIN {token}"), "+OK Logged in").await;
    c.cmd("QUIT", "+OK").await;

    // Three failures close the connection; the last answer says so.
    let mut c = server.connect().await;
    let other = b64(format!("{BOB}\0{ALICE}\0{ALICE_PASS}").as_bytes());
    c.cmd(
        &format!("AUTH PLAIN {other}"),
        "-ERR [AUTH] Authorization identity not permitted",
    )
    .await;
    c.cmd(&format!("USER {ALICE}"), "+OK").await;
    c.cmd("PASS wrong", "-ERR [AUTH] Authentication failed")
        .await;
    c.cmd("USER nobody@example.test", "+OK").await;
    let last = c
        .cmd("PASS secret", "-ERR [AUTH] Authentication failed")
        .await;
    assert!(
        last.ends_with("too many failures, closing connection"),
        "{last}"
    );
    c.expect_closed().await;

    // PASS without USER is a sequence error, not a login attempt.
    let mut c = server.connect().await;
    c.cmd("PASS secret", "-ERR No user name given").await;
    // A password with spaces survives PASS intact.
    c.login(BOB, BOB_PASS).await;
    c.cmd("QUIT", "+OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_delayed_and_rate_limited_per_ip() {
    let limits = Pop3Limits {
        failure_delay: Duration::from_millis(150),
        max_failure_delay: Duration::from_millis(400),
        max_failures_per_ip: 3,
        failure_window: Duration::from_secs(60),
        ..Pop3Limits::default()
    };
    let server = Server::start_with(&Backend::Sqlite, limits, PlaintextAuth::LoopbackOnly).await;
    let mut c = server.connect().await;
    c.cmd(&format!("USER {ALICE}"), "+OK").await;
    let started = Instant::now();
    c.cmd("PASS wrong", "-ERR [AUTH] Authentication failed")
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    c.cmd(&format!("USER {ALICE}"), "+OK").await;
    let started = Instant::now();
    c.cmd("PASS wrong", "-ERR [AUTH]").await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delay doubles: {:?}",
        started.elapsed()
    );
    // An unknown user takes as long as a wrong password.
    let mut d = server.connect().await;
    d.cmd("USER nobody@example.test", "+OK").await;
    let started = Instant::now();
    d.cmd("PASS wrong", "-ERR [AUTH] Authentication failed")
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    // Three failures from 127.0.0.1 across connections: even the right password is refused.
    let mut e = server.connect().await;
    e.cmd(&format!("USER {ALICE}"), "+OK").await;
    e.cmd(
        &format!("PASS {ALICE_PASS}"),
        "-ERR [SYS/TEMP] Too many failed logins from your address",
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_login_needs_tls_when_policy_says_so() {
    let server = Server::start_with(&Backend::Sqlite, test_limits(), PlaintextAuth::Never).await;
    let mut c = server.connect().await;
    c.cmd("CAPA", "+OK").await;
    let (capa, _) = c.body().await;
    assert!(capa.contains(&"STLS".to_string()), "{capa:?}");
    assert!(
        !capa.iter().any(|l| l == "USER" || l.starts_with("SASL")),
        "{capa:?}"
    );
    c.cmd(
        &format!("USER {ALICE}"),
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    c.cmd(
        "AUTH PLAIN",
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    c.cmd("AUTH", "+OK").await;
    assert!(c.body().await.0.is_empty());

    // STLS, with a command pipelined behind it in plaintext: that command must be dropped.
    c.send_raw(format!("STLS\r\nUSER {ALICE}\r\n").as_bytes())
        .await;
    c.expect("+OK Begin TLS negotiation").await;
    let pem = std::fs::read(&server.cert_pem).unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(postbay_net::client_config_trusting(&pem).unwrap());
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), c.into_inner())
        .await
        .unwrap();
    let mut c = LineClient::new(tls);
    c.cmd("PASS secret", "-ERR No user name given").await;
    c.cmd("CAPA", "+OK").await;
    let (capa, _) = c.body().await;
    assert!(
        capa.contains(&"USER".to_string()) && capa.contains(&"SASL PLAIN".to_string()),
        "{capa:?}"
    );
    assert!(!capa.contains(&"STLS".to_string()), "{capa:?}");
    c.cmd("STLS", "-ERR Command not permitted when TLS active")
        .await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("STAT", "+OK 3").await;
    c.cmd("QUIT", "+OK").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autologout_leaves_deletions_unapplied() {
    let limits = Pop3Limits {
        idle_timeout: Duration::from_secs(1),
        ..test_limits()
    };
    let server = Server::start_with(&Backend::Sqlite, limits, PlaintextAuth::LoopbackOnly).await;
    let mut c = server.connect().await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("DELE 1", "+OK").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.expect("-ERR Autologout").await;
    c.expect_closed().await;
    assert_eq!(
        server.count(ALICE).await,
        3,
        "RFC 1939 §3: no UPDATE state on autologout"
    );
    server.stop().await;
}
