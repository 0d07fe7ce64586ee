//! One metrics registry per process and the admin listener that serves it.
//!
//! Metrics are recorded where the work is shared (the accept loop and TLS in postbay-net,
//! logins in postbay-auth, the queue, the LMTP client, the IMAP session) through the
//! one-line helpers below, so no crate passes a registry around. Every label takes values
//! from a small fixed set (listener address, reply class, command name, result), so the
//! number of series stays bounded whatever clients send.

pub mod admin;
pub mod probe;
pub mod traces;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to about 2 s (doubling), for work done per message or
/// command.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 13))
}

/// The process's metrics; see [`metrics`].
pub struct Metrics {
    registry: Registry,
    connections_open: Family<Labels, Gauge>,
    connections: Family<Labels, Counter>,
    connections_refused: Family<Labels, Counter>,
    tls_handshakes: Family<Labels, Counter>,
    cert_expiry: Gauge,
    smtp_replies: Family<Labels, Counter>,
    messages_accepted: Family<Labels, Counter>,
    queue_messages: Gauge,
    queue_oldest_age: Gauge,
    lmtp_delivery: Histogram,
    imap_commands: Family<Labels, Counter>,
    imap_command_seconds: Histograms,
    logins: Family<Labels, Counter>,
    db_pool: Family<Labels, Gauge>,
    delivery_attempts: Family<Labels, Counter>,
    store_seconds: Histograms,
    orphan_blobs_removed: Counter,
    orphan_sweeps: Family<Labels, Counter>,
    filter_scans: Family<Labels, Counter>,
    filter_scan_seconds: Histogram,
    filter_learns: Family<Labels, Counter>,
    outbound_connections: Family<Labels, Counter>,
    outbound_tls_policy: Family<Labels, Counter>,
    outbound_dane_enabled: Gauge,
}

/// The process-wide metrics, registered on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("postbay");
        let m = Metrics {
            connections_open: Family::default(),
            connections: Family::default(),
            connections_refused: Family::default(),
            tls_handshakes: Family::default(),
            cert_expiry: Gauge::default(),
            smtp_replies: Family::default(),
            messages_accepted: Family::default(),
            queue_messages: Gauge::default(),
            queue_oldest_age: Gauge::default(),
            lmtp_delivery: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            imap_commands: Family::default(),
            imap_command_seconds: Family::new_with_constructor(latency_histogram),
            logins: Family::default(),
            db_pool: Family::default(),
            delivery_attempts: Family::default(),
            store_seconds: Family::new_with_constructor(latency_histogram),
            orphan_blobs_removed: Counter::default(),
            orphan_sweeps: Family::default(),
            filter_scans: Family::default(),
            filter_scan_seconds: latency_histogram(),
            filter_learns: Family::default(),
            outbound_connections: Family::default(),
            outbound_tls_policy: Family::default(),
            outbound_dane_enabled: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "Open client connections, by listener",
            m.connections_open.clone(),
        );
        r.register(
            "connections",
            "Connections admitted, by listener",
            m.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused, by listener and reason (limit, proxy_header)",
            m.connections_refused.clone(),
        );
        r.register(
            "tls_handshakes",
            "TLS handshakes (STARTTLS and implicit), by result",
            m.tls_handshakes.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which the served certificate expires",
            m.cert_expiry.clone(),
        );
        r.register(
            "smtp_replies",
            "SMTP replies sent, by code class (2xx, 3xx, 4xx, 5xx) and reason of a refusal (relay_denied, unknown_user, auth_failed, rate_limit, filter_reject, ...; none otherwise)",
            m.smtp_replies.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages accepted into the queue (250 after DATA/BDAT), by role (mx, submission)",
            m.messages_accepted.clone(),
        );
        r.register(
            "queue_messages",
            "Messages waiting in this replica's queue",
            m.queue_messages.clone(),
        );
        r.register(
            "queue_oldest_message_age_seconds",
            "Age of the oldest message in this replica's queue (0 when empty)",
            m.queue_oldest_age.clone(),
        );
        r.register(
            "lmtp_delivery_seconds",
            "Time from LMTP connect to the last recipient's reply, per queued message",
            m.lmtp_delivery.clone(),
        );
        r.register(
            "imap_commands",
            "IMAP commands answered, by command and result (ok, no, bad)",
            m.imap_commands.clone(),
        );
        r.register(
            "imap_command_seconds",
            "Time to answer an IMAP command (IDLE and AUTHENTICATE excluded), by command",
            m.imap_command_seconds.clone(),
        );
        r.register(
            "logins",
            "Logins, by result, protocol (imap, pop3, smtp) and mechanism (password: PLAIN, LOGIN, USER/PASS; scram: SCRAM-SHA-256)",
            m.logins.clone(),
        );
        r.register(
            "outbound_connections",
            "Sessions used for delivery to other servers, by kind (new: connected, reused: from the connection cache)",
            m.outbound_connections.clone(),
        );
        r.register(
            "outbound_tls_policy_sessions",
            "Outbound sessions under a TLS policy (RFC 8460's counts), by policy (sts, dane) and result (success, failure)",
            m.outbound_tls_policy.clone(),
        );
        r.register(
            "outbound_dane_enabled",
            "1 when the resolver validates DNSSEC and DANE is enforced, 0 when DANE is off",
            m.outbound_dane_enabled.clone(),
        );
        r.register(
            "delivery_attempts",
            "Delivery attempts of queued recipients, by result (delivered, deferred, bounced) and destination (local: LMTP, remote: SMTP out)",
            m.delivery_attempts.clone(),
        );
        r.register(
            "store_seconds",
            "Time spent in the message store, by operation (deliver: blob fsync and rows committed; fetch: a message's blob read)",
            m.store_seconds.clone(),
        );
        r.register(
            "orphan_blobs_removed",
            "Blobs without a message row removed by the periodic sweep",
            m.orphan_blobs_removed.clone(),
        );
        r.register(
            "orphan_sweeps",
            "Periodic orphan-blob sweeps, by result (done, skipped: another replica holds the sweep lock, failed)",
            m.orphan_sweeps.clone(),
        );
        r.register(
            "filter_scans",
            "Messages scanned by the filter, by the action of its verdict (no_action, greylist, add_header, rewrite_subject, soft_reject, reject)",
            m.filter_scans.clone(),
        );
        r.register(
            "filter_scan_seconds",
            "Time the filter took to scan one message (every check, DNS lookups included)",
            m.filter_scan_seconds.clone(),
        );
        r.register(
            "filter_learns",
            "Bayes training requests, by class (spam, ham) and result (learned, failed)",
            m.filter_learns.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database pool connections, by state (idle, in_use)",
            m.db_pool.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition (OpenMetrics text).
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A connection admitted on `listener` (its local address); the gauge drops with the guard.
pub fn connection_opened(listener: &str) -> ConnectionGuard {
    let labels = vec![("listener", listener.to_string())];
    let m = metrics();
    m.connections.get_or_create(&labels).inc();
    m.connections_open.get_or_create(&labels).inc();
    ConnectionGuard { labels }
}

/// Keeps a connection counted as open until dropped.
pub struct ConnectionGuard {
    labels: Labels,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics().connections_open.get_or_create(&self.labels).dec();
    }
}

