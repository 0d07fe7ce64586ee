//! IMAP load benchmark: Postbay against Dovecot (or alone) with the same client code.
//!
//! ```text
//! cargo run --release -p postbay-imap --example bench -- [--clients 20] [--seconds 10]
//!     [--idle 200] [--dovecot 127.0.0.1:1143] [--rounds 1]
//! ```
//!
//! For each target it measures, in this order:
//! * logins/s: every client loops connect, LOGIN, LOGOUT;
//! * mixed ops/s: every client logs in, selects INBOX and loops APPEND, FETCH BODY.PEEK[],
//!   STORE \Seen, FETCH 1:10 (FLAGS ENVELOPE), SEARCH UNSEEN, STORE \Deleted, EXPUNGE, NOOP
//!   (the mailbox stays at 20 messages; each command is one op);
//! * memory per idle connection: `--idle` connections LOGIN, SELECT and IDLE; the server's
//!   resident memory before and after, divided by the count.
//!
//! Postbay runs in a child process (this binary with `serve`) on a temporary SQLite store,
//! so its memory is measured alone. Dovecot is the peer from shared/peers/start-peer.sh
//! (users user1..user100@example.test / pass); its memory is the sum over its `imap` and
//! `imap-login` processes. The load generator shares the machine's cores with the server:
//! with `--rounds N` the two targets take turns N times and the median of each is compared,
//! so a disturbance during one run does not decide the ratio.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const USERS: usize = 100;
const PASSWORD: &str = "pass";

struct Args {
    clients: usize,
    seconds: u64,
    idle: usize,
    dovecot: Option<SocketAddr>,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        clients: 20,
        seconds: 10,
        idle: 200,
        dovecot: None,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--clients" => a.clients = value().parse().expect("number"),
            "--seconds" => a.seconds = value().parse().expect("number"),
            "--idle" => a.idle = value().parse().expect("number"),
            "--dovecot" => a.dovecot = Some(value().parse().expect("host:port")),
            "--rounds" => a.rounds = value().parse::<usize>().expect("number").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    a.clients = a.clients.clamp(1, USERS);
    a
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().nth(1).as_deref() == Some("serve") {
        rt.block_on(serve());
        return;
    }
    rt.block_on(run(args()));
}

/// Child mode: a Postbay IMAP server on a temporary SQLite store; prints its port.
async fn serve() {
    use postbay_imap::{ImapContext, ImapLimits, ListenerSettings};
    use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
    let store = postbay_store::Store::open(&url, &dir.path().join("mail"))
        .await
        .unwrap();
    postbay_testkit::seed_domain(&store, "example.test").await;
    for i in 1..=USERS {
        let address = format!("user{i}@example.test");
        postbay_testkit::seed_mailbox(&store, &address, &format!("{{PLAIN}}{PASSWORD}")).await;
    }
    let limits = ImapLimits {
        allow_plaintext_auth: true,
        ..ImapLimits::default()
    };
    let ctx = Arc::new(ImapContext::new(store, "bench", limits));
    let listener = postbay_net::listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    let settings = ListenerSettings {
        proxy: ProxyPolicy::default(),
        gate: ConnectionGate::new(ConnectionLimits::unlimited()),
        tls: None,
        implicit_tls: false,
    };
    postbay_imap::serve(listener, ctx, settings).await;
}

struct Results {
    logins: f64,
    ops: f64,
    idle_bytes: Option<f64>,
}

async fn run(args: Args) {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).await.unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let pid = child.id().unwrap();
    println!("postbay on {addr} (pid {pid})");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("== round {round} of {}", args.rounds);
        }
        ours.push(measure("postbay", addr, &args, || rss_of_pids(&[pid])).await);
        if let Some(dovecot) = args.dovecot {
            println!("dovecot on {dovecot}");
            theirs.push(
                measure("dovecot", dovecot, &args, || {
                    rss_of_pids(&pids_named(&["imap", "imap-login"]))
                })
                .await,
            );
        }
    }
    if !theirs.is_empty() {
        let (postbay, dc) = (median(&ours), median(&theirs));
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "RATIO postbay/dovecot{}: logins {:.2}x, mixed ops {:.2}x ({:.0} vs {:.0} ops/s), memory per idle connection {}",
            if args.rounds > 1 { " (medians)" } else { "" },
            ratio(postbay.logins, dc.logins),
            ratio(postbay.ops, dc.ops),
            postbay.ops,
            dc.ops,
            match (postbay.idle_bytes, dc.idle_bytes) {
                (Some(a), Some(b)) => format!("{:.2}x", ratio(a, b)),
                _ => "n/a".into(),
            }
        );
    }
    let _ = child.kill().await;
}

