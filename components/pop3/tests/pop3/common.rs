//! The test harness: a real POP3 server on 127.0.0.1:0 (plain with STLS, and implicit TLS)
//! over a temporary store, seeded through `Store::deliver`, plus a raw line client and the
//! lookup of external clients.
//!
//! Backends: SQLite always; MariaDB too when POSTBAY_TEST_MYSQL_URL is set (a uniquely named
//! database, dropped at the end). With POSTBAY_REQUIRE_PEERS=1 a missing MariaDB or client
//! binary fails the test instead of skipping it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
use postbay_pop3::{ListenerSettings, PlaintextAuth, Pop3Context, Pop3Limits};
use postbay_store::blobs::bytes_owned::Part;
use postbay_store::NewMessage;
use postbay_store::{FolderInfo, Store};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PASS: &str = "secret";
/// Has a real SHA512-CRYPT hash; the password has spaces, which PASS must keep.
pub const BOB: &str = "bob@example.test";
pub const BOB_PASS: &str = "two words pass";

/// Seeded into alice's INBOX in this order: dot-stuffing, bare LF, no final newline.
pub const MESSAGES: [&[u8]; 3] = [
    b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: first\r\n\r\nHello Alice.\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    b"From: b@remote.test\nSubject: second\n\nline one\nline two\nline three\n",
    b"Subject: third\r\n\r\nno newline at the end",
];

/// What a client must receive for each of [`MESSAGES`] once dot-stuffing is undone.
pub const EXPECTED: [&[u8]; 3] = [
    MESSAGES[0],
    b"From: b@remote.test\r\nSubject: second\r\n\r\nline one\r\nline two\r\nline three\r\n",
    b"Subject: third\r\n\r\nno newline at the end\r\n",
];

/// The path of a client program, or `None` (after saying why) when the test should skip.
pub fn client(name: &str) -> Option<PathBuf> {
    postbay_testkit::peer(name)
}

#[derive(Clone)]
pub enum Backend {
    Sqlite,
    MariaDb(String),
}

pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if let Some(server) = postbay_testkit::mariadb_server() {
        out.push(Backend::MariaDb(server));
    }
    out
}

/// Limits with short delays, so failure paths run in milliseconds.
pub fn test_limits() -> Pop3Limits {
    Pop3Limits {
        failure_delay: Duration::from_millis(20),
        max_failure_delay: Duration::from_millis(100),
        ..Pop3Limits::default()
    }
}

pub struct Server {
    pub backend: &'static str,
    pub store: Store,
    /// Plaintext with STLS (port 110 style).
    pub plain: SocketAddr,
    /// Implicit TLS (port 995 style).
    pub tls: SocketAddr,
    pub cert_pem: PathBuf,
    _dir: tempfile::TempDir,
    database: postbay_testkit::TestDatabase,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// A seeded server with the test limits and the default plaintext policy (loopback ok).
    pub async fn start(backend: &Backend) -> Server {
        Server::start_with(backend, test_limits(), PlaintextAuth::LoopbackOnly).await
    }

    pub async fn start_with(
        backend: &Backend,
        limits: Pop3Limits,
        policy: PlaintextAuth,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database = match backend {
            Backend::Sqlite => postbay_testkit::sqlite(dir.path()),
            Backend::MariaDb(server) => postbay_testkit::mariadb(server, "pop3").await,
        };
        let store = Store::open(&database.url, &dir.path().join("mail"))
            .await
            .expect("open the test store");
        seed(&store).await;

        let tls_dir = dir.path().join("tls");
        let tls_provider = TlsProvider::new(TlsSettings {
            self_signed_names: vec!["localhost".into()],
            self_signed_dir: Some(tls_dir.clone()),
            ..TlsSettings::default()
        })
        .await
        .unwrap();
        let ctx = Arc::new(
            Pop3Context::new(store.clone(), "pop.example.test", limits).with_plaintext_auth(policy),
        );
        let settings = ListenerSettings {
            proxy: ProxyPolicy {
                trusted: vec![],
                required: false,
            },
            gate: ConnectionGate::new(ConnectionLimits {
                max_connections: 100,
                max_per_ip: 50,
            }),
            tls: Some(tls_provider),
            implicit_tls: false,
        };
        let plain_listener = postbay_net::listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let tls_listener = postbay_net::listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let plain = plain_listener.local_addr().unwrap();
        let tls = tls_listener.local_addr().unwrap();
        let tasks = vec![
            tokio::spawn(postbay_pop3::serve(
                plain_listener,
                ctx.clone(),
                settings.clone(),
            )),
            tokio::spawn(postbay_pop3::serve(
                tls_listener,
                ctx.clone(),
                ListenerSettings {
                    implicit_tls: true,
                    ..settings
                },
            )),
        ];
        Server {
            backend: database.name,
            store,
            plain,
            tls,
            cert_pem: tls_dir.join("cert.pem"),
            _dir: dir,
            database,
            tasks,
        }
    }

    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.store.close().await;
        self.database.cleanup().await;
    }

    pub async fn inbox(&self, address: &str) -> FolderInfo {
        let mailbox = self.store.mailbox(address).await.unwrap().unwrap();
        self.store
            .folder(mailbox.id, "INBOX")
            .await
            .unwrap()
            .unwrap()
    }

    /// The UIDL ids the server must show, from the store's own numbers.
    pub async fn expected_uidls(&self, address: &str) -> Vec<String> {
        let inbox = self.inbox(address).await;
        let messages = self.store.messages(inbox.id).await.unwrap();
        messages
            .iter()
            .map(|m| format!("{}.{}", inbox.uidvalidity, m.uid))
            .collect()
    }

    pub async fn count(&self, address: &str) -> i64 {
        self.store.count_messages(address, "INBOX").await.unwrap()
    }

    pub async fn deliver(&self, address: &str, message: &[u8]) {
        deliver(&self.store, address, message).await;
    }

    pub async fn connect(&self) -> LineClient<TcpStream> {
        LineClient::connect(self.plain).await
    }
}

