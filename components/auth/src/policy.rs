//! The one brute-force policy of every protocol, and the failure tables that apply it.
//!
//! Every failed login is answered only after a delay that doubles with each recent failure
//! (of the client's network or of the user name, whichever has more), up to a cap. After too
//! many failures within the window, the network or the user name is locked out: refused
//! without a password check until a quiet `failure_window` has passed since its last
//! failure. A success resets nothing, or an attacker holding one valid account could launder
//! guesses against others between two good logins. IPv6 clients are counted per /64, since
//! one host usually owns one.
//!
//! The tables are per process: replicas count on their own, which bounds an attacker to
//! `replicas × max_failures_per_network` guesses per window, with no database write on the
//! login path.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Doublings of the delay stop here; `failure_delay × 2^16` is past any sane cap anyway.
const MAX_DOUBLINGS: u32 = 16;

/// The numbers. `Default` is the production setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Delay of the answer to the first recent failure. Dovecot's `auth_failure_delay` is
    /// 2 s, and clients are used to it.
    pub failure_delay: Duration,
    /// Cap of the doubling delay: long enough to slow a guesser to a crawl, short enough
    /// that a client's own timeout (often 30-60 s) does not fire first.
    pub max_failure_delay: Duration,
    /// Failures from one network (IPv4 address, IPv6 /64) before it is locked out.
    pub max_failures_per_network: u32,
    /// Failures for one user name (from anywhere) before it is locked out. Lower than the
    /// network limit: one account sees fewer honest typos than a NAT full of users.
    pub max_failures_per_user: u32,
    /// A key's count starts over after this long without a failure, and a lockout lasts
    /// this long after the last failure.
    pub failure_window: Duration,
    /// Keys tracked at most per table (networks, user names), so a spray from many
    /// addresses or names cannot exhaust memory. About 100 bytes per key.
    pub max_tracked: usize,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            failure_delay: Duration::from_secs(2),
            max_failure_delay: Duration::from_secs(15),
            max_failures_per_network: 20,
            max_failures_per_user: 10,
            failure_window: Duration::from_secs(600),
            max_tracked: 100_000,
        }
    }
}

impl LoginPolicy {
    /// The delay of the answer to the `failures`-th recent failure (1 for the first).
    pub fn delay_for(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        self.failure_delay
            .saturating_mul(1 << doublings)
            .min(self.max_failure_delay)
    }
}

/// The unit of accounting for a client: an IPv4 address (IPv4-mapped IPv6 counts as IPv4),
/// or an IPv6 /64.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// The key of a user name: the store's canonical form, so `Alice@X` and `alice@x` share one
/// count as they share one mailbox.
pub fn user_key(username: &str) -> String {
    postbay_store::directory::canonical_address(username)
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
}

impl Record {
    fn live(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_failure) < window
    }
}

#[derive(Debug)]
struct Table<K> {
    limit: u32,
    entries: HashMap<K, Record>,
}

impl<K: Hash + Eq> Table<K> {
    fn new(limit: u32) -> Self {
        Table {
            limit,
            entries: HashMap::new(),
        }
    }

    /// `Some(time left)` while `key` is locked out.
    fn locked(&self, key: &K, now: Instant, window: Duration) -> Option<Duration> {
        let r = self.entries.get(key)?;
        if r.failures < self.limit {
            return None;
        }
        let left = window.checked_sub(now.saturating_duration_since(r.last_failure))?;
        (!left.is_zero()).then_some(left)
    }

    /// Counts a failure; the key's recent failures, or `None` when the table is full of
    /// locked-out keys and this new one is not tracked.
    fn record(&mut self, key: K, now: Instant, policy: &LoginPolicy) -> Option<u32> {
        if self.entries.len() >= policy.max_tracked && !self.entries.contains_key(&key) {
            self.prune(now, policy);
            if self.entries.len() >= policy.max_tracked {
                return None;
            }
        }
        let r = self.entries.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
        });
        if !r.live(now, policy.failure_window) {
            r.failures = 0;
        }
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        Some(r.failures)
    }

    /// Drops expired keys; if that frees nothing, also keys below the lockout, which only
    /// cost their victims some delay. Locked-out keys stay: forgetting them would lift the
    /// lockout an attacker is under.
    fn prune(&mut self, now: Instant, policy: &LoginPolicy) {
        let window = policy.failure_window;
        self.entries.retain(|_, r| r.live(now, window));
        if self.entries.len() >= policy.max_tracked {
            let limit = self.limit;
            self.entries.retain(|_, r| r.failures >= limit);
        }
    }
}

