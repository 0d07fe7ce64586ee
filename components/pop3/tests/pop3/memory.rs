//! The session over an in-memory stream: the client address is whatever the test says, so
//! the plaintext policy for non-loopback clients can be checked, and `run` reports why the
//! session ended.

use std::net::SocketAddr;
use std::sync::Arc;

use postbay_net::wire::MaybeTls;
use postbay_pop3::{Ending, PlaintextAuth, Pop3Context, Session};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;

use crate::common::*;

fn start(ctx: &Arc<Pop3Context>, peer: &str) -> (LineClient<DuplexStream>, JoinHandle<Ending>) {
    let (client, server_side) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = peer.parse().unwrap();
    let session = Session::new(ctx.clone(), MaybeTls::Plain(server_side), peer, None);
    (LineClient::new(client), tokio::spawn(session.run()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_policy_follows_the_client_address() {
    let server = Server::start(&Backend::Sqlite).await;
    let ctx = Arc::new(Pop3Context::new(
        server.store.clone(),
        "mem.example.test",
        test_limits(),
    ));

    // A network client without TLS (and no STLS configured) may not send a password.
    let (mut c, session) = start(&ctx, "192.0.2.10:40000");
    c.expect("+OK mem.example.test POP3 Postbay ready").await;
    c.cmd("CAPA", "+OK").await;
    let (capa, _) = c.body().await;
    assert!(
        !capa
            .iter()
            .any(|l| l == "USER" || l.starts_with("SASL") || l == "STLS"),
        "{capa:?}"
    );
    c.cmd(
        &format!("USER {ALICE}"),
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    c.cmd(
        &format!("PASS {ALICE_PASS}"),
        "-ERR [AUTH] Plaintext authentication disallowed",
    )
    .await;
    c.cmd("STLS", "-ERR STLS not available").await;
    c.cmd("QUIT", "+OK mem.example.test POP3 Postbay signing off")
        .await;
    assert_eq!(session.await.unwrap(), Ending::Quit);

    // IPv6 loopback counts as local.
    let (mut c, session) = start(&ctx, "[::1]:40000");
    c.expect("+OK").await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("QUIT", "+OK").await;
    assert_eq!(session.await.unwrap(), Ending::Quit);

    // PlaintextAuth::Always lets the network client in; failures end the session as such.
    let open = Arc::new(
        Pop3Context::new(server.store.clone(), "mem.example.test", test_limits())
            .with_plaintext_auth(PlaintextAuth::Always),
    );
    let (mut c, session) = start(&open, "192.0.2.10:40000");
    c.expect("+OK").await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("STAT", "+OK 3 ").await;
    c.cmd("QUIT", "+OK").await;
    assert_eq!(session.await.unwrap(), Ending::Quit);
    let (mut c, session) = start(&open, "192.0.2.11:40000");
    c.expect("+OK").await;
    for _ in 0..3 {
        c.cmd(&format!("USER {ALICE}"), "+OK").await;
        c.cmd("PASS wrong", "-ERR [AUTH] Authentication failed")
            .await;
    }
    c.expect_closed().await;
    assert_eq!(session.await.unwrap(), Ending::TooManyAuthFailures);
    // The client hangs up without QUIT: no UPDATE state.
    let (mut c, session) = start(&open, "192.0.2.12:40000");
    c.expect("+OK").await;
    c.login(ALICE, ALICE_PASS).await;
    c.cmd("DELE 1", "+OK").await;
    drop(c);
    assert_eq!(session.await.unwrap(), Ending::ClientGone);
    assert_eq!(server.count(ALICE).await, 3);
    server.stop().await;
}