/// Each figure's median over the rounds.
fn median(results: &[Results]) -> Results {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let idle: Vec<f64> = results.iter().filter_map(|r| r.idle_bytes).collect();
    Results {
        logins: mid(results.iter().map(|r| r.logins).collect()),
        ops: mid(results.iter().map(|r| r.ops).collect()),
        idle_bytes: (!idle.is_empty()).then(|| mid(idle)),
    }
}

async fn measure<F: Fn() -> Option<u64>>(
    name: &str,
    addr: SocketAddr,
    args: &Args,
    rss: F,
) -> Results {
    seed(addr, args.clients).await;
    let half = Duration::from_secs(args.seconds.max(2) / 2);
    let logins = load(addr, args.clients, half, login_loop).await;
    let ops = load(
        addr,
        args.clients,
        Duration::from_secs(args.seconds),
        mixed_loop,
    )
    .await;
    let before = rss();
    let mut idle = Vec::with_capacity(args.idle);
    for i in 0..args.idle {
        let user = format!("user{}@example.test", 1 + i % USERS);
        match idle_connection(addr, &user).await {
            Ok(c) => idle.push(c),
            Err(e) => {
                println!("{name}: idle connection {i} failed: {e}");
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss();
    let idle_bytes = match (before, after) {
        (Some(b), Some(a)) if !idle.is_empty() => {
            Some(a.saturating_sub(b) as f64 / idle.len() as f64)
        }
        _ => None,
    };
    drop(idle);
    println!(
        "RESULT {name}: logins {logins:.0}/s, mixed {ops:.0} ops/s ({} clients), idle {} connections: {}",
        args.clients,
        args.idle,
        idle_bytes
            .map(|b| format!("{:.1} KiB/connection", b / 1024.0))
            .unwrap_or_else(|| "memory n/a".into())
    );
    Results {
        logins,
        ops,
        idle_bytes,
    }
}

struct Client {
    reader: BufReader<tokio::io::ReadHalf<TcpStream>>,
    writer: tokio::io::WriteHalf<TcpStream>,
    next_tag: u64,
    exists: u32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = tokio::io::split(stream);
        let mut c = Client {
            reader: BufReader::new(r),
            writer: w,
            next_tag: 0,
            exists: 0,
        };
        let mut greeting = String::new();
        c.reader.read_line(&mut greeting).await?;
        Ok(c)
    }

    /// Sends a command (with optional literal+ payload) and reads to its tagged reply.
    async fn cmd(&mut self, command: &str, literal: Option<&[u8]>) -> std::io::Result<bool> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        let mut bytes = format!("{tag} {command}").into_bytes();
        if let Some(lit) = literal {
            bytes.extend_from_slice(format!(" {{{}+}}\r\n", lit.len()).as_bytes());
            bytes.extend_from_slice(lit);
        }
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).await?;
        let prefix = format!("{tag} ");
        let mut line = Vec::new();
        loop {
            line.clear();
            if self.reader.read_until(b'\n', &mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if let Some(n) = literal_length(&line) {
                let mut skip = vec![0u8; n];
                tokio::io::AsyncReadExt::read_exact(&mut self.reader, &mut skip).await?;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some(rest) = text.strip_prefix("* ") {
                if let Some(n) = rest.trim_end().strip_suffix(" EXISTS") {
                    self.exists = n.parse().unwrap_or(self.exists);
                } else if rest.trim_end().ends_with(" EXPUNGE") {
                    self.exists = self.exists.saturating_sub(1);
                }
            }
            if text.starts_with(&prefix) {
                return Ok(text[prefix.len()..].starts_with("OK"));
            }
        }
    }
}

fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|b| *b == b'{')?;
    std::str::from_utf8(&line[open + 1..]).ok()?.parse().ok()
}

