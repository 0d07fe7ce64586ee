//! Successful verifications, remembered for a while so that a client logging in again and
//! again (phones polling POP3, a webmail opening an IMAP connection per request) does not
//! pay an Argon2 hash (tens of ms and 64 MiB) each time.
//!
//! An entry is only a 32-byte HMAC-SHA256, under a secret drawn at start and never stored, of
//! (user name, password, stored hash string). It holds no password and nothing a memory dump
//! could test guesses against without the secret; and since the stored hash is part of the
//! key, a changed password (or re-hash) misses by itself, with no invalidation to forget.
//! Failed verifications are never entered.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type Key = [u8; 32];

#[derive(Debug)]
pub(crate) struct VerifiedCache {
    secret: Key,
    capacity: usize,
    ttl: Duration,
    /// Key → when it was verified.
    entries: Mutex<HashMap<Key, Instant>>,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> VerifiedCache {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        VerifiedCache {
            secret,
            capacity,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        self.capacity > 0 && !self.ttl.is_zero()
    }

    /// Length-prefixed fields, so no two different triples give the same input.
    pub(crate) fn key(&self, username: &str, password: &[u8], stored: &str) -> Key {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        for field in [username.as_bytes(), password, stored.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `key` was verified less than the TTL ago; an expired entry is dropped.
    pub(crate) fn hit(&self, key: &Key, now: Instant) -> bool {
        if !self.enabled() {
            return false;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some(at) if now.saturating_duration_since(*at) < self.ttl => true,
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        }
    }

    /// Remembers a successful verification. When full: expired entries go first, then the
    /// oldest one (a scan of at most `capacity` entries, paid only by a login that has just
    /// paid a full hash).
    pub(crate) fn insert(&self, key: Key, now: Instant) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, now);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_every_field_and_process() {
        let c = VerifiedCache::new(10, Duration::from_secs(60));
        let k = c.key("alice", b"pw", "{PLAIN}pw");
        assert_eq!(k, c.key("alice", b"pw", "{PLAIN}pw"));
        assert_ne!(k, c.key("alice", b"pw", "{PLAIN}pw2"), "changed hash");
        assert_ne!(k, c.key("alice", b"pw2", "{PLAIN}pw"));
        assert_ne!(k, c.key("alic", b"epw", "{PLAIN}pw"), "fields are framed");
        let other = VerifiedCache::new(10, Duration::from_secs(60));
        assert_ne!(
            k,
            other.key("alice", b"pw", "{PLAIN}pw"),
            "per-process secret"
        );
    }

    #[test]
    fn ttl_and_capacity() {
        let c = VerifiedCache::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        let [a, b, d] = [b"a", b"b", b"d"].map(|u| c.key("u", u, "h"));
        c.insert(a, t0);
        assert!(c.hit(&a, t0 + Duration::from_secs(59)));
        assert!(!c.hit(&a, t0 + Duration::from_secs(60)), "expired");
        assert_eq!(c.len(), 0, "the expired entry was dropped");
        c.insert(a, t0);
        c.insert(b, t0 + Duration::from_secs(1));
        c.insert(d, t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 2);
        assert!(!c.hit(&a, t0 + Duration::from_secs(2)), "oldest evicted");
        assert!(c.hit(&b, t0 + Duration::from_secs(2)));
        assert!(c.hit(&d, t0 + Duration::from_secs(2)));
        let off = VerifiedCache::new(0, Duration::from_secs(60));
        off.insert(a, t0);
        assert!(!off.hit(&a, t0), "capacity 0 disables the cache");
    }
}
