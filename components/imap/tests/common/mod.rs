//! Test harness: an in-process IMAP server (STARTTLS port and implicit-TLS port on
//! 127.0.0.1) over a temporary store — SQLite always, MariaDB too when
//! POSTBAY_TEST_MYSQL_URL is set (a uniquely named database, dropped afterwards) — seeded
//! with alice@example.test / secret and bob@example.test / hunter2. Replicas are further
//! servers with their own store handle on the same database and mail volume.
//!
//! Real clients (python3 imaplib, curl, mbsync) are found with [`peer`]: when one is missing
//! the test prints "SKIP: ..." or, with POSTBAY_REQUIRE_PEERS=1 (CI), fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postbay_imap::{serve, ImapContext, ImapLimits, ListenerSettings};
use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
use postbay_store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const ALICE: &str = "alice@example.test";
pub const ALICE_PASSWORD: &str = "secret";
pub const BOB: &str = "bob@example.test";
pub const BOB_PASSWORD: &str = "hunter2";

/// Which database a test runs against.
pub use postbay_testkit::TestDatabase as Backend;
#[allow(unused_imports)] // not every test file uses every helper
pub use postbay_testkit::{peer, require_peers};

/// The backends to test: SQLite, plus MariaDB when configured.
pub async fn backends(dir: &Path) -> Vec<Backend> {
    postbay_testkit::databases(dir, "imap").await
}

/// Test limits: plaintext login allowed (clients run on loopback), short delays.
pub fn test_limits() -> ImapLimits {
    ImapLimits {
        allow_plaintext_auth: true,
        failed_login_delay: Duration::from_millis(200),
        max_literal_size: 4 * 1024 * 1024,
        idle_poll_interval: Duration::from_millis(200),
        ..ImapLimits::default()
    }
}

/// One running server ("replica") on its own store handle.
pub struct Server {
    pub store: Store,
    pub ctx: Arc<ImapContext>,
    pub port: u16,
    pub tls_port: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A test environment: a database, a mail volume, a certificate, and servers on them.
pub struct Env {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    tls: TlsProvider,
    pub servers: Vec<Server>,
}

impl Env {
    pub async fn new(backend: Backend, dir: tempfile::TempDir, limits: ImapLimits) -> Env {
        let tls = TlsProvider::new(TlsSettings {
            self_signed_names: vec!["localhost".into()],
            self_signed_dir: Some(dir.path().join("tls")),
            ..TlsSettings::default()
        })
        .await
        .unwrap();
        let cert = dir.path().join("tls").join("cert.pem");
        let mut env = Env {
            backend,
            dir,
            cert,
            tls,
            servers: Vec::new(),
        };
        env.add_server(limits).await;
        let store = &env.servers[0].store;
        postbay_testkit::seed_domain(store, "example.test").await;
        for (address, password) in [(ALICE, ALICE_PASSWORD), (BOB, BOB_PASSWORD)] {
            postbay_testkit::seed_mailbox(store, address, &format!("{{PLAIN}}{password}")).await;
        }
        env
    }

    /// Starts another server on its own store handle (another replica).
    pub async fn add_server(&mut self, limits: ImapLimits) -> usize {
        let store = Store::open(&self.backend.url, &self.dir.path().join("mail"))
            .await
            .unwrap();
        let ctx = Arc::new(ImapContext::new(store.clone(), "imap.example.test", limits));
        let mut tasks = Vec::new();
        let mut ports = Vec::new();
        for implicit_tls in [false, true] {
            let listener = postbay_net::listener::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            ports.push(listener.local_addr().unwrap().port());
            let settings = ListenerSettings {
                proxy: ProxyPolicy::default(),
                gate: ConnectionGate::new(ConnectionLimits::unlimited()),
                tls: Some(self.tls.clone()),
                implicit_tls,
            };
            tasks.push(tokio::spawn(serve(listener, ctx.clone(), settings)));
        }
        self.servers.push(Server {
            store,
            ctx,
            port: ports[0],
            tls_port: ports[1],
            tasks,
        });
        self.servers.len() - 1
    }

