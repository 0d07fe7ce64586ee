//! The Sender Rewriting Scheme (Shevek's SRS, as libsrs2 and postsrsd implement it): mail an
//! alias forwards to another domain leaves with a reverse path of ours, so the receiver's
//! SPF check passes, and a bounce to that path finds its way back to the original sender.
//!
//! `user@example.org` forwarded by us becomes `SRS0=HHHH=TT=example.org=user@<srs domain>`:
//! TT is the day (base32, mod 1024), HHHH the first four base64 characters of
//! HMAC-SHA1(secret, TT + domain + local part), lower-cased first. A reverse path that is
//! already SRS is wrapped again the same way (not libsrs2's SRS1 shortcut): longer, but each
//! hop can still undo its own layer.

use base64::Engine;
use hmac::{Hmac, Mac};

/// SRS addresses are honoured for this many days (libsrs2's default).
const MAX_AGE_DAYS: u32 = 21;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrsError {
    #[error("not an SRS address")]
    NotSrs,
    #[error("malformed SRS address")]
    Malformed,
    #[error("SRS hash does not match")]
    BadHash,
    #[error("SRS address has expired")]
    Expired,
}

/// The secret and the domain of our SRS addresses.
#[derive(Clone)]
pub struct Srs {
    secret: Vec<u8>,
    /// The domain SRS addresses are in: ours, with our MX and our SPF.
    pub domain: String,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Srs")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Srs {
    pub fn new(secret: &[u8], domain: &str) -> Srs {
        Srs {
            secret: secret.to_vec(),
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        }
    }

    /// The forwarded reverse path for `sender` at `now` (Unix seconds). The null sender and
    /// a sender without a domain stay as they are.
    pub fn forward(&self, sender: &str, now: i64) -> String {
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return sender.to_string();
        };
        if local.is_empty() || domain.is_empty() {
            return sender.to_string();
        }
        let tt = timestamp(day(now));
        let hash = self.hash(&tt, domain, local);
        format!("SRS0={hash}={tt}={domain}={local}@{}", self.domain)
    }

    /// The original sender of an SRS address of ours (`local` is its local part).
    pub fn reverse(&self, local: &str, now: i64) -> Result<String, SrsError> {
        let rest = match local.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("SRS0=") => &local[5..],
            _ => return Err(SrsError::NotSrs),
        };
        let mut parts = rest.splitn(4, '=');
        let (Some(hash), Some(tt), Some(domain), Some(user)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if tt.len() != 2 || domain.is_empty() || user.is_empty() {
            return Err(SrsError::Malformed);
        }
        let want = self.hash(tt, domain, user);
        // Constant time is not needed for a 24-bit tag checked once per RCPT, but case is
        // ignored: some MTAs fold the local part.
        if !hash.eq_ignore_ascii_case(&want) {
            return Err(SrsError::BadHash);
        }
        let then = untimestamp(tt).ok_or(SrsError::Malformed)?;
        let age = (day(now) + 1024 - then) % 1024;
        if age > MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        Ok(format!("{user}@{domain}"))
    }

    fn hash(&self, tt: &str, domain: &str, local: &str) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&self.secret).expect("any key length");
        for part in [tt, domain, local] {
            mac.update(part.to_ascii_lowercase().as_bytes());
        }
        let tag = mac.finalize().into_bytes();
        let b64 = base64::engine::general_purpose::STANDARD.encode(tag);
        b64[..4].to_string()
    }
}

fn day(now: i64) -> u32 {
    ((now.max(0) / 86_400) % 1024) as u32
}

fn timestamp(day: u32) -> String {
    let d = day % 1024;
    [BASE32[(d >> 5) as usize], BASE32[(d & 31) as usize]]
        .iter()
        .map(|&b| b as char)
        .collect()
}

fn untimestamp(tt: &str) -> Option<u32> {
    let digit = |c: u8| {
        BASE32
            .iter()
            .position(|&b| b == c.to_ascii_uppercase())
            .map(|p| p as u32)
    };
    let b = tt.as_bytes();
    Some(digit(b[0])? << 5 | digit(b[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000;

    #[test]
    fn forward_then_reverse_gives_the_sender_back() {
        let srs = Srs::new(b"s3cret", "Fwd.Example.Test");
        let fwd = srs.forward("Alice@example.org", NOW);
        let (local, domain) = fwd.rsplit_once('@').unwrap();
        assert_eq!(domain, "fwd.example.test");
        assert!(
            local.starts_with("SRS0=") && local.ends_with("=example.org=Alice"),
            "{fwd}"
        );
        assert_eq!(srs.reverse(local, NOW).unwrap(), "Alice@example.org");
        assert_eq!(
            srs.reverse(&local.to_ascii_lowercase(), NOW).unwrap(),
            "alice@example.org"
        );
        // Still good after 21 days, not after 22; across the 1024-day wrap as well.
        assert!(srs.reverse(local, NOW + 21 * 86_400).is_ok());
        assert_eq!(
            srs.reverse(local, NOW + 22 * 86_400),
            Err(SrsError::Expired)
        );
        let wrap = (NOW / 86_400 / 1024 + 1) * 1024 * 86_400 - 86_400;
        let f = srs.forward("a@b.test", wrap);
        let l = f.split('@').next().unwrap();
        assert!(srs.reverse(l, wrap + 3 * 86_400).is_ok());
    }

    #[test]
    fn tampering_and_other_secrets_are_refused() {
        let srs = Srs::new(b"s3cret", "fwd.test");
        let fwd = srs.forward("bob@example.org", NOW);
        let local = fwd.split('@').next().unwrap();
        let forged = local.replace("=bob", "=eve");
        assert_eq!(srs.reverse(&forged, NOW), Err(SrsError::BadHash));
        assert_eq!(
            Srs::new(b"other", "fwd.test").reverse(local, NOW),
            Err(SrsError::BadHash)
        );
        assert_eq!(srs.reverse("bob", NOW), Err(SrsError::NotSrs));
        assert_eq!(srs.reverse("SRS0=abcd", NOW), Err(SrsError::Malformed));
        assert_eq!(srs.forward("", NOW), "");
        // An SRS sender is wrapped again and unwraps one layer at a time.
        let twice = srs.forward(&fwd, NOW);
        let outer = twice.rsplit_once('@').unwrap().0;
        assert_eq!(srs.reverse(outer, NOW).unwrap(), fwd);
    }
}
