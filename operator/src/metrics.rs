//! Prometheus metrics in the text exposition format, kept by hand: a few counters, a
//! histogram and a gauge do not justify a metrics library.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 8] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 15.0];

#[derive(Default)]
pub struct Metrics {
    /// (kind) → reconciliations started.
    reconciles: Mutex<BTreeMap<&'static str, u64>>,
    /// (kind, error label) → failed reconciliations.
    failures: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// (kind) → histogram.
    durations: Mutex<BTreeMap<&'static str, Histogram>>,
    /// (kind, reason) → resources whose last reconcile ended blocked (Conflict, ...).
    blocked: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    leader: AtomicBool,
}

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Records a reconcile's duration when dropped.
pub struct Timer<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    start: Instant,
}

impl Metrics {
    /// Counts a reconcile of `kind` and times it until the returned guard drops.
    pub fn reconcile(&self, kind: &'static str) -> Timer<'_> {
        *lock(&self.reconciles).entry(kind).or_default() += 1;
        Timer {
            metrics: self,
            kind,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, kind: &'static str, error: &'static str) {
        *lock(&self.failures).entry((kind, error)).or_default() += 1;
    }

    pub fn blocked(&self, kind: &'static str, reason: &'static str) {
        *lock(&self.blocked).entry((kind, reason)).or_default() += 1;
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn failures(&self, kind: &'static str, error: &'static str) -> u64 {
        lock(&self.failures)
            .get(&(kind, error))
            .copied()
            .unwrap_or(0)
    }

    fn observe(&self, kind: &'static str, took: Duration) {
        let seconds = took.as_secs_f64();
        let mut durations = lock(&self.durations);
        let h = durations.entry(kind).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// The exposition text served at /metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP postbay_operator_reconciliations_total Reconciliations started.\n");
        out.push_str("# TYPE postbay_operator_reconciliations_total counter\n");
        for (kind, n) in lock(&self.reconciles).iter() {
            let _ = writeln!(
                out,
                "postbay_operator_reconciliations_total{{kind=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP postbay_operator_reconcile_failures_total Reconciliations that failed and were retried.\n");
        out.push_str("# TYPE postbay_operator_reconcile_failures_total counter\n");
        for ((kind, error), n) in lock(&self.failures).iter() {
            let _ = writeln!(
                out,
                "postbay_operator_reconcile_failures_total{{kind=\"{kind}\",error=\"{error}\"}} {n}"
            );
        }
        out.push_str("# HELP postbay_operator_reconcile_blocked_total Reconciliations that ended blocked (conflict, missing domain or Secret).\n");
        out.push_str("# TYPE postbay_operator_reconcile_blocked_total counter\n");
        for ((kind, reason), n) in lock(&self.blocked).iter() {
            let _ = writeln!(
                out,
                "postbay_operator_reconcile_blocked_total{{kind=\"{kind}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP postbay_operator_reconcile_duration_seconds Time spent in one reconciliation.\n");
        out.push_str("# TYPE postbay_operator_reconcile_duration_seconds histogram\n");
        for (kind, h) in lock(&self.durations).iter() {
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "postbay_operator_reconcile_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "postbay_operator_reconcile_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "postbay_operator_reconcile_duration_seconds_sum{{kind=\"{kind}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "postbay_operator_reconcile_duration_seconds_count{{kind=\"{kind}\"}} {}",
                h.count
            );
        }
        out.push_str(
            "# HELP postbay_operator_leader Whether this replica holds the leader Lease.\n",
        );
        out.push_str("# TYPE postbay_operator_leader gauge\n");
        let _ = writeln!(
            out,
            "postbay_operator_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.metrics.observe(self.kind, self.start.elapsed());
    }
}

/// A poisoned metrics lock only means a panic elsewhere; the numbers are still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauge() {
        let m = Metrics::default();
        drop(m.reconcile("Mailbox"));
        m.failure("Mailbox", "store");
        m.blocked("MailDomain", "Conflict");
        m.set_leader(true);
        let text = m.render();
        assert!(
            text.contains("postbay_operator_reconciliations_total{kind=\"Mailbox\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "postbay_operator_reconcile_failures_total{kind=\"Mailbox\",error=\"store\"} 1\n"
        ));
        assert!(text.contains(
            "postbay_operator_reconcile_blocked_total{kind=\"MailDomain\",reason=\"Conflict\"} 1\n"
        ));
        assert!(text
            .contains("postbay_operator_reconcile_duration_seconds_count{kind=\"Mailbox\"} 1\n"));
        assert!(text.contains(
            "postbay_operator_reconcile_duration_seconds_bucket{kind=\"Mailbox\",le=\"+Inf\"} 1\n"
        ));
        assert!(text.contains("postbay_operator_leader 1\n"));
        assert_eq!(m.failures("Mailbox", "store"), 1);
    }
}
