//! IMAP load benchmark: Postbay against Dovecot (or alone) with the same client code, both
//! holding `{ARGON2ID}` password hashes as a real installation does.
//!
//! ```text
//! cargo run --release -p postbay-imap --example bench -- --data DIR [--users 200]
//!     [--clients 20] [--seconds 10] [--idle 200] [--rounds 1] [--tls] [--compress]
//!     [--compress-cap N]
//!     [--dovecot 127.0.0.1:11143 --dovecot-tls 127.0.0.1:11993 --dovecot-cert cert.pem
//!      --dovecot-pid-file run/master.pid --dovecot-conf dovecot.conf]
//! ```
//!
//! `--data` is a Postbay data folder made by `postbay apply` (scripts/bench-imap writes the
//! manifests): mailboxes user1..userN@example.test whose Secret holds the cleartext `pass`,
//! so the stored hash is what the operator's reconcile writes (`{ARGON2ID}`, m=64 MiB, t=3,
//! p=1). The example cannot call postbay-passwd itself: it is not a dependency of
//! postbay-imap. Dovecot's passwd-file holds `doveadm pw -s ARGON2ID` hashes of the same
//! password for the same users.
//!
//! For each target and round it measures, in this order:
//! * fresh logins/s: every user logs in once (connect, LOGIN, LOGOUT), handed out to the
//!   clients one by one, so each login is a full Argon2id verification (Postbay restarts its
//!   server, emptying its cache of verified logins; Dovecot's auth cache is flushed);
//! * repeated logins/s: the same users again, in a loop (cache hits where there is a cache);
//! * mixed ops/s: every client logs in, selects INBOX and loops APPEND, FETCH BODY.PEEK[],
//!   STORE \Seen, FETCH 1:10 (FLAGS ENVELOPE), SEARCH UNSEEN, STORE \Deleted, EXPUNGE, NOOP
//!   (the mailbox stays at 20 messages; each command is one op);
//! * memory per idle connection: `--idle` connections LOGIN, SELECT and IDLE, in plain TCP,
//!   then with `--tls` over implicit TLS, then with `--compress` after COMPRESS DEFLATE (over
//!   TLS when `--tls` is given). The server's memory before and after, divided by the count.
//!   Postbay's cap on compressed sessions (`--compress-cap`, default the larger of `--idle`
//!   and the production default, so the whole set compresses) is printed with it.
//!
//! Postbay runs in a child process (this binary with `serve`) so its memory is measured
//! alone; it is started afresh for each idle set, because memory freed by an earlier phase
//! and kept by the allocator would otherwise be reused and hide the cost. Dovecot's memory
//! is the sum over its master process and all its descendants (one `imap` process per
//! connection, plus one `imap-login` per TLS connection acting as the TLS proxy). RSS counts
//! the shared libraries of every Dovecot process again, so PSS (shared pages split between
//! their users) is printed too and the memory ratios use PSS. The load generator shares the
//! machine's cores with the server: with `--rounds N` the two targets take turns N times and
//! the median of each is compared, so a disturbance during one run does not decide the ratio.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::TlsConnector;

const PASSWORD: &str = "pass";
/// Users the idle connections log in as: few, so that a freshly started Postbay server
/// verifies few Argon2id hashes before the measurement (each connection is its own session
/// either way).
const IDLE_USERS: usize = 20;