fn message(i: u64) -> Vec<u8> {
    let body = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    format!(
        "From: Bench <bench@example.test>\r\nTo: user@example.test\r\nSubject: bench {i}\r\n\
Message-ID: <bench-{i}@example.test>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Brings every benchmark user's INBOX to 20 messages.
async fn seed(addr: SocketAddr, clients: usize) {
    for u in 1..=clients {
        let mut c = Client::connect(addr).await.unwrap();
        assert!(c
            .cmd(&format!("LOGIN user{u}@example.test {PASSWORD}"), None)
            .await
            .unwrap());
        c.cmd("SELECT INBOX", None).await.unwrap();
        if c.exists > 0 {
            c.cmd("STORE 1:* +FLAGS.SILENT (\\Deleted)", None)
                .await
                .unwrap();
            c.cmd("EXPUNGE", None).await.unwrap();
        }
        for i in 0..20 {
            c.cmd("APPEND INBOX", Some(&message(i))).await.unwrap();
        }
        c.cmd("LOGOUT", None).await.unwrap_or(false);
    }
}

type Loop = fn(SocketAddr, usize, Instant, Arc<AtomicU64>) -> futures_like::BoxFuture;

mod futures_like {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

async fn load(addr: SocketAddr, clients: usize, duration: Duration, body: Loop) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (1..=clients)
        .map(|u| tokio::spawn(body(addr, u, deadline, counter.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn login_loop(
    addr: SocketAddr,
    user: usize,
    deadline: Instant,
    ops: Arc<AtomicU64>,
) -> futures_like::BoxFuture {
    Box::pin(async move {
        while Instant::now() < deadline {
            let Ok(mut c) = Client::connect(addr).await else {
                return;
            };
            if c.cmd(&format!("LOGIN user{user}@example.test {PASSWORD}"), None)
                .await
                .unwrap_or(false)
            {
                ops.fetch_add(1, Ordering::Relaxed);
            }
            let _ = c.cmd("LOGOUT", None).await;
        }
    })
}

fn mixed_loop(
    addr: SocketAddr,
    user: usize,
    deadline: Instant,
    ops: Arc<AtomicU64>,
) -> futures_like::BoxFuture {
    Box::pin(async move {
        let Ok(mut c) = Client::connect(addr).await else {
            return;
        };
        let login = format!("LOGIN user{user}@example.test {PASSWORD}");
        if !c.cmd(&login, None).await.unwrap_or(false) {
            return;
        }
        let _ = c.cmd("SELECT INBOX", None).await;
        let mut i = 1000u64;
        while Instant::now() < deadline {
            i += 1;
            let msg = message(i);
            let step = async {
                c.cmd("APPEND INBOX", Some(&msg)).await?;
                c.cmd("NOOP", None).await?;
                let last = c.exists.max(1);
                c.cmd(&format!("FETCH {last} BODY.PEEK[]"), None).await?;
                c.cmd(&format!("STORE {last} +FLAGS (\\Seen)"), None)
                    .await?;
                c.cmd("FETCH 1:10 (FLAGS ENVELOPE)", None).await?;
                c.cmd("SEARCH UNSEEN", None).await?;
                c.cmd(&format!("STORE {last} +FLAGS.SILENT (\\Deleted)"), None)
                    .await?;
                c.cmd("EXPUNGE", None).await?;
                std::io::Result::Ok(())
            };
            if step.await.is_err() {
                return;
            }
            ops.fetch_add(8, Ordering::Relaxed);
        }
        let _ = c.cmd("LOGOUT", None).await;
    })
}

async fn idle_connection(addr: SocketAddr, user: &str) -> std::io::Result<Client> {
    let mut c = Client::connect(addr).await?;
    if !c.cmd(&format!("LOGIN {user} {PASSWORD}"), None).await? {
        return Err(std::io::Error::other("login failed"));
    }
    c.cmd("SELECT INBOX", None).await?;
    c.writer.write_all(b"idle IDLE\r\n").await?;
    let mut line = String::new();
    c.reader.read_line(&mut line).await?;
    Ok(c)
}

/// Resident memory (bytes) of the given processes, summed; processes that exited while
/// being read count as zero.
fn rss_of_pids(pids: &[u32]) -> Option<u64> {
    let mut total = 0;
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        total += kb * 1024;
    }
    Some(total)
}

fn pids_named(names: &[&str]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| names.contains(&c.trim()))
                .unwrap_or(false)
        })
        .collect()
}
