//! Postbay's one login module: IMAP, POP3 and SMTP submission check passwords here, under
//! one brute-force policy, so a guesser gains nothing by switching protocols.
//!
//! * [`LoginPolicy`] and [`Throttle`] ([`policy`]): delays that double per recent failure up
//!   to a cap, lockout per client network (IPv4 address, IPv6 /64) and per user name.
//! * A bounded hashing pool: at most `hashing_threads` verifications at once, the rest queued.
//! * A cache of successful verifications keyed by an HMAC of (user, password, stored hash).
//! * [`sasl`]: PLAIN, LOGIN and base64 responses without I/O; SCRAM-SHA-256 through
//!   [`Authenticator::scram_start`] / [`Authenticator::scram_finish`].
//!
//! ```no_run
//! # async fn demo(store: postbay_store::Store) {
//! use postbay_auth::{AuthConfig, Authenticator, LoginOutcome};
//!
//! // One per process, cloned into every protocol's context.
//! let auth = Authenticator::new(store, AuthConfig::default());
//! let ip = "192.0.2.1".parse().unwrap();
//! match auth.check_password(ip, "alice@example.test", b"secret").await {
//!     LoginOutcome::Success(mailbox) => println!("welcome {}", mailbox.address),
//!     LoginOutcome::Failed => {}                     // delay already served
//!     LoginOutcome::Throttled { retry_after: _ } => {} // locked out for now
//!     LoginOutcome::Unavailable => {}                // temporary failure, logged
//! }
//! # }
//! ```

mod cache;
pub mod policy;
mod pool;
pub mod sasl;
mod scram;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postbay_passwd::scram::UnknownUserKey;
use postbay_store::{MailboxRow, Store};

pub use policy::{network_of, LoginPolicy, Throttle};
pub use scram::{ScramExchange, ScramLookup, ScramOutcome, ScramStart};

/// User names longer than this are failed without a lookup: an address is at most 254
/// octets (RFC 5321 §4.5.3.1.3), and the failure tables must not hold megabyte keys.
pub const MAX_USERNAME_LEN: usize = 256;

/// The default hashing pool's ceiling: 4 x 64 MiB of Argon2 memory at most, whatever the
/// node's core count (the chart's mailbox pods are limited to 1 GiB).
pub const MAX_DEFAULT_HASHING_THREADS: usize = 4;

/// Everything the [`Authenticator`] is built from. `Default` is the production setting.
#[derive(Clone)]
pub struct AuthConfig {
    pub policy: LoginPolicy,
    /// Password verifications run at once (each Argon2id check holds 64 MiB). Default: the
    /// number of cores, at most [`MAX_DEFAULT_HASHING_THREADS`], which keeps hashing from
    /// starving the mail sessions, and a pod without a CPU limit on a big node from
    /// hashing its way past its memory limit in a login storm.
    pub hashing_threads: usize,
    /// How long the hashing threads' Argon2 memory stays mapped after the last
    /// verification (reused meanwhile: faulting 64 MiB in is a third of a check's CPU).
    pub hash_memory_idle: Duration,
    /// Successful verifications remembered (32 bytes of key each); 0 turns the cache off.
    pub cache_capacity: usize,
    /// How long a remembered verification stands. A password changed in the directory is
    /// seen at once anyway (the stored hash is part of the key); the TTL bounds how long a
    /// password stays usable in memory after it was last typed.
    pub cache_ttl: Duration,
    /// Secret for the made-up SCRAM credentials of unknown users. Replicas should share one
    /// (and keep it across restarts): with a random key per process, an unknown name's salt
    /// changes between replicas and gives away that the name does not exist.
    pub scram_unknown_user_secret: Option<Vec<u8>>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            policy: LoginPolicy::default(),
            hashing_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(MAX_DEFAULT_HASHING_THREADS),
            hash_memory_idle: Duration::from_secs(60),
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(600),
            scram_unknown_user_secret: None,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("policy", &self.policy)
            .field("hashing_threads", &self.hashing_threads)
            .field("hash_memory_idle", &self.hash_memory_idle)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_ttl", &self.cache_ttl)
            .field(
                "scram_unknown_user_secret",
                &self.scram_unknown_user_secret.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

/// What a password check came to.
#[derive(Debug)]
// Returned once per login and matched at once, never stored: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum LoginOutcome {
    /// The password fits an enabled mailbox.
    Success(MailboxRow),
    /// Wrong password, unknown or disabled user (not told apart, not even by timing: the
    /// answer is held back to the same delay from the start). The delay is served when this
    /// returns; the failure counts against the network and the user name.
    Failed,
    /// Locked out for `retry_after`; no password was checked. Held back by the base delay,
    /// so a locked-out client cannot spin.
    Throttled { retry_after: Duration },
    /// The directory could not be read or the stored hash is unusable: a temporary failure
    /// the client should retry, logged at error level.
    Unavailable,
}

/// Why a lookup could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("directory lookup failed: {0}")]
    Directory(#[from] postbay_store::Error),
    /// Never carries the hash itself.
    #[error("stored password of {address} is unusable: {source}")]
    UnusableHash {
        address: String,
        #[source]
        source: postbay_passwd::PasswdError,
    },
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStats {
    /// Password hashes computed.
    pub verifications: u64,
    /// Most hashes seen running at once (never above `hashing_threads`).
    pub peak_concurrent_hashes: usize,
    /// Successful verifications remembered now.
    pub cached: usize,
    /// Argon2 memory kept mapped for the next hash (released after a minute without one).
    pub hash_memory_bytes: usize,
}

/// The process's login service; cheap to clone, one shared by every protocol.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
    /// Which protocol's logins this handle checks (`imap`, `pop3`, `submission`), for the
    /// login metric; the throttle and cache behind it are shared by all.
    protocol: &'static str,
}

struct Inner {
    store: Store,
    throttle: Throttle,
    pool: pool::HashPool,
    cache: cache::VerifiedCache,
    unknown_user_key: UnknownUserKey,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("policy", self.policy())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(store: Store, config: AuthConfig) -> Authenticator {
        let unknown_user_key = match &config.scram_unknown_user_secret {
            Some(secret) => UnknownUserKey::from_secret(secret),
            None => UnknownUserKey::random(),
        };
        Authenticator {
            inner: Arc::new(Inner {
                store,
                throttle: Throttle::new(config.policy),
                pool: pool::HashPool::new(config.hashing_threads, config.hash_memory_idle),
                cache: cache::VerifiedCache::new(config.cache_capacity, config.cache_ttl),
                unknown_user_key,
            }),
            protocol: "other",
        }
    }

