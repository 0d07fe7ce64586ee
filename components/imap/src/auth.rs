//! Password checks and brute-force protection: every failure is answered only after a delay,
//! and clients (by IP) and accounts (by name) that fail too often within a window are refused
//! without a password check until the window passes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ImapLimits;

/// The authenticated account of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub mailbox_id: i64,
    pub address: String,
    /// The mailbox's blob directory, where APPENDs to the selected folder write.
    pub home: String,
}

#[derive(Debug)]
pub enum AuthOutcome {
    Success(User),
    /// Wrong name or password (deliberately not told apart).
    Failed,
    /// Too many recent failures for this client or account.
    Throttled,
    /// The directory could not be read; the client should retry later.
    Unavailable,
}

/// Failure counters per client IP and per user name, shared by all sessions of a server.
#[derive(Debug)]
pub struct LoginLimiter {
    per_ip: u32,
    per_user: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

/// Entries are pruned once the map grows past this, so a scan cannot exhaust memory.
const PRUNE_AT: usize = 10_000;

impl LoginLimiter {
    pub fn new(limits: &ImapLimits) -> LoginLimiter {
        LoginLimiter {
            per_ip: limits.max_failures_per_ip,
            per_user: limits.max_failures_per_user,
            window: limits.failure_window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    fn keys(ip: IpAddr, user: &str) -> [String; 2] {
        [
            format!("ip:{}", ip.to_canonical()),
            format!("user:{}", user.to_lowercase()),
        ]
    }

    /// Whether a login attempt may be checked at all.
    pub fn allowed(&self, ip: IpAddr, user: &str) -> bool {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let [ip_key, user_key] = Self::keys(ip, user);
        let over = |key: &str, max: u32| {
            counts
                .get(key)
                .is_some_and(|(start, n)| now.duration_since(*start) < self.window && *n >= max)
        };
        !(over(&ip_key, self.per_ip) || over(&user_key, self.per_user))
    }

    pub fn record_failure(&self, ip: IpAddr, user: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if counts.len() > PRUNE_AT {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        for key in Self::keys(ip, user) {
            let entry = counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }
}

/// Checks `password` for `username` against the directory.
pub async fn check_password(
    ctx: &crate::ImapContext,
    ip: IpAddr,
    username: &str,
    password: &[u8],
) -> AuthOutcome {
    if !ctx.login_limiter.allowed(ip, username) {
        tracing::warn!(%ip, username, "login refused: too many failures");
        return AuthOutcome::Throttled;
    }
    let mailbox = match ctx.store.mailbox(username).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "directory lookup failed during login");
            return AuthOutcome::Unavailable;
        }
    };
    let verified = match &mailbox {
        Some(mb) if mb.enabled => {
            let hash = mb.password_hash.clone();
            let password = password.to_vec();
            // Argon2 and bcrypt take tens of milliseconds of CPU: keep them off the reactor.
            match tokio::task::spawn_blocking(move || postbay_passwd::verify(&password, &hash))
                .await
            {
                Ok(Ok(ok)) => ok,
                Ok(Err(e)) => {
                    tracing::warn!(username, error = %e, "stored password hash is unusable");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "password verification task failed");
                    false
                }
            }
        }
        _ => false,
    };
    match mailbox {
        Some(mb) if verified => AuthOutcome::Success(User {
            mailbox_id: mb.id,
            address: mb.address,
            home: mb.home,
        }),
        _ => {
            ctx.login_limiter.record_failure(ip, username);
            tracing::info!(%ip, username, "login failed");
            tokio::time::sleep(ctx.limits.failed_login_delay).await;
            AuthOutcome::Failed
        }
    }
}

/// SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. An authorization identity other
/// than the authentication identity (proxy login) is not supported.
pub fn decode_plain(message: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut fields = message.splitn(3, |b| *b == 0);
    let authzid = fields.next()?;
    let authcid = std::str::from_utf8(fields.next()?).ok()?;
    let passwd = fields.next()?;
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        return None;
    }
    Some((authcid.to_string(), passwd.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        assert_eq!(
            decode_plain(b"\0alice@example.test\0secret"),
            Some(("alice@example.test".into(), b"secret".to_vec()))
        );
        assert_eq!(
            decode_plain(b"alice\0alice\0pw"),
            Some(("alice".into(), b"pw".to_vec()))
        );
        assert_eq!(decode_plain(b"bob\0alice\0pw"), None);
        assert_eq!(decode_plain(b"alice"), None);
    }

    #[test]
    fn limiter_counts_per_ip_and_user() {
        let limits = ImapLimits {
            max_failures_per_ip: 3,
            max_failures_per_user: 2,
            ..ImapLimits::default()
        };
        let limiter = LoginLimiter::new(&limits);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limiter.allowed(ip, "a"));
        limiter.record_failure(ip, "a");
        limiter.record_failure(ip, "a");
        assert!(
            !limiter.allowed(other, "a"),
            "user a is throttled everywhere"
        );
        assert!(limiter.allowed(ip, "b"));
        limiter.record_failure(ip, "b");
        assert!(
            !limiter.allowed(ip, "c"),
            "the IP is throttled for every user"
        );
        assert!(limiter.allowed(other, "c"));
    }
}
