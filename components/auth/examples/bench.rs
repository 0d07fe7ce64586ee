//! Logins per second for one user logging in again and again with an `{ARGON2ID}` hash as
//! the operator stores it (Dovecot's parameters: m=64 MiB, t=3, p=1), with and without the
//! cache of verified logins. SQLite store in a temporary directory.
//!
//! `cargo run --release -p postbay-auth --example bench` (a debug build optimises the
//! hashing crates too, so its figures are close).

use std::time::{Duration, Instant};

use postbay_auth::{AuthConfig, Authenticator, LoginOutcome};
use postbay_store::directory::MailboxSpec;
use postbay_store::Store;

const USER: &str = "bench@example.test";

/// CPU seconds this process has used (user + system), from /proc/self/stat: a figure for
/// the cost of a check that a busy machine does not distort as much as wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn run(auth: &Authenticator, logins: usize, parallel: usize) -> f64 {
    let ip = "192.0.2.1".parse().unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..parallel)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move {
                for _ in 0..logins / parallel {
                    let outcome = auth.check_password(ip, USER, b"correct horse").await;
                    assert!(matches!(outcome, LoginOutcome::Success(_)), "{outcome:?}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("login task");
    }
    (logins / parallel * parallel) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let store = Store::open(&url, &dir.path().join("mail"))
        .await
        .expect("store");
    postbay_testkit::seed_domain(&store, "example.test").await;
    let hash = postbay_passwd::hash(b"correct horse", postbay_passwd::Scheme::Argon2id)
        .expect("argon2id hash");
    store
        .put_mailbox(&MailboxSpec {
            address: USER.into(),
            password_hash: hash,
            quota_bytes: 0,
            enabled: true,
            owner: None,
        })
        .await
        .expect("mailbox");

    let threads = AuthConfig::default().hashing_threads;
    println!("{{ARGON2ID}} m=64MiB t=3 p=1, hashing_threads={threads}, SQLite");
    for parallel in [1, 8] {
        let uncached = Authenticator::new(
            store.clone(),
            AuthConfig {
                cache_capacity: 0,
                ..AuthConfig::default()
            },
        );
        let cpu = cpu_seconds();
        let rate = run(&uncached, 40, parallel).await;
        let per_hash = (cpu_seconds() - cpu) * 1000.0 / uncached.stats().verifications as f64;
        println!(
            "without cache, {parallel} client(s): {rate:>9.1} logins/s ({per_hash:.1} ms CPU per check)"
        );
        let cached = Authenticator::new(
            store.clone(),
            AuthConfig {
                cache_ttl: Duration::from_secs(600),
                ..AuthConfig::default()
            },
        );
        let rate = run(&cached, 4000, parallel).await;
        let hashes = cached.stats().verifications;
        println!("with cache,    {parallel} client(s): {rate:>9.1} logins/s ({hashes} hash(es))");
    }
    store.close().await;
}
