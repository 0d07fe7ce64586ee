//! Failed-login throttling per client network, shared by all sessions of a server.
//!
//! Every failure is answered only after a delay that doubles with each recent failure from
//! the same network (capped), and after too many failures within the window the network is
//! refused outright until the window has passed since its last failure. Success does not
//! reset the count: otherwise an attacker holding one valid account could launder guesses
//! against others. IPv6 clients are keyed by their /64, since one host usually owns one.
//!
//! The state is per process. Replicas each count on their own, which bounds an attacker to
//! `replicas × max_failures_per_ip` guesses per window: good enough against guessing, and no
//! database write on the login path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Networks tracked at most; past that, expired entries are pruned, and if none expired a
/// new network gets only the base delay (memory stays bounded under a spray from many IPs).
const MAX_TRACKED: usize = 100_000;

/// The numbers, taken from [`crate::Pop3Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_failures: u32,
    pub window: Duration,
}

#[derive(Debug, Default)]
pub struct AuthThrottle {
    entries: Mutex<HashMap<IpAddr, Record>>,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
}

impl AuthThrottle {
    /// `Err(retry_after)` while `ip`'s network is locked out.
    pub fn check(&self, ip: IpAddr, policy: &ThrottlePolicy, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(&key(ip)) {
            Some(r) if r.failures >= policy.max_failures => {
                let since = now.saturating_duration_since(r.last_failure);
                match policy.window.checked_sub(since) {
                    Some(left) if !left.is_zero() => Err(left),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Records a failure and returns how long the answer to it should be held back.
    pub fn failure(&self, ip: IpAddr, policy: &ThrottlePolicy, now: Instant) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key(ip);
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&key) {
            entries.retain(|_, r| now.saturating_duration_since(r.last_failure) < policy.window);
            if entries.len() >= MAX_TRACKED {
                tracing::warn!("login throttle table full; not tracking another network");
                return policy.base_delay;
            }
        }
        let record = entries.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
        });
        if now.saturating_duration_since(record.last_failure) >= policy.window {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let doublings = (record.failures - 1).min(16);
        policy
            .base_delay
            .saturating_mul(1 << doublings)
            .min(policy.max_delay)
    }
}

/// The unit of accounting: an IPv4 address, or an IPv6 /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5),
        max_failures: 4,
        window: Duration::from_secs(60),
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delays_double_then_lock_out_until_window_passes() {
        let t = AuthThrottle::default();
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..4)
            .map(|_| t.failure(a, &POLICY, t0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5]);
        assert_eq!(t.check(a, &POLICY, t0), Err(Duration::from_secs(60)));
        assert_eq!(
            t.check(a, &POLICY, t0 + Duration::from_secs(59)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(t.check(ip("192.0.2.2"), &POLICY, t0), Ok(()));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(t.check(a, &POLICY, later), Ok(()));
        // The count starts over after a quiet window.
        assert_eq!(t.failure(a, &POLICY, later), Duration::from_secs(1));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        for host in [
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::ffff:1",
            "2001:db8::9",
        ] {
            t.failure(ip(host), &POLICY, t0);
        }
        assert!(t.check(ip("2001:db8::1234"), &POLICY, t0).is_err());
        assert!(t.check(ip("2001:db8:0:1::1"), &POLICY, t0).is_ok());
        for _ in 0..4 {
            t.failure(ip("::ffff:192.0.2.7"), &POLICY, t0);
        }
        assert!(t.check(ip("192.0.2.7"), &POLICY, t0).is_err());
    }
}
