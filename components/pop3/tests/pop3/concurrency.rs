//! Sessions sharing a maildrop: snapshots at login, and deletions racing each other or IMAP.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_the_inbox_safely() {
    for backend in backends() {
        let server = Server::start(&backend).await;
        let name = server.backend;

        // Two sessions delete the same message and quit at the same time: both succeed.
        let mut a = server.connect().await;
        let mut b = server.connect().await;
        a.login(ALICE, ALICE_PASS).await;
        b.login(ALICE, ALICE_PASS).await;
        a.cmd("DELE 1", "+OK").await;
        b.cmd("DELE 1", "+OK").await;
        a.send("QUIT").await;
        b.send("QUIT").await;
        let (qa, qb) = tokio::join!(a.expect("+OK"), b.expect("+OK"));
        assert!(
            qa.contains("signing off") && qb.contains("signing off"),
            "{name}: {qa} / {qb}"
        );
        assert_eq!(server.count(ALICE).await, 2, "{name}");

        // The maildrop is a snapshot: mail arriving after login waits for the next session.
        let mut a = server.connect().await;
        a.login(ALICE, ALICE_PASS).await;
        server
            .deliver(ALICE, b"Subject: late\r\n\r\nlate arrival\r\n")
            .await;
        a.cmd("STAT", "+OK 2 ").await;
        a.cmd("LIST 3", "-ERR No such message 3").await;
        let mut b = server.connect().await;
        b.login(ALICE, ALICE_PASS).await;
        b.cmd("STAT", "+OK 3 ").await;

        // b expunges message 1; a still lists it, cannot fetch it, and may delete it anyway.
        b.cmd("DELE 1", "+OK").await;
        b.cmd("QUIT", "+OK").await;
        a.cmd("LIST 1", "+OK 1 ").await;
        a.cmd("RETR 1", "-ERR Message 1 was removed by another session")
            .await;
        a.cmd("RETR 2", "+OK").await;
        assert_eq!(a.body().await.1, EXPECTED[2]);
        a.cmd("DELE 1", "+OK").await;
        a.cmd("QUIT", "+OK").await;
        assert_eq!(server.count(ALICE).await, 2, "{name}");

        // Many sessions deleting everything at once: every QUIT succeeds, nothing is left.
        let mut sessions = Vec::new();
        for _ in 0..6 {
            let mut c = server.connect().await;
            c.login(ALICE, ALICE_PASS).await;
            c.cmd("DELE 1", "+OK").await;
            c.cmd("DELE 2", "+OK").await;
            sessions.push(c);
        }
        let quits = sessions.into_iter().map(|mut c| {
            tokio::spawn(async move {
                c.send("QUIT").await;
                c.expect("+OK").await
            })
        });
        for quit in quits {
            quit.await.unwrap();
        }
        assert_eq!(server.count(ALICE).await, 0, "{name}");
        let mut c = server.connect().await;
        assert_eq!(
            c.login(ALICE, ALICE_PASS).await,
            "+OK Logged in, maildrop has 0 messages (0 octets)"
        );
        c.cmd(
            "QUIT",
            "+OK pop.example.test POP3 Postbay signing off (maildrop empty)",
        )
        .await;
        server.stop().await;
    }
}