/// A connection refused at `listener`; `reason` is a fixed word (`limit`, `proxy_header`).
pub fn connection_refused(listener: &str, reason: &'static str) {
    metrics()
        .connections_refused
        .get_or_create(&vec![
            ("listener", listener.to_string()),
            ("reason", reason.to_string()),
        ])
        .inc();
}

pub fn tls_handshake(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    metrics()
        .tls_handshakes
        .get_or_create(&vec![("result", result.to_string())])
        .inc();
}

/// The certificate now served expires at `unix_seconds`.
pub fn certificate_expiry(unix_seconds: i64) {
    metrics().cert_expiry.set(unix_seconds);
}

/// An SMTP (or LMTP server) reply with this code was sent; `reason` is a fixed word for
/// refusals (empty otherwise).
pub fn smtp_reply(code: u16, reason: &'static str) {
    let class = match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    };
    metrics()
        .smtp_replies
        .get_or_create(&vec![
            ("class", class.to_string()),
            (
                "reason",
                if reason.is_empty() { "none" } else { reason }.to_string(),
            ),
        ])
        .inc();
}

/// A message was queued and acknowledged; `role` is `mx` or `submission`.
pub fn message_accepted(role: &'static str) {
    metrics()
        .messages_accepted
        .get_or_create(&vec![("role", role.to_string())])
        .inc();
}

/// The queue holds `messages`, the oldest of them `oldest` old.
pub fn queue_depth(messages: usize, oldest: Duration) {
    let m = metrics();
    m.queue_messages.set(messages as i64);
    m.queue_oldest_age.set(oldest.as_secs() as i64);
}

pub fn lmtp_delivery(took: Duration) {
    metrics().lmtp_delivery.observe(took.as_secs_f64());
}