    pub fn port(&self) -> u16 {
        self.servers[0].port
    }

    pub fn store(&self) -> &Store {
        &self.servers[0].store
    }

    pub async fn finish(mut self) {
        for s in self.servers.drain(..) {
            s.store.close().await;
        }
        self.backend.cleanup().await;
    }
}

/// Runs `body` against every backend.
pub async fn each_backend<F, Fut>(limits: ImapLimits, body: F)
where
    F: Fn(Env) -> Fut,
    Fut: std::future::Future<Output = Env>,
{
    let dirs: Vec<tempfile::TempDir> = Vec::new();
    drop(dirs);
    let probe = tempfile::tempdir().unwrap();
    let backends = backends(probe.path()).await;
    for backend in backends {
        let dir = if backend.name == "sqlite" {
            // The SQLite URL points into `probe`.
            tempfile::TempDir::new_in(probe.path()).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        eprintln!("--- backend {}", backend.name);
        let env = Env::new(backend, dir, limits.clone()).await;
        let env = body(env).await;
        env.finish().await;
    }
}

/// A raw IMAP client for protocol-level tests.
pub struct Raw {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
}

impl Raw {
    pub async fn connect(port: u16) -> (Raw, String) {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = tokio::io::split(stream);
        let mut raw = Raw {
            reader: BufReader::new(r),
            writer: w,
        };
        let greeting = raw.line().await;
        (raw, greeting)
    }

    pub async fn login(port: u16, user: &str, password: &str) -> Raw {
        let (mut c, _) = Raw::connect(port).await;
        let reply = c.cmd(&format!("l LOGIN {user} {password}")).await;
        assert!(reply.last().unwrap().starts_with("l OK"), "{reply:?}");
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// One line without CRLF; empty string at end of stream.
    pub async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            self.reader.read_until(b'\n', &mut line),
        )
        .await
        .expect("server answered within 20 s")
        .unwrap();
        if read == 0 {
            return String::new();
        }
        let text = String::from_utf8_lossy(&line);
        text.trim_end_matches(['\r', '\n']).to_string()
    }

    /// Lines up to and including the one starting with `tag `; literals are read as lines.
    pub async fn until_tag(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() && lines.last().is_some_and(|l: &String| l.is_empty()) {
                panic!("connection closed while waiting for {tag}: {lines:?}");
            }
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Sends `line` (a tagged command without CRLF) and reads up to its tagged reply.
    pub async fn cmd(&mut self, line: &str) -> Vec<String> {
        let tag = line.split(' ').next().unwrap().to_string();
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.until_tag(&tag).await
    }
}

/// Runs a python3 script file from tests/clients with arguments; returns stdout, panicking
/// with the output on failure.
pub async fn python(script: &str, args: &[String]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    run(
        "python3",
        std::iter::once(path.display().to_string())
            .chain(args.iter().cloned())
            .collect(),
    )
    .await
}

pub async fn run(program: &str, args: Vec<String>) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(program)
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{program} did not finish within 300 s"))
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// A small RFC 5322 message.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <{}@example.test>\r\n\r\n{body}\r\n",
        ulid::Ulid::new()
    )
    .into_bytes()
}

/// Delivers a message the way LMTP does, through `Store::deliver`.
pub async fn deliver(store: &Store, address: &str, folder: &str, bytes: Vec<u8>) -> i64 {
    use postbay_store::blobs::bytes_owned::Part;
    use postbay_store::NewMessage;
    store
        .deliver(
            address,
            folder,
            NewMessage {
                parts: vec![Part::Owned(bytes)],
                internal_date: postbay_store::now_unix(),
                flags: Vec::new(),
                delivery_key: None,
            },
        )
        .await
        .unwrap()
        .uid
}
