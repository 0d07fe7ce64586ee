//! The Authenticator against real stores (SQLite, and MariaDB when configured): outcomes,
//! delays, throttle, cache, hashing pool bound, SCRAM-SHA-256 exchanges.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use postbay_auth::{
    AuthConfig, Authenticator, LoginOutcome, LoginPolicy, ScramOutcome, ScramStart,
};
use postbay_passwd::scram::ScramError;
use postbay_passwd::{hash_with, Params, Scheme};
use postbay_store::directory::MailboxSpec;
use postbay_store::Store;
use sha2::{Digest, Sha256};

const ALICE: &str = "alice@example.test";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Short delays, generous limits: each test tightens what it is about.
fn config() -> AuthConfig {
    AuthConfig {
        policy: LoginPolicy {
            failure_delay: Duration::from_millis(50),
            max_failure_delay: Duration::from_millis(200),
            max_failures_per_network: 100,
            max_failures_per_user: 100,
            ..LoginPolicy::default()
        },
        ..AuthConfig::default()
    }
}

async fn put(store: &Store, address: &str, hash: &str, enabled: bool) {
    store
        .put_mailbox(&MailboxSpec {
            address: address.into(),
            password_hash: hash.into(),
            quota_bytes: 0,
            enabled,
            owner: None,
        })
        .await
        .unwrap();
}

/// Runs `test` once per test store, with example.test declared.
async fn each_store<F, Fut>(test: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for ts in postbay_testkit::stores("auth").await {
        postbay_testkit::seed_domain(&ts.store, "example.test").await;
        test(ts.store.clone(), ts.name).await;
        ts.cleanup().await;
    }
}