struct Args {
    data: Option<PathBuf>,
    users: usize,
    clients: usize,
    seconds: u64,
    idle: usize,
    rounds: usize,
    tls: bool,
    compress: bool,
    dovecot: Option<SocketAddr>,
    dovecot_tls: Option<SocketAddr>,
    dovecot_cert: Option<PathBuf>,
    dovecot_pid_file: Option<PathBuf>,
    dovecot_conf: Option<PathBuf>,
    /// Idle connections for Dovecot: every one of its logins is a full Argon2id check (its
    /// auth cache verifies the password again), so thousands take minutes per set.
    dovecot_idle: Option<usize>,
    /// Postbay's `max_compressed_sessions`; unset: enough for the idle set.
    compress_cap: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        data: None,
        users: 200,
        clients: 20,
        seconds: 10,
        idle: 200,
        rounds: 1,
        tls: false,
        compress: false,
        dovecot: None,
        dovecot_tls: None,
        dovecot_cert: None,
        dovecot_pid_file: None,
        dovecot_conf: None,
        dovecot_idle: None,
        compress_cap: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value");
        match flag.as_str() {
            "--data" => a.data = Some(value().into()),
            "--users" => a.users = value().parse().expect("number"),
            "--clients" => a.clients = value().parse().expect("number"),
            "--seconds" => a.seconds = value().parse().expect("number"),
            "--idle" => a.idle = value().parse().expect("number"),
            "--rounds" => a.rounds = value().parse::<usize>().expect("number").max(1),
            "--tls" => a.tls = true,
            "--compress" => a.compress = true,
            "--dovecot" => a.dovecot = Some(value().parse().expect("host:port")),
            "--dovecot-tls" => a.dovecot_tls = Some(value().parse().expect("host:port")),
            "--dovecot-cert" => a.dovecot_cert = Some(value().into()),
            "--dovecot-pid-file" => a.dovecot_pid_file = Some(value().into()),
            "--dovecot-conf" => a.dovecot_conf = Some(value().into()),
            "--dovecot-idle" => a.dovecot_idle = Some(value().parse().expect("number")),
            "--compress-cap" => a.compress_cap = Some(value().parse().expect("number")),
            other => panic!("unknown flag {other}"),
        }
    }
    a.users = a.users.max(1);
    a.clients = a.clients.clamp(1, a.users);
    a
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some("serve") {
        let data = PathBuf::from(argv.next().expect("serve DATA plain|tls [CAP]"));
        let tls = argv.next().as_deref() == Some("tls");
        let cap = argv.next().and_then(|c| c.parse().ok());
        rt.block_on(serve(&data, tls, cap));
        return;
    }
    rt.block_on(run(args()));
}

/// Child mode: a Postbay IMAP server on the SQLite store of `data` (as `postbay apply`
/// left it), plain and, with `tls`, implicit TLS with a self-signed certificate in
/// `data/bench-tls`, at most `cap` compressed sessions (default: production's); prints
/// "PLAIN_PORT TLS_PORT" (0 without TLS).
async fn serve(data: &Path, tls: bool, cap: Option<usize>) {
    use postbay_imap::{ImapContext, ImapLimits, ListenerSettings};
    use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
    let url = format!("sqlite://{}?mode=rwc", data.join("postbay.db").display());
    let store = postbay_store::Store::open(&url, &data.join("mail"))
        .await
        .unwrap();
    let limits = ImapLimits {
        allow_plaintext_auth: true,
        max_compressed_sessions: cap
            .unwrap_or(postbay_imap::config::DEFAULT_MAX_COMPRESSED_SESSIONS),
        ..ImapLimits::default()
    };
    // Production authenticator settings (AuthConfig::default(): hashing pool of one thread
    // per core, cache of 10,000 verified logins for 600 s).
    let ctx = Arc::new(ImapContext::new(store, "bench", limits));
    let provider = if tls {
        Some(
            TlsProvider::new(TlsSettings {
                self_signed_dir: Some(data.join("bench-tls")),
                ..TlsSettings::default()
            })
            .await
            .unwrap(),
        )
    } else {
        None
    };
    let mut ports = Vec::new();
    let mut servers = Vec::new();
    let doors = if tls { vec![false, true] } else { vec![false] };
    for implicit_tls in doors {
        let listener = postbay_net::listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        ports.push(listener.local_addr().unwrap().port());
        let settings = ListenerSettings {
            proxy: ProxyPolicy::default(),
            gate: ConnectionGate::new(ConnectionLimits::unlimited()),
            tls: provider.clone(),
            implicit_tls,
        };
        servers.push(tokio::spawn(postbay_imap::serve(
            listener,
            ctx.clone(),
            settings,
        )));
    }
    println!("{} {}", ports[0], ports.get(1).copied().unwrap_or(0));
    for s in servers {
        let _ = s.await;
    }
}

/// One server to measure: where to connect and how to read its memory.
struct Target {
    name: &'static str,
    plain: SocketAddr,
    tls: Option<(SocketAddr, Arc<ClientConfig>)>,
    /// The processes whose memory counts.
    pids: Box<dyn Fn() -> Vec<u32>>,
}