/// IMAP commands with a name of their own; anything else is counted as `other`, so a
/// client cannot create series.
const IMAP_COMMANDS: &[&str] = &[
    "APPEND",
    "AUTHENTICATE",
    "CAPABILITY",
    "CHECK",
    "CLOSE",
    "COPY",
    "CREATE",
    "DELETE",
    "ENABLE",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "ID",
    "IDLE",
    "LIST",
    "LOGIN",
    "LOGOUT",
    "LSUB",
    "MOVE",
    "NAMESPACE",
    "NOOP",
    "RENAME",
    "SEARCH",
    "SELECT",
    "STARTTLS",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "UNSELECT",
    "UNSUBSCRIBE",
    "GETQUOTA",
    "GETQUOTAROOT",
];

/// The metric name of an IMAP command: its own from the fixed list, else `other`.
fn imap_command_name(command: &str) -> &'static str {
    let upper = command.to_ascii_uppercase();
    IMAP_COMMANDS
        .iter()
        .find(|c| **c == upper)
        .map_or("other", |c| *c)
}

/// An IMAP command answered with `result` (`ok`, `no`, `bad`).
pub fn imap_command(command: &str, result: &'static str) {
    let name = imap_command_name(command);
    metrics()
        .imap_commands
        .get_or_create(&vec![
            ("command", name.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// An IMAP command took `took` from its last byte read to its tagged response.
pub fn imap_command_latency(command: &str, took: Duration) {
    metrics()
        .imap_command_seconds
        .get_or_create(&vec![("command", imap_command_name(command).to_string())])
        .observe(took.as_secs_f64());
}

/// A login ended with `result` (`success`, `failed`, `throttled`, `unavailable`);
/// `protocol` and `mechanism` are fixed words.
pub fn login(result: &'static str, protocol: &'static str, mechanism: &'static str) {
    metrics()
        .logins
        .get_or_create(&vec![
            ("result", result.to_string()),
            ("protocol", protocol.to_string()),
            ("mechanism", mechanism.to_string()),
        ])
        .inc();
}

/// One queued recipient's delivery attempt ended with `result` (`delivered`, `deferred`,
/// `bounced`); `destination` is `local` (LMTP) or `remote` (SMTP out).
pub fn delivery_attempt(result: &'static str, destination: &'static str) {
    metrics()
        .delivery_attempts
        .get_or_create(&vec![
            ("result", result.to_string()),
            ("destination", destination.to_string()),
        ])
        .inc();
}

/// An outbound SMTP session was opened (`new`) or taken from the connection cache (`reused`).
pub fn outbound_connection(kind: &'static str) {
    metrics()
        .outbound_connections
        .get_or_create(&vec![("kind", kind.to_string())])
        .inc();
}

/// A session under an MTA-STS (`sts`) or DANE (`dane`) policy met it or not.
pub fn outbound_tls_policy(policy: &'static str, success: bool) {
    let result = if success { "success" } else { "failure" };
    metrics()
        .outbound_tls_policy
        .get_or_create(&vec![
            ("policy", policy.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// Whether DANE is on (the resolver validates DNSSEC).
pub fn outbound_dane_enabled(on: bool) {
    metrics().outbound_dane_enabled.set(i64::from(on));
}

/// A store operation (`deliver`, `fetch`) took `took`.
pub fn store_latency(operation: &'static str, took: Duration) {
    metrics()
        .store_seconds
        .get_or_create(&vec![("operation", operation.to_string())])
        .observe(took.as_secs_f64());
}

/// A periodic orphan sweep ended with `result` (`done`, `skipped`, `failed`), removing
/// `removed` blobs.
pub fn orphan_sweep(result: &'static str, removed: usize) {
    let m = metrics();
    m.orphan_sweeps
        .get_or_create(&vec![("result", result.to_string())])
        .inc();
    m.orphan_blobs_removed.inc_by(removed as u64);
}

/// The filter scanned a message: the verdict's action (`reject`, `add header`, ...) and
/// how long it took.
pub fn filter_scan(action: &'static str, took: Duration) {
    let m = metrics();
    m.filter_scans
        .get_or_create(&vec![("action", action.replace(' ', "_"))])
        .inc();
    m.filter_scan_seconds.observe(took.as_secs_f64());
}

/// A training request of the filter (`spam` or ham) ended with `learned` or `failed`.
pub fn filter_learn(spam: bool, result: &'static str) {
    let class = if spam { "spam" } else { "ham" };
    metrics()
        .filter_learns
        .get_or_create(&vec![
            ("class", class.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// The database pool has `idle` idle connections out of `size`.
pub fn db_pool(size: u32, idle: usize) {
    let m = metrics();
    let idle = idle as i64;
    m.db_pool
        .get_or_create(&vec![("state", "idle".to_string())])
        .set(idle);
    m.db_pool
        .get_or_create(&vec![("state", "in_use".to_string())])
        .set(i64::from(size) - idle);
}