async fn seed(store: &Store) {
    postbay_testkit::seed_domain(store, "example.test").await;
    let bob_hash =
        postbay_passwd::hash(BOB_PASS.as_bytes(), postbay_passwd::Scheme::Sha512Crypt).unwrap();
    assert!(bob_hash.starts_with("{SHA512-CRYPT}$6$"), "{bob_hash}");
    for (address, hash) in [
        (ALICE, format!("{{PLAIN}}{ALICE_PASS}")),
        (BOB, bob_hash),
        ("carol@example.test", "{PLAIN}carol".to_string()),
    ] {
        postbay_testkit::seed_mailbox(store, address, &hash).await;
    }
    for message in MESSAGES {
        deliver(store, ALICE, message).await;
    }
    deliver(store, BOB, b"Subject: for bob\r\n\r\nhi bob\r\n").await;
}

pub async fn deliver(store: &Store, address: &str, message: &[u8]) {
    store
        .deliver(
            address,
            "INBOX",
            NewMessage {
                parts: vec![Part::Owned(message.to_vec())],
                internal_date: postbay_store::now_unix(),
                flags: Vec::new(),
                delivery_key: None,
            },
        )
        .await
        .unwrap();
}

/// A raw POP3 client for transcripts: send a line, read a status line or a multi-line body.
pub struct LineClient<S> {
    reader: BufReader<S>,
}

impl LineClient<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> LineClient<TcpStream> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut client = LineClient::new(stream);
        client.expect("+OK").await;
        client
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineClient<S> {
    pub fn new(stream: S) -> LineClient<S> {
        LineClient {
            reader: BufReader::new(stream),
        }
    }

    pub fn into_inner(self) -> S {
        self.reader.into_inner()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
    }

    /// The next line without CRLF; `None` at end of stream. Times out after 10 s.
    pub async fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(
            Duration::from_secs(10),
            self.reader.read_until(b'\n', &mut buf),
        )
        .await
        .expect("server did not answer within 10 s")
        .unwrap_or(0);
        if n == 0 {
            return None;
        }
        assert!(buf.ends_with(b"\r\n"), "line without CRLF: {buf:?}");
        buf.truncate(buf.len() - 2);
        Some(String::from_utf8(buf).unwrap())
    }

    /// Reads a status line and checks it starts with `prefix`; returns it.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await.expect("connection closed");
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Sends `command` and checks the status line.
    pub async fn cmd(&mut self, command: &str, prefix: &str) -> String {
        self.send(command).await;
        self.expect(prefix).await
    }

    /// Reads a multi-line body up to the `.` line, undoing the byte-stuffing; raw lines kept.
    pub async fn body(&mut self) -> (Vec<String>, Vec<u8>) {
        let mut raw = Vec::new();
        let mut content = Vec::new();
        loop {
            let line = self
                .line()
                .await
                .expect("connection closed inside a multi-line response");
            if line == "." {
                return (raw, content);
            }
            content.extend_from_slice(line.strip_prefix('.').unwrap_or(&line).as_bytes());
            content.extend_from_slice(b"\r\n");
            raw.push(line);
        }
    }

    pub async fn login(&mut self, user: &str, password: &str) -> String {
        self.cmd(&format!("USER {user}"), "+OK").await;
        self.cmd(&format!("PASS {password}"), "+OK").await
    }

    /// Asserts that the server closes the connection without saying more.
    pub async fn expect_closed(&mut self) {
        assert_eq!(self.line().await, None, "connection should be closed");
    }
}