/// The Postbay child server.
struct Postbay {
    child: tokio::process::Child,
    pid: u32,
    plain: SocketAddr,
    tls: Option<SocketAddr>,
}

impl Postbay {
    async fn start(data: &Path, tls: bool, compress_cap: usize) -> Postbay {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("serve")
            .arg(data)
            .arg(if tls { "tls" } else { "plain" })
            .arg(compress_cap.to_string());
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut ports = String::new();
        out.read_line(&mut ports).await.unwrap();
        let mut ports = ports.split_whitespace().map(|p| p.parse::<u16>().unwrap());
        let at = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let plain = at(ports.next().unwrap());
        let tls = ports.next().filter(|p| *p != 0).map(at);
        let pid = child.id().unwrap();
        Postbay {
            child,
            pid,
            plain,
            tls,
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Memory per idle connection, in bytes.
#[derive(Clone, Copy)]
struct PerConnection {
    rss: f64,
    pss: f64,
    /// Connections measured.
    count: usize,
}

/// What one target measured in one round.
struct Results {
    fresh: f64,
    repeated: f64,
    ops: f64,
    /// Per idle set, in the order of [`idle_sets`].
    idle: Vec<Option<PerConnection>>,
}

/// The idle sets to measure: (label, over TLS, COMPRESS DEFLATE).
fn idle_sets(args: &Args) -> Vec<(&'static str, bool, bool)> {
    let mut sets = vec![("plain", false, false)];
    if args.tls {
        sets.push(("TLS", true, false));
    }
    if args.compress {
        sets.push((
            if args.tls { "TLS+DEFLATE" } else { "DEFLATE" },
            args.tls,
            true,
        ));
    }
    sets
}

async fn run(args: Args) {
    let data = args
        .data
        .clone()
        .expect("--data DIR (a folder made by postbay apply; see scripts/bench-imap)");
    let postbay_cert = data.join("bench-tls").join("cert.pem");
    let dovecot_tls = match (args.dovecot_tls, &args.dovecot_cert) {
        (Some(addr), Some(cert)) if args.tls => Some((addr, trusting(cert))),
        _ => None,
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("== round {round} of {}", args.rounds);
        }
        ours.push(measure_postbay(&args, &data, &postbay_cert).await);
        if let Some(plain) = args.dovecot {
            println!("dovecot on {plain}");
            if let Some(conf) = &args.dovecot_conf {
                flush_dovecot_cache(conf);
            }
            let pid_file = args.dovecot_pid_file.clone();
            let target = Target {
                name: "dovecot",
                plain,
                tls: dovecot_tls.clone(),
                pids: Box::new(move || match &pid_file {
                    Some(f) => descendants(read_pid(f)),
                    None => pids_named(&["imap", "imap-login"]),
                }),
            };
            let mut r = measure(&target, &args).await;
            r.idle = Vec::new();
            for set in idle_sets(&args) {
                r.idle.push(idle_set(&target, &args, set).await);
            }
            theirs.push(r);
        }
    }
    let postbay = median(&ours);
    report("postbay", &postbay, &args);
    if !theirs.is_empty() {
        let dc = median(&theirs);
        report("dovecot", &dc, &args);
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        let medians = if args.rounds > 1 { " (medians)" } else { "" };
        println!(
            "RATIO postbay/dovecot{medians}: fresh logins {:.2}x, repeated logins {:.2}x, mixed ops {:.2}x",
            ratio(postbay.fresh, dc.fresh),
            ratio(postbay.repeated, dc.repeated),
            ratio(postbay.ops, dc.ops),
        );
        for (i, (label, _, _)) in idle_sets(&args).into_iter().enumerate() {
            let figure = match (postbay.idle[i], dc.idle[i]) {
                (Some(a), Some(b)) => format!(
                    "{:.2}x by PSS ({:.1} vs {:.1} KiB), {:.2}x by RSS ({:.1} vs {:.1} KiB)",
                    ratio(a.pss, b.pss),
                    a.pss / 1024.0,
                    b.pss / 1024.0,
                    ratio(a.rss, b.rss),
                    a.rss / 1024.0,
                    b.rss / 1024.0
                ),
                _ => "n/a".into(),
            };
            println!(
                "RATIO postbay/dovecot{medians}: memory per idle connection ({label}) {figure}"
            );
        }
    }
}

fn report(name: &str, r: &Results, args: &Args) {
    println!(
        "RESULT {name}: fresh logins {:.1}/s, repeated logins {:.0}/s, mixed {:.0} ops/s ({} clients)",
        r.fresh, r.repeated, r.ops, args.clients
    );
    for (i, (label, _, _)) in idle_sets(args).into_iter().enumerate() {
        println!(
            "RESULT {name}: idle connections ({label}): {}",
            match r.idle[i] {
                Some(m) => format!(
                    "{} connections, {:.1} KiB/connection RSS, {:.1} KiB/connection PSS",
                    m.count,
                    m.rss / 1024.0,
                    m.pss / 1024.0
                ),
                None => "memory n/a".into(),
            }
        );
    }
}

/// Trusts exactly the certificate in `pem` (a self-signed test certificate).
fn trusting(pem: &Path) -> Arc<ClientConfig> {
    let bytes = std::fs::read(pem).unwrap_or_else(|e| panic!("{}: {e}", pem.display()));
    postbay_net::client_config_trusting(&bytes).unwrap()
}

/// One round against Postbay: a fresh server for the logins and the mixed load, then a
/// fresh one per idle set.
async fn measure_postbay(args: &Args, data: &Path, cert: &Path) -> Results {
    let server = Postbay::start(data, args.tls, compress_cap(args)).await;
    println!("postbay on {} (pid {})", server.plain, server.pid);
    let target = postbay_target(&server, cert);
    let mut results = measure(&target, args).await;
    server.stop().await;
    for set in idle_sets(args) {
        let server = Postbay::start(data, args.tls, compress_cap(args)).await;
        let target = postbay_target(&server, cert);
        results.idle.push(idle_set(&target, args, set).await);
        server.stop().await;
    }
    results
}

/// Postbay's `max_compressed_sessions` for the run: `--compress-cap`, else enough for the
/// idle set (and never below the production default).
fn compress_cap(args: &Args) -> usize {
    args.compress_cap.unwrap_or(
        args.idle
            .max(postbay_imap::config::DEFAULT_MAX_COMPRESSED_SESSIONS),
    )
}

fn postbay_target(server: &Postbay, cert: &Path) -> Target {
    let pid = server.pid;
    Target {
        name: "postbay",
        plain: server.plain,
        tls: server.tls.map(|addr| (addr, trusting(cert))),
        pids: Box::new(move || vec![pid]),
    }
}

/// Logins and mixed operations (the idle sets are measured separately).
async fn measure(t: &Target, args: &Args) -> Results {
    let half = Duration::from_secs(args.seconds.max(2) / 2);
    let (fresh, logged_in) = fresh_logins(t.plain, args.clients, args.users, half).await;
    println!("{}: {logged_in} fresh logins at {fresh:.1}/s", t.name);
    let repeated = load(
        t.plain,
        args.clients,
        half,
        Arc::new(move |client, k| 1 + (client + k * 7919) % logged_in),
        login_loop,
    )
    .await;
    seed(t.plain, args.clients).await;
    let ops = load(
        t.plain,
        args.clients,
        Duration::from_secs(args.seconds),
        Arc::new(|client, _| client + 1),
        mixed_loop,
    )
    .await;
    println!(
        "{}: repeated logins {repeated:.0}/s, mixed {ops:.0} ops/s",
        t.name
    );
    Results {
        fresh,
        repeated,
        ops,
        idle: Vec::new(),
    }
}

/// Memory per connection of `args.idle` idle connections of one kind.
async fn idle_set(
    t: &Target,
    args: &Args,
    (label, tls, compress): (&str, bool, bool),
) -> Option<PerConnection> {
    let tls = if tls {
        match &t.tls {
            Some((addr, config)) => Some((*addr, config.clone())),
            None => {
                println!("{}: no TLS port, idle set {label} skipped", t.name);
                return None;
            }
        }
    } else {
        None
    };
    let addr = tls.as_ref().map_or(t.plain, |(a, _)| *a);
    let config = tls.map(|(_, c)| c);
    // Log the idle users in once, so that the measured connections are cache hits on a
    // fresh Postbay server too and the hashing pool's 64 MiB blocks are in the baseline.
    for u in 1..=IDLE_USERS {
        let mut c = Client::connect(t.plain, None).await.ok()?;
        c.cmd(&format!("LOGIN user{u}@example.test {PASSWORD}"), None)
            .await
            .ok()?;
        let _ = c.cmd("LOGOUT", None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = memory(&(t.pids)());
    let started = Instant::now();
    let count = match t.name {
        "dovecot" => args.dovecot_idle.unwrap_or(args.idle),
        _ => args.idle,
    };
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        let user = format!("user{}@example.test", 1 + i % IDLE_USERS);
        match idle_connection(addr, config.as_ref(), &user, compress).await {
            Ok(c) => idle.push(c),
            Err(e) => {
                println!("{}: idle connection {i} ({label}) failed: {e}", t.name);
                break;
            }
        }
    }
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = memory(&(t.pids)());
    let n = idle.len();
    drop(idle);
    // Let Dovecot's per-connection processes exit before the next set's baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if n == 0 {
        return None;
    }
    let per = PerConnection {
        rss: after.rss.saturating_sub(before.rss) as f64 / n as f64,
        pss: after.pss.saturating_sub(before.pss) as f64 / n as f64,
        count: n,
    };
    let cap = if compress && t.name == "postbay" {
        format!(" (cap {} compressed sessions)", compress_cap(args))
    } else {
        String::new()
    };
    println!(
        "{}: {n} idle connections ({label}){cap} opened in {:.1} s: RSS {:.1} -> {:.1} MiB, PSS {:.1} -> {:.1} MiB, {:.1} KiB/connection RSS, {:.1} KiB PSS",
        t.name,
        opened.as_secs_f64(),
        before.rss as f64 / 1048576.0,
        after.rss as f64 / 1048576.0,
        before.pss as f64 / 1048576.0,
        after.pss as f64 / 1048576.0,
        per.rss / 1024.0,
        per.pss / 1024.0
    );
    Some(per)
}

/// Each figure's median over the rounds.
fn median(results: &[Results]) -> Results {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let sets = results[0].idle.len();
    let idle = (0..sets)
        .map(|i| {
            let got: Vec<PerConnection> = results.iter().filter_map(|r| r.idle[i]).collect();
            (!got.is_empty()).then(|| PerConnection {
                rss: mid(got.iter().map(|m| m.rss).collect()),
                pss: mid(got.iter().map(|m| m.pss).collect()),
                count: got.iter().map(|m| m.count).min().unwrap_or(0),
            })
        })
        .collect();
    Results {
        fresh: mid(results.iter().map(|r| r.fresh).collect()),
        repeated: mid(results.iter().map(|r| r.repeated).collect()),
        ops: mid(results.iter().map(|r| r.ops).collect()),
        idle,
    }
}

/// Any stream a client talks through: TCP, TLS over TCP, DEFLATE over either.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

struct Client {
    reader: BufReader<tokio::io::ReadHalf<Stream>>,
    writer: tokio::io::WriteHalf<Stream>,
    next_tag: u64,
    exists: u32,
}

impl Client {
    async fn connect(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> std::io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Stream = match tls {
            Some(config) => {
                let name = ServerName::IpAddress(addr.ip().into());
                Box::new(
                    TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?,
                )
            }
            None => Box::new(tcp),
        };
        let mut c = Client::over(stream);
        let mut greeting = String::new();
        c.reader.read_line(&mut greeting).await?;
        Ok(c)
    }

    fn over(stream: Stream) -> Client {
        let (r, w) = tokio::io::split(stream);
        Client {
            reader: BufReader::new(r),
            writer: w,
            next_tag: 0,
            exists: 0,
        }
    }

    /// COMPRESS DEFLATE (RFC 4978); from its OK on, both directions are raw DEFLATE. The
    /// client side uses postbay-net's stream wrapper (flate2 is not a dependency of
    /// postbay-imap); it is plain RFC 1951 with a sync flush per write, as any client does.
    async fn compress(mut self) -> std::io::Result<Client> {
        if !self.cmd("COMPRESS DEFLATE", None).await? {
            return Err(std::io::Error::other("COMPRESS DEFLATE refused"));
        }
        if !self.reader.buffer().is_empty() {
            return Err(std::io::Error::other("data after COMPRESS's OK"));
        }
        let stream = self.reader.into_inner().unsplit(self.writer);
        let mut c = Client::over(Box::new(postbay_net::deflate::Deflate::new(stream)));
        c.next_tag = self.next_tag;
        c.exists = self.exists;
        Ok(c)
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        // TLS and DEFLATE hold data until flushed.
        self.writer.flush().await
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
        self.send(&bytes).await?;
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
        let mut c = Client::connect(addr, None).await.unwrap();
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

/// Every user 1..=`users` logs in once (handed out one at a time to `clients` parallel
/// clients) until all did or `limit` passed: logins/s and how many users logged in.
async fn fresh_logins(
    addr: SocketAddr,
    clients: usize,
    users: usize,
    limit: Duration,
) -> (f64, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + limit;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (next, done) = (next.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= users {
                        return;
                    }
                    let Ok(mut c) = Client::connect(addr, None).await else {
                        return;
                    };
                    let login = format!("LOGIN user{}@example.test {PASSWORD}", i + 1);
                    if c.cmd(&login, None).await.unwrap_or(false) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = c.cmd("LOGOUT", None).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let attempted = next.load(Ordering::Relaxed).min(users);
    let ok = done.load(Ordering::Relaxed);
    if ok as usize != attempted {
        println!(
            "warning: {} of {attempted} fresh logins failed",
            attempted - ok as usize
        );
    }
    (ok as f64 / elapsed, attempted.max(1))
}

/// Which user a client logs in as on its k-th login: (client index, k) -> user number.
type UserOf = Arc<dyn Fn(usize, usize) -> usize + Send + Sync>;
type Loop = fn(SocketAddr, usize, UserOf, Instant, Arc<AtomicU64>) -> BoxFuture;
type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn load(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    user_of: UserOf,
    body: Loop,
) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(body(addr, c, user_of.clone(), deadline, counter.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn login_loop(
    addr: SocketAddr,
    client: usize,
    user_of: UserOf,
    deadline: Instant,
    ops: Arc<AtomicU64>,
) -> BoxFuture {
    Box::pin(async move {
        let mut k = 0;
        while Instant::now() < deadline {
            let Ok(mut c) = Client::connect(addr, None).await else {
                return;
            };
            let user = user_of(client, k);
            k += 1;
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
    client: usize,
    user_of: UserOf,
    deadline: Instant,
    ops: Arc<AtomicU64>,
) -> BoxFuture {
    Box::pin(async move {
        let Ok(mut c) = Client::connect(addr, None).await else {
            return;
        };
        let login = format!("LOGIN user{}@example.test {PASSWORD}", user_of(client, 0));
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

async fn idle_connection(
    addr: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    user: &str,
    compress: bool,
) -> std::io::Result<Client> {
    let mut c = Client::connect(addr, tls).await?;
    if !c.cmd(&format!("LOGIN {user} {PASSWORD}"), None).await? {
        return Err(std::io::Error::other("login failed"));
    }
    if compress {
        c = c.compress().await?;
    }
    c.cmd("SELECT INBOX", None).await?;
    c.send(b"idle IDLE\r\n").await?;
    let mut line = String::new();
    c.reader.read_line(&mut line).await?;
    if !line.starts_with('+') {
        return Err(std::io::Error::other(format!("IDLE refused: {line}")));
    }
    Ok(c)
}

/// Resident (RSS) and proportional (PSS) memory, in bytes.
#[derive(Clone, Copy, Default)]
struct Memory {
    rss: u64,
    pss: u64,
}

/// Memory of the given processes, summed; processes that exited while being read count as
/// zero.
fn memory(pids: &[u32]) -> Memory {
    let mut total = Memory::default();
    for pid in pids {
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            rollup
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        total.rss += field("Rss:");
        total.pss += field("Pss:");
    }
    total
}

fn read_pid(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .expect("a pid")
}

/// `root` and every process below it.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Processes by command name (when Dovecot's master pid is not known).
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

/// Empties Dovecot's auth cache, so its fresh logins are fresh in every round.
fn flush_dovecot_cache(conf: &Path) {
    let status = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(conf)
        .args(["auth", "cache", "flush"])
        .stdout(std::process::Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("warning: doveadm auth cache flush failed: {status:?}");
    }
}