    /// The same authenticator (one throttle, cache and hashing pool), counting its logins
    /// under `protocol` in `postbay_logins`.
    pub fn for_protocol(&self, protocol: &'static str) -> Authenticator {
        Authenticator {
            inner: self.inner.clone(),
            protocol,
        }
    }

    pub fn policy(&self) -> &LoginPolicy {
        self.inner.throttle.policy()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn stats(&self) -> AuthStats {
        let counters = &self.inner.pool.counters;
        AuthStats {
            verifications: counters.verifications.load(Ordering::Relaxed),
            peak_concurrent_hashes: counters.peak.load(Ordering::SeqCst),
            cached: self.inner.cache.len(),
            hash_memory_bytes: self.inner.pool.held_bytes(),
        }
    }

    /// Checks `password` for `username` from a client at `ip` (after PROXY processing), under
    /// the throttle. Never logs the password.
    pub async fn check_password(
        &self,
        ip: IpAddr,
        username: &str,
        password: &[u8],
    ) -> LoginOutcome {
        let outcome = self.check(ip, username, password).await;
        let result = match outcome {
            LoginOutcome::Success(_) => "success",
            LoginOutcome::Failed => "failed",
            LoginOutcome::Throttled { .. } => "throttled",
            LoginOutcome::Unavailable => "unavailable",
        };
        postbay_telemetry::login(result, self.protocol, "password");
        outcome
    }

    async fn check(&self, ip: IpAddr, username: &str, password: &[u8]) -> LoginOutcome {
        let started = Instant::now();
        let (username, clipped) = clip(username);
        if let Some(throttled) = self.throttled(ip, username, started).await {
            return throttled;
        }
        if username.is_empty() || clipped {
            return self
                .fail(ip, username, started, "user name empty or too long")
                .await;
        }
        let mailbox = match self.inner.store.mailbox(username).await {
            Ok(Some(mailbox)) if mailbox.enabled => mailbox,
            Ok(Some(_)) => return self.fail(ip, username, started, "mailbox disabled").await,
            Ok(None) => return self.fail(ip, username, started, "no such mailbox").await,
            Err(e) => {
                tracing::error!(%ip, username, error = %e, "directory lookup failed during login");
                return LoginOutcome::Unavailable;
            }
        };
        let cache = &self.inner.cache;
        let key = cache.key(&mailbox.address, password, &mailbox.password_hash);
        if cache.hit(&key, Instant::now()) {
            tracing::debug!(%ip, user = %mailbox.address, "password verified from cache");
            return LoginOutcome::Success(mailbox);
        }
        match self
            .inner
            .pool
            .verify(password, &mailbox.password_hash)
            .await
        {
            Ok(true) => {
                cache.insert(key, Instant::now());
                LoginOutcome::Success(mailbox)
            }
            Ok(false) => self.fail(ip, username, started, "wrong password").await,
            Err(e) => {
                // A hash we cannot read is a broken directory entry: say so loudly instead
                // of passing it off as a wrong password (PasswdError never carries the hash).
                tracing::error!(%ip, user = %mailbox.address, error = %e, "login could not be checked");
                LoginOutcome::Unavailable
            }
        }
    }

    /// `Some(Throttled)`, after the base delay, while the network or the name is locked out.
    async fn throttled(&self, ip: IpAddr, username: &str, now: Instant) -> Option<LoginOutcome> {
        let retry_after = self.inner.throttle.check(ip, username, now).err()?;
        tracing::warn!(%ip, username, ?retry_after, "login refused: too many recent failures");
        tokio::time::sleep(self.policy().failure_delay).await;
        Some(LoginOutcome::Throttled { retry_after })
    }

    /// Counts a failure and holds the answer back until its delay, counted from `started`
    /// so that a slow hash and a missing user look alike.
    async fn fail(
        &self,
        ip: IpAddr,
        username: &str,
        started: Instant,
        reason: &'static str,
    ) -> LoginOutcome {
        let delay = self
            .inner
            .throttle
            .record_failure(ip, username, Instant::now());
        tracing::info!(%ip, username, reason, ?delay, "login failed");
        tokio::time::sleep_until((started + delay).into()).await;
        LoginOutcome::Failed
    }
}

/// `username` cut to [`MAX_USERNAME_LEN`] bytes (on a character boundary), and whether it
/// was cut: what goes into logs and failure tables stays small.
pub(crate) fn clip(username: &str) -> (&str, bool) {
    if username.len() <= MAX_USERNAME_LEN {
        return (username, false);
    }
    let mut end = MAX_USERNAME_LEN;
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    (&username[..end], true)
}