#[derive(Debug)]
struct Tables {
    networks: Table<IpAddr>,
    users: Table<String>,
}

/// The failure counts of one process, shared by every protocol's sessions.
#[derive(Debug)]
pub struct Throttle {
    policy: LoginPolicy,
    tables: Mutex<Tables>,
}

impl Throttle {
    pub fn new(policy: LoginPolicy) -> Throttle {
        Throttle {
            tables: Mutex::new(Tables {
                networks: Table::new(policy.max_failures_per_network),
                users: Table::new(policy.max_failures_per_user),
            }),
            policy,
        }
    }

    pub fn policy(&self) -> &LoginPolicy {
        &self.policy
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err(retry_after)` while `ip`'s network or `username` is locked out.
    pub fn check(&self, ip: IpAddr, username: &str, now: Instant) -> Result<(), Duration> {
        let window = self.policy.failure_window;
        let t = self.tables();
        let network = t.networks.locked(&network_of(ip), now, window);
        let user = t.users.locked(&user_key(username), now, window);
        match network.max(user) {
            Some(left) => Err(left),
            None => Ok(()),
        }
    }

    /// Counts a failure against both keys; returns how long its answer is held back.
    pub fn record_failure(&self, ip: IpAddr, username: &str, now: Instant) -> Duration {
        let mut t = self.tables();
        let network = t.networks.record(network_of(ip), now, &self.policy);
        let user = t.users.record(user_key(username), now, &self.policy);
        if network.is_none() || user.is_none() {
            tracing::warn!(
                untracked_network = network.is_none(),
                untracked_user = user.is_none(),
                "login failure table full of locked-out keys; not tracking a new one"
            );
        }
        let failures = network.unwrap_or(1).max(user.unwrap_or(1));
        self.policy.delay_for(failures)
    }

    /// Keys tracked now: (networks, user names).
    pub fn tracked(&self) -> (usize, usize) {
        let t = self.tables();
        (t.networks.entries.len(), t.users.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LoginPolicy = LoginPolicy {
        failure_delay: Duration::from_secs(1),
        max_failure_delay: Duration::from_secs(5),
        max_failures_per_network: 4,
        max_failures_per_user: 3,
        failure_window: Duration::from_secs(60),
        max_tracked: 1000,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let table: Vec<(u32, u64)> = vec![(0, 1), (1, 1), (2, 2), (3, 4), (4, 5), (40, 5)];
        for (failures, delay) in table {
            assert_eq!(POLICY.delay_for(failures), secs(delay), "{failures}");
        }
        let huge = LoginPolicy {
            max_failure_delay: Duration::MAX,
            ..POLICY
        };
        assert_eq!(huge.delay_for(u32::MAX), secs(1 << 16), "doublings stop");
    }

    #[test]
    fn per_network_doubling_lockout_and_its_end() {
        let t = Throttle::new(POLICY);
        let t0 = Instant::now();
        // Four different user names from one address: the network's count drives the delay.
        let delays: Vec<u64> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| t.record_failure(ip("192.0.2.1"), u, t0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5]);
        assert_eq!(t.check(ip("192.0.2.1"), "e", t0), Err(secs(60)));
        assert_eq!(t.check(ip("192.0.2.1"), "e", t0 + secs(59)), Err(secs(1)));
        assert_eq!(t.check(ip("192.0.2.2"), "e", t0), Ok(()), "other address");
        assert_eq!(
            t.check(ip("192.0.2.1"), "e", t0 + secs(60)),
            Ok(()),
            "ended"
        );
        // After a quiet window the count starts over.
        assert_eq!(
            t.record_failure(ip("192.0.2.1"), "e", t0 + secs(60)),
            secs(1)
        );
    }

    #[test]
    fn per_user_lockout_from_anywhere_names_folded() {
        let t = Throttle::new(POLICY);
        let t0 = Instant::now();
        let delays: Vec<u64> = ["192.0.2.1", "198.51.100.1", "203.0.113.1"]
            .iter()
            .map(|a| t.record_failure(ip(a), "Bob@Example.Test", t0).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4], "the user's count drives the delay");
        assert_eq!(
            t.check(ip("192.0.2.99"), "bob@example.test", t0),
            Err(secs(60))
        );
        assert_eq!(t.check(ip("192.0.2.99"), "alice@example.test", t0), Ok(()));
        // Success resets nothing: there is no call for it, and the lockout stands.
        assert!(t
            .check(ip("192.0.2.1"), "bob@example.test", t0 + secs(30))
            .is_err());
        assert!(t
            .check(ip("192.0.2.1"), "bob@example.test", t0 + secs(60))
            .is_ok());
    }

    #[test]
    fn failures_inside_the_window_keep_counting() {
        let t = Throttle::new(POLICY);
        let t0 = Instant::now();
        for i in 0..3 {
            t.record_failure(ip("192.0.2.1"), &format!("u{i}"), t0 + secs(50 * i));
        }
        // 50 s apart: each within the window of the one before, so the count is 3.
        assert_eq!(
            t.record_failure(ip("192.0.2.1"), "u9", t0 + secs(150)),
            secs(5)
        );
        assert!(t.check(ip("192.0.2.1"), "x", t0 + secs(151)).is_err());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = Throttle::new(POLICY);
        let t0 = Instant::now();
        for (i, host) in [
            "2001:db8::1",
            "2001:db8::2",
            "2001:db8::ffff:1",
            "2001:db8::9",
        ]
        .iter()
        .enumerate()
        {
            t.record_failure(ip(host), &format!("user{i}"), t0);
        }
        assert!(t.check(ip("2001:db8::1234:5678"), "x", t0).is_err());
        assert!(t.check(ip("2001:db8:0:1::1"), "x", t0).is_ok(), "next /64");
        for i in 0..4 {
            t.record_failure(ip("::ffff:192.0.2.7"), &format!("v{i}"), t0);
        }
        assert!(t.check(ip("192.0.2.7"), "x", t0).is_err());
        assert_eq!(network_of(ip("2001:db8::1")), ip("2001:db8::"));
        assert_eq!(network_of(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn pruning_keeps_memory_bounded_and_lockouts_in_force() {
        let policy = LoginPolicy {
            max_tracked: 4,
            max_failures_per_user: 100,
            ..POLICY
        };
        let t = Throttle::new(policy);
        let t0 = Instant::now();
        for i in 1..=4 {
            t.record_failure(ip(&format!("192.0.2.{i}")), "u", t0);
        }
        assert_eq!(t.tracked(), (4, 1));
        // Full of live, unlocked networks: they are dropped for the newcomer.
        t.record_failure(ip("192.0.2.5"), "u", t0);
        assert_eq!(t.tracked().0, 1);
        // Lock out four networks, then a fifth arrives: the locked ones stay, and the
        // newcomer is not tracked (it gets the delay of a first failure).
        let t = Throttle::new(LoginPolicy {
            max_failures_per_user: 1000,
            ..policy
        });
        for i in 1..=4 {
            for n in 0..4 {
                t.record_failure(ip(&format!("192.0.2.{i}")), &format!("n{n}"), t0);
            }
        }
        assert_eq!(t.tracked().0, 4);
        assert_eq!(t.record_failure(ip("192.0.2.5"), "fresh", t0), secs(1));
        assert_eq!(t.tracked().0, 4);
        for i in 1..=4 {
            assert!(t.check(ip(&format!("192.0.2.{i}")), "x", t0).is_err());
        }
        // Once the window has passed, expired keys make room again.
        let later = t0 + secs(61);
        t.record_failure(ip("192.0.2.5"), "fresh", later);
        assert_eq!(t.tracked().0, 1);
    }
}