fn is_success(outcome: &LoginOutcome) -> bool {
    matches!(outcome, LoginOutcome::Success(m) if m.address == ALICE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_and_delays() {
    each_store(|store, db| async move {
        put(&store, ALICE, "{PLAIN}secret", true).await;
        put(&store, "off@example.test", "{PLAIN}secret", false).await;
        put(&store, "broken@example.test", "{MD5-CRYPT}$1$xyz", true).await;
        let auth = Authenticator::new(store, config());
        let a = ip("192.0.2.1");
        assert!(
            is_success(
                &auth
                    .check_password(a, "Alice@Example.Test", b"secret")
                    .await
            ),
            "{db}"
        );
        for (user, password, why) in [
            (ALICE, &b"wrong"[..], "wrong password"),
            ("nobody@example.test", b"secret", "unknown user"),
            ("off@example.test", b"secret", "disabled mailbox"),
            ("", b"secret", "empty name"),
        ] {
            let started = Instant::now();
            let outcome = auth.check_password(a, user, password).await;
            assert!(
                matches!(outcome, LoginOutcome::Failed),
                "{db} {why}: {outcome:?}"
            );
            assert!(
                started.elapsed() >= Duration::from_millis(50),
                "{db} {why}: delayed"
            );
        }
        let long = "x".repeat(10_000);
        assert!(matches!(
            auth.check_password(a, &long, b"x").await,
            LoginOutcome::Failed
        ));
        let outcome = auth
            .check_password(a, "broken@example.test", b"secret")
            .await;
        assert!(
            matches!(outcome, LoginOutcome::Unavailable),
            "{db}: {outcome:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_locks_out_user_and_network_across_calls() {
    each_store(|store, db| async move {
        put(&store, ALICE, "{PLAIN}secret", true).await;
        put(&store, "bob@example.test", "{PLAIN}hunter2", true).await;
        let mut cfg = config();
        cfg.policy.max_failures_per_user = 2;
        cfg.policy.max_failures_per_network = 4;
        let auth = Authenticator::new(store, cfg);
        let (a, b) = (ip("192.0.2.1"), ip("198.51.100.1"));
        // Delays double: 50, 100 ms.
        for expected in [50, 100] {
            let started = Instant::now();
            auth.check_password(a, ALICE, b"wrong").await;
            assert!(started.elapsed() >= Duration::from_millis(expected), "{db}");
        }
        // Alice is locked out from everywhere, even with her password; bob is not.
        match auth.check_password(b, ALICE, b"secret").await {
            LoginOutcome::Throttled { retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(590),
                    "{db}: {retry_after:?}"
                )
            }
            other => panic!("{db}: {other:?}"),
        }
        assert!(matches!(
            auth.check_password(a, "bob@example.test", b"hunter2").await,
            LoginOutcome::Success(_)
        ));
        // Two more failures from network a (other names) lock the network for everyone.
        auth.check_password(a, "x@example.test", b"x").await;
        auth.check_password(a, "y@example.test", b"x").await;
        assert!(matches!(
            auth.check_password(a, "bob@example.test", b"hunter2").await,
            LoginOutcome::Throttled { .. }
        ));
        assert!(matches!(
            auth.check_password(b, "bob@example.test", b"hunter2").await,
            LoginOutcome::Success(_)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_skips_hashing_expires_and_follows_the_stored_hash() {
    each_store(|store, db| async move {
        let argon = postbay_passwd::hash(b"secret", Scheme::Argon2id).unwrap();
        put(&store, ALICE, &argon, true).await;
        let mut cfg = config();
        cfg.cache_ttl = Duration::from_millis(700);
        let auth = Authenticator::new(store.clone(), cfg);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert!(
                is_success(&auth.check_password(a, ALICE, b"secret").await),
                "{db}"
            );
        }
        assert_eq!(
            auth.stats().verifications,
            1,
            "{db}: four hits skipped hashing"
        );
        assert_eq!(auth.stats().cached, 1);

        // A wrong password is hashed every time and never remembered.
        for n in 2..=3 {
            assert!(matches!(
                auth.check_password(a, ALICE, b"guess").await,
                LoginOutcome::Failed
            ));
            assert_eq!(auth.stats().verifications, n, "{db}");
        }
        assert_eq!(auth.stats().cached, 1, "{db}: failures are not cached");

        // After the TTL the password is hashed again.
        tokio::time::sleep(Duration::from_millis(750)).await;
        assert!(is_success(&auth.check_password(a, ALICE, b"secret").await));
        assert_eq!(auth.stats().verifications, 4, "{db}: expired");

        // A new stored hash (same password, rehashed) misses by itself...
        let rehashed = hash_with(b"secret", Scheme::Sha512Crypt, &Params::default()).unwrap();
        put(&store, ALICE, &rehashed, true).await;
        assert!(is_success(&auth.check_password(a, ALICE, b"secret").await));
        assert_eq!(auth.stats().verifications, 5, "{db}: changed hash missed");
        // ...and a changed password locks the old one out at once.
        put(&store, ALICE, "{PLAIN}new", true).await;
        assert!(matches!(
            auth.check_password(a, ALICE, b"secret").await,
            LoginOutcome::Failed
        ));
        // Disabling wins over a cached success.
        put(&store, ALICE, &rehashed, false).await;
        assert!(matches!(
            auth.check_password(a, ALICE, b"secret").await,
            LoginOutcome::Failed
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_pool_never_runs_more_than_its_threads() {
    let ts = postbay_testkit::stores("auth_pool").await.remove(0);
    postbay_testkit::seed_domain(&ts.store, "example.test").await;
    // A few ms per check at opt-level 3: long enough for checks to overlap.
    let slow = Params {
        sha_crypt_rounds: 30_000,
        ..Params::default()
    };
    put(
        &ts.store,
        ALICE,
        &hash_with(b"secret", Scheme::Sha512Crypt, &slow).unwrap(),
        true,
    )
    .await;
    for threads in [1, 2, 4] {
        let auth = Authenticator::new(
            ts.store.clone(),
            AuthConfig {
                hashing_threads: threads,
                cache_capacity: 0,
                ..config()
            },
        );
        let logins: Vec<_> = (0..12)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(
                    async move { auth.check_password(ip("192.0.2.1"), ALICE, b"secret").await },
                )
            })
            .collect();
        for login in logins {
            assert!(is_success(&login.await.unwrap()));
        }
        let stats = auth.stats();
        assert_eq!(stats.verifications, 12);
        assert_eq!(stats.peak_concurrent_hashes, threads, "{stats:?}");
    }
    ts.cleanup().await;
}

/// Argon2's memory is reused between checks, one work area per hashing thread at most, and
/// given back once hashing has been idle for `hash_memory_idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_memory_is_bounded_by_the_threads_and_released_when_idle() {
    let ts = postbay_testkit::stores("auth_memory").await.remove(0);
    postbay_testkit::seed_domain(&ts.store, "example.test").await;
    // m=1 MiB keeps the test quick; the stash works the same at Dovecot's 64 MiB.
    let small = Params {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        ..Params::default()
    };
    put(
        &ts.store,
        ALICE,
        &hash_with(b"secret", Scheme::Argon2id, &small).unwrap(),
        true,
    )
    .await;
    let auth = Authenticator::new(
        ts.store.clone(),
        AuthConfig {
            hashing_threads: 2,
            cache_capacity: 0,
            hash_memory_idle: Duration::from_millis(300),
            ..config()
        },
    );
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(
                async move { auth.check_password(ip("192.0.2.1"), ALICE, b"secret").await },
            )
        })
        .collect();
    for login in logins {
        assert!(is_success(&login.await.unwrap()));
    }
    let stats = auth.stats();
    assert_eq!(stats.verifications, 16);
    let held = stats.hash_memory_bytes;
    assert!((1 << 20..=2 << 20).contains(&held), "{stats:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth.stats().hash_memory_bytes != 0 {
        assert!(
            Instant::now() < deadline,
            "hashing memory kept: {:?}",
            auth.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A later login maps it again and still succeeds.
    assert!(is_success(
        &auth.check_password(ip("192.0.2.1"), ALICE, b"secret").await
    ));
    assert_eq!(auth.stats().hash_memory_bytes, 1 << 20);
    ts.cleanup().await;
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 with one output block (RFC 5802 `Hi`).
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out
}

/// A client's side of SCRAM-SHA-256 (RFC 5802 §3), for the test only.
struct Client {
    bare: String,
    password: Vec<u8>,
    server_key: [u8; 32],
    auth_message: String,
}

impl Client {
    fn first(user: &str, password: &[u8]) -> (Client, String) {
        let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let client = Client {
            bare: bare.clone(),
            password: password.to_vec(),
            server_key: [0; 32],
            auth_message: String::new(),
        };
        (client, format!("n,,{bare}"))
    }

    fn last(&mut self, server_first: &str) -> String {
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|f| f.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        let (nonce, salt, iterations) =
            (field("r="), B64.decode(field("s=")).unwrap(), field("i="));
        let salted = hi(&self.password, &salt, iterations.parse().unwrap());
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        self.server_key = hmac(&salted, b"Server Key");
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn server_signature(&self) -> String {
        format!(
            "v={}",
            B64.encode(hmac(&self.server_key, self.auth_message.as_bytes()))
        )
    }
}

async fn scram(auth: &Authenticator, user: &str, password: &[u8]) -> (ScramOutcome, String) {
    let (mut client, first) = Client::first(user, password);
    let ScramStart::Challenge {
        exchange,
        server_first,
    } = auth.scram_start(ip("192.0.2.9"), first.as_bytes()).await
    else {
        panic!("no challenge");
    };
    let last = client.last(&server_first);
    let outcome = auth
        .scram_finish(ip("192.0.2.9"), exchange, last.as_bytes())
        .await;
    (outcome, client.server_signature())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_exchange_through_the_authenticator() {
    each_store(|store, db| async move {
        let stored = postbay_passwd::hash(b"pencil", Scheme::ScramSha256).unwrap();
        assert!(stored.starts_with("{SCRAM-SHA-256}4096,"));
        put(&store, ALICE, &stored, true).await;
        put(&store, "off@example.test", &stored, false).await;
        put(&store, "argon@example.test", "{PLAIN}pencil", true).await;
        let mut cfg = config();
        cfg.policy.max_failures_per_user = 2;
        let auth = Authenticator::new(store, cfg);

        let lookup = auth.scram_credential(ALICE).await.unwrap();
        assert_eq!(lookup.mailbox.unwrap().address, ALICE);
        assert_eq!(lookup.credential.unwrap().iterations(), 4096);
        let lookup = auth.scram_credential("off@example.test").await.unwrap();
        assert!(
            lookup.mailbox.is_none() && lookup.credential.is_none(),
            "{db}: disabled"
        );
        let lookup = auth.scram_credential("argon@example.test").await.unwrap();
        assert!(
            lookup.mailbox.is_some() && lookup.credential.is_none(),
            "{db}: other scheme"
        );

        // The right password: logged in, and the server proves it knows the credential.
        let (outcome, expected) = scram(&auth, ALICE, b"pencil").await;
        match outcome {
            ScramOutcome::Success {
                mailbox,
                server_final,
            } => {
                assert_eq!(mailbox.address, ALICE);
                assert_eq!(server_final, expected, "{db}: server signature");
            }
            other => panic!("{db}: {other:?}"),
        }
        // PLAIN-style checks work against the SCRAM row too.
        assert!(is_success(
            &auth.check_password(ip("192.0.2.9"), ALICE, b"pencil").await
        ));

        // No SCRAM login for disabled, unknown or non-SCRAM users, even with the password.
        for user in [
            "off@example.test",
            "nobody@example.test",
            "argon@example.test",
        ] {
            let (outcome, _) = scram(&auth, user, b"pencil").await;
            assert!(
                matches!(outcome, ScramOutcome::Failed(ScramError::InvalidProof)),
                "{db} {user}: {outcome:?}"
            );
        }
        // Wrong proofs count like wrong passwords: two lock alice out, for PLAIN as well.
        for _ in 0..2 {
            let started = Instant::now();
            let (outcome, _) = scram(&auth, ALICE, b"wrong").await;
            assert!(matches!(
                outcome,
                ScramOutcome::Failed(ScramError::InvalidProof)
            ));
            assert!(
                started.elapsed() >= Duration::from_millis(50),
                "{db}: delayed"
            );
        }
        assert!(matches!(
            auth.scram_start(ip("192.0.2.9"), format!("n,,n={ALICE},r=abc").as_bytes())
                .await,
            ScramStart::Throttled { .. }
        ));
        assert!(matches!(
            auth.check_password(ip("192.0.2.10"), ALICE, b"pencil")
                .await,
            LoginOutcome::Throttled { .. }
        ));
        assert!(matches!(
            auth.scram_start(ip("192.0.2.9"), b"not scram").await,
            ScramStart::Malformed(_)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_key_from_configured_secret_is_shared_by_replicas() {
    each_store(|store, db| async move {
        let replica = || {
            Authenticator::new(
                store.clone(),
                AuthConfig {
                    scram_unknown_user_secret: Some(b"shared secret".to_vec()),
                    ..config()
                },
            )
        };
        let salt = |auth: Authenticator| async move {
            let ScramStart::Challenge { server_first, .. } = auth
                .scram_start(ip("192.0.2.1"), b"n,,n=ghost@example.test,r=abc")
                .await
            else {
                panic!("no challenge");
            };
            server_first.split(',').nth(1).unwrap().to_string()
        };
        assert_eq!(salt(replica()).await, salt(replica()).await, "{db}");
        let random = Authenticator::new(store.clone(), config());
        assert_ne!(salt(random).await, salt(replica()).await, "{db}");
    })
    .await;
}
