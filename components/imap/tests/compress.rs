//! COMPRESS=DEFLATE's cap (`max_compressed_sessions`, decision 80): beyond it COMPRESS gets
//! `NO [LIMIT]` and the session goes on uncompressed; a closed compressed session gives its
//! permit back. The cap is per process, so SQLite is enough.

mod common;

use std::time::Duration;

use common::*;
use postbay_imap::ImapLimits;
use postbay_net::deflate::Deflate;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends `line` and reads up to its tagged reply, which it returns.
async fn cmd<S: AsyncBufRead + AsyncWrite + Unpin>(s: &mut S, line: &str) -> String {
    let tag = line.split(' ').next().unwrap().to_string();
    s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    loop {
        let mut reply = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), s.read_line(&mut reply))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(n > 0, "closed while waiting for {tag}");
        if reply.starts_with(&format!("{tag} ")) {
            return reply.trim_end().to_string();
        }
    }
}

/// A logged-in session as a line reader over the socket.
async fn login(port: u16) -> BufReader<TcpStream> {
    let mut s = BufReader::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    let mut greeting = String::new();
    s.read_line(&mut greeting).await.unwrap();
    let ok = cmd(&mut s, &format!("l LOGIN {ALICE} {ALICE_PASSWORD}")).await;
    assert!(ok.starts_with("l OK"), "{ok}");
    s
}

/// COMPRESS, then the same session over DEFLATE both ways (a NOOP to prove it).
async fn compressed(mut s: BufReader<TcpStream>) -> BufReader<Deflate<TcpStream>> {
    let ok = cmd(&mut s, "z COMPRESS DEFLATE").await;
    assert!(ok.starts_with("z OK"), "{ok}");
    assert!(s.buffer().is_empty(), "nothing may follow the OK in clear");
    let mut z = BufReader::new(Deflate::new(s.into_inner()));
    let ok = cmd(&mut z, "n NOOP").await;
    assert!(ok.starts_with("n OK"), "{ok}");
    z
}

/// A server on SQLite allowing `cap` compressed sessions; keep the first value alive.
async fn server_with_cap(cap: usize) -> (tempfile::TempDir, Env) {
    let probe = tempfile::tempdir().unwrap();
    let backend = postbay_testkit::sqlite(probe.path());
    let dir = tempfile::TempDir::new_in(probe.path()).unwrap();
    let limits = ImapLimits {
        max_compressed_sessions: cap,
        ..test_limits()
    };
    let env = Env::new(backend, dir, limits).await;
    (probe, env)
}

#[tokio::test]
async fn compress_beyond_the_cap_gets_no_limit_and_a_closed_session_frees_its_permit() {
    let (_probe, env) = server_with_cap(2).await;
    let permits = env.servers[0].ctx.compress_permits.clone();
    let port = env.port();

    let first = compressed(login(port).await).await;
    let mut second = compressed(login(port).await).await;
    assert_eq!(permits.available_permits(), 0);

    // The third is refused and stays usable in clear.
    let mut third = login(port).await;
    let no = cmd(&mut third, "c COMPRESS DEFLATE").await;
    assert!(no.starts_with("c NO [LIMIT]"), "{no}");
    let ok = cmd(&mut third, "n NOOP").await;
    assert!(ok.starts_with("n OK"), "{ok}");

    // A compressed session that goes away (here: the client just disconnects) gives its
    // permit back, and the next COMPRESS is accepted.
    drop(first);
    let ok = cmd(&mut second, "o LOGOUT").await;
    assert!(ok.starts_with("o OK"), "{ok}");
    drop(second);
    tokio::time::timeout(Duration::from_secs(10), async {
        while permits.available_permits() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("both permits back after the sessions closed");
    let mut third = compressed(third).await;
    let ok = cmd(&mut third, "s SELECT INBOX").await;
    assert!(ok.starts_with("s OK"), "{ok}");
    assert_eq!(permits.available_permits(), 1);
    drop(third);
    env.finish().await;
}

#[tokio::test]
async fn a_cap_of_zero_refuses_every_compress() {
    let (_probe, env) = server_with_cap(0).await;
    let mut s = login(env.port()).await;
    let no = cmd(&mut s, "c COMPRESS DEFLATE").await;
    assert!(no.starts_with("c NO [LIMIT]"), "{no}");
    let ok = cmd(&mut s, "n NOOP").await;
    assert!(ok.starts_with("n OK"), "{ok}");
    drop(s);
    env.finish().await;
}
