//! When to try a deferred remote delivery again: Postfix's schedule (first retry after
//! `minimal_backoff_time` = 5 min, each later one twice as late, capped at
//! `maximal_backoff_time` = 4000 s), until the message is `lifetime` old (5 days,
//! `maximal_queue_lifetime`), when the recipient is bounced with 4.4.7.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    pub lifetime: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(300),
            max: Duration::from_secs(4000),
            lifetime: Duration::from_secs(5 * 86_400),
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failed attempt (1 = the first).
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        let delay = self.min.saturating_mul(1u32 << doublings.min(31));
        delay.min(self.max.max(self.min))
    }

    /// Whether a message received at `received_at` (Unix seconds) is past its lifetime at
    /// `now`, so a temporary failure becomes a final one.
    pub fn expired(&self, received_at: i64, now: i64) -> bool {
        now.saturating_sub(received_at) >= self.lifetime.as_secs() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_up_to_max() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 4000, 4000, 4000]);
        assert_eq!(b.delay(0).as_secs(), 300);
        assert_eq!(b.delay(u32::MAX).as_secs(), 4000);
        let short = Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(2),
            ..b
        };
        assert_eq!(short.delay(1), Duration::from_millis(500));
        assert_eq!(short.delay(3), Duration::from_secs(2));
    }

    #[test]
    fn lifetime_is_measured_from_arrival() {
        let b = Backoff::default();
        assert!(!b.expired(1000, 1000 + 5 * 86_400 - 1));
        assert!(b.expired(1000, 1000 + 5 * 86_400));
    }
}
