//! Per-user sending limits: messages and recipients per hour, counted over a sliding hour
//! per process. A user over either limit gets `450 4.7.1` until older sends age out.
//!
//! Counts are per replica (like the login throttle), so with N submission replicas a user
//! can send at most N times the limit: the limit is against a compromised account flooding
//! the internet, and a database write per message would cost more than it buys.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a user may send in an hour; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    pub messages_per_hour: u32,
    pub recipients_per_hour: u32,
}

const WINDOW: Duration = Duration::from_secs(3600);
/// Users tracked at most; past that, users with nothing in the window are dropped first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
pub struct SendCounter {
    users: Mutex<HashMap<String, VecDeque<(Instant, u32)>>>,
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    Messages,
    Recipients,
}

impl SendCounter {
    /// Counts one message with `recipients` recipients for `user` if both limits allow it.
    pub fn try_send(
        &self,
        user: &str,
        recipients: u32,
        limits: SendLimits,
        now: Instant,
    ) -> Result<(), OverLimit> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() >= MAX_TRACKED && !users.contains_key(user) {
            users.retain(|_, sends| {
                sends
                    .back()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) < WINDOW)
            });
        }
        let sends = users.entry(user.to_string()).or_default();
        while sends
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= WINDOW)
        {
            sends.pop_front();
        }
        let messages = sends.len() as u64;
        let rcpts: u64 = sends.iter().map(|(_, n)| u64::from(*n)).sum();
        if limits.messages_per_hour > 0 && messages >= u64::from(limits.messages_per_hour) {
            return Err(OverLimit::Messages);
        }
        if limits.recipients_per_hour > 0
            && rcpts + u64::from(recipients) > u64::from(limits.recipients_per_hour)
        {
            return Err(OverLimit::Recipients);
        }
        sends.push_back((now, recipients));
        Ok(())
    }

    /// Whether `user` could send one more message now (checked at MAIL, before any work).
    pub fn may_start(&self, user: &str, limits: SendLimits, now: Instant) -> Result<(), OverLimit> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let Some(sends) = users.get(user) else {
            return Ok(());
        };
        let recent = || {
            sends
                .iter()
                .filter(|(t, _)| now.saturating_duration_since(*t) < WINDOW)
        };
        if limits.messages_per_hour > 0
            && recent().count() as u64 >= u64::from(limits.messages_per_hour)
        {
            return Err(OverLimit::Messages);
        }
        let rcpts: u64 = recent().map(|(_, n)| u64::from(*n)).sum();
        if limits.recipients_per_hour > 0 && rcpts >= u64::from(limits.recipients_per_hour) {
            return Err(OverLimit::Recipients);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SendLimits = SendLimits {
        messages_per_hour: 3,
        recipients_per_hour: 5,
    };

    #[test]
    fn messages_and_recipients_are_limited_over_a_sliding_hour() {
        let c = SendCounter::default();
        let t0 = Instant::now();
        assert_eq!(c.try_send("a", 1, LIMITS, t0), Ok(()));
        assert_eq!(c.try_send("a", 2, LIMITS, t0), Ok(()));
        assert_eq!(c.try_send("a", 3, LIMITS, t0), Err(OverLimit::Recipients));
        assert_eq!(c.try_send("a", 2, LIMITS, t0), Ok(()));
        assert_eq!(c.may_start("a", LIMITS, t0), Err(OverLimit::Messages));
        assert_eq!(c.try_send("a", 0, LIMITS, t0), Err(OverLimit::Messages));
        assert_eq!(c.try_send("b", 5, LIMITS, t0), Ok(()), "users count apart");
        assert_eq!(c.may_start("b", LIMITS, t0), Err(OverLimit::Recipients));
        let later = t0 + WINDOW;
        assert_eq!(c.may_start("a", LIMITS, later), Ok(()));
        assert_eq!(c.try_send("a", 5, LIMITS, later), Ok(()));
    }

    #[test]
    fn zero_means_unlimited() {
        let c = SendCounter::default();
        let none = SendLimits {
            messages_per_hour: 0,
            recipients_per_hour: 0,
        };
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(c.try_send("a", 100, none, t0), Ok(()));
        }
    }
}
