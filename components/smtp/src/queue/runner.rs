//! Drains the queue: hands local recipients to the mailbox component over LMTP and remote
//! ones to [`crate::outbound`] (SMTP to their MX), retries temporary failures with backoff,
//! bounces permanent ones to the sender, and parks messages that can never be delivered.
//!
//! Each recipient has its own state: it stays in the queue file until it has a final
//! answer; the file is rewritten (durably) without the recipients that got one, with the
//! attempt count and the time of the next attempt, so a restart neither resends a delivered
//! recipient nor retries early. The one duplicate that remains possible for a remote
//! recipient: a crash after the remote server's 250 and before that rewrite (RFC 5321
//! §6.1 accepts it; LMTP's TRANSID removes it for local ones).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex, Semaphore};

use super::requests::{self, Action};
use super::{dsn, Envelope, Queue, QueueError, QueuedRecipient};
use crate::lmtp::client::{LmtpClient, ServerReply};
use crate::outbound::{DestinationLimits, Nexthop, Outbound, Verdict};
use postbay_store::{Recipient, Resolution};

/// How long to wait before each retry, in seconds; the last step repeats until `max_age`.
/// A list of delays rather than a formula, so no rounding can collapse early retries.
pub const BACKOFF: &[u64] = &[10, 60, 300, 900, 1800, 3600];

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How often the directory is rescanned for due retries.
    pub scan_interval: Duration,
    /// A message still undeliverable after this long is given up (parked).
    pub max_age: Duration,
    /// The retry schedule ([`BACKOFF`] by default); tests shorten it.
    pub backoff: Vec<Duration>,
    /// Deliveries to one remote domain at once.
    pub per_destination: usize,
    /// Warn the sender once when a message is still undelivered after this long (Postfix's
    /// delay_warning_time); `None`: never.
    pub delay_warning: Option<Duration>,
    /// SRS for mail an alias forwards to another domain; `None`: the sender as it came.
    pub srs: Option<crate::outbound::srs::Srs>,
    /// How often the queues of replicas that are gone are looked for ([`Queue::adopt_orphaned`]);
    /// zero turns it off.
    pub adopt_interval: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            concurrency: 32,
            scan_interval: Duration::from_secs(5),
            max_age: Duration::from_secs(5 * 86_400),
            backoff: BACKOFF.iter().map(|&s| Duration::from_secs(s)).collect(),
            per_destination: 20,
            delay_warning: None,
            srs: None,
            adopt_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Default)]
struct Schedule {
    /// Messages being attempted, each with the token of its one attempt: only that attempt
    /// may clear the entry, so a stale start (a scan racing a wake-up) can never open the
    /// door to a second, concurrent attempt of the same message.
    in_flight: HashMap<String, u64>,
    next_token: u64,
    /// Messages waiting for a retry: attempts so far and when the next one is due.
    waiting: HashMap<String, (usize, Instant)>,
    /// What an admin asked for ([`requests`]), taken by the message's next attempt.
    asked: HashMap<String, Action>,
}

pub struct Runner {
    queue: Queue,
    lmtp: Arc<LmtpClient>,
    /// Delivery to other domains; `None` keeps their mail queued (deferred).
    outbound: Option<Arc<Outbound>>,
    destinations: DestinationLimits,
    /// Resolves bounce recipients (the original sender).
    store: postbay_store::Store,
    hostname: String,
    settings: RunnerSettings,
    slots: Arc<Semaphore>,
    schedule: Arc<Mutex<Schedule>>,
}

/// A recipient that failed for good, the answer, and the remote server that gave it.
type Failed = (QueuedRecipient, ServerReply, Option<String>);

/// A recipient delivered, for NOTIFY=SUCCESS: `delivered` (into a mailbox) or `relayed` (to
/// a server without DSN), the answer, and the remote server.
type Succeeded = (QueuedRecipient, &'static str, ServerReply, Option<String>);

/// What one attempt came to; the message is done when nothing remains.
#[derive(Default)]
struct Outcome {
    /// To be tried again.
    remaining: Vec<QueuedRecipient>,
    failed: Vec<Failed>,
    succeeded: Vec<Succeeded>,
    /// Why the remaining ones were deferred.
    reason: String,
}

impl Runner {
    pub fn new(
        queue: Queue,
        lmtp: Arc<LmtpClient>,
        outbound: Option<Arc<Outbound>>,
        store: postbay_store::Store,
        hostname: String,
        settings: RunnerSettings,
    ) -> Arc<Runner> {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Arc::new(Runner {
            queue,
            lmtp,
            outbound,
            destinations: DestinationLimits::new(settings.per_destination),
            store,
            hostname,
            settings,
            slots,
            schedule: Arc::default(),
        })
    }

    /// Runs until the wake channel closes: first everything left from before a restart, then
    /// new messages as they are queued and retries as they fall due.
    pub async fn run(self: Arc<Self>, mut wake: mpsc::UnboundedReceiver<String>) {
        match self.queue.scan().await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(count = ids.len(), "resuming queued messages");
                }
                for id in ids {
                    self.clone().start(id).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "queue scan failed"),
        }
        let mut tick = tokio::time::interval(self.settings.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let adopting = !self.settings.adopt_interval.is_zero();
        let mut adopt =
            tokio::time::interval(self.settings.adopt_interval.max(Duration::from_millis(100)));
        adopt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                id = wake.recv() => match id {
                    Some(id) => self.clone().start_new(id).await,
                    None => break,
                },
                _ = tick.tick() => {
                    self.clone().take_requests().await;
                    self.clone().start_due().await
                }
                _ = adopt.tick(), if adopting => match self.queue.adopt_orphaned().await {
                    // The scan that follows starts them.
                    Ok(n) if n > 0 => self.clone().start_due().await,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "adopting orphaned queues failed"),
                },
            }
        }
    }

    /// Carries out the admin requests filed since the last scan. A message in flight keeps
    /// its request for the next scan, so an attempt under way is never cut short.
    async fn take_requests(self: Arc<Self>) {
        let dir = self.queue.dir().to_path_buf();
        let pending = tokio::task::spawn_blocking(move || requests::pending(&dir))
            .await
            .unwrap_or_default();
        for request in pending {
            let ids: Vec<String> = match &request.id {
                Some(id) => vec![id.clone()],
                None => self.schedule.lock().await.waiting.keys().cloned().collect(),
            };
            let mut busy = false;
            for id in ids {
                {
                    let mut schedule = self.schedule.lock().await;
                    if schedule.in_flight.contains_key(&id) {
                        busy = true;
                        continue;
                    }
                    schedule.asked.insert(id.clone(), request.action);
                    schedule.waiting.remove(&id);
                }
                tracing::info!(
                    queue_id = id,
                    action = request.action.name(),
                    "admin request"
                );
                self.clone().start(id).await;
            }
            if !busy {
                if let Err(e) = tokio::fs::remove_file(&request.path).await {
                    tracing::warn!(path = %request.path.display(), error = %e, "cannot remove a done request");
                }
            }
        }
    }

    async fn start_due(self: Arc<Self>) {
        let now = Instant::now();
        let due: Vec<String> = {
            let schedule = self.schedule.lock().await;
            schedule
                .waiting
                .iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in due {
            self.clone().start(id).await;
        }
        // Files that appeared without a wake-up (e.g. written by a replica before it was
        // rescheduled here) are picked up too.
        if let Ok(ids) = self.queue.scan().await {
            for id in ids {
                let known = {
                    let s = self.schedule.lock().await;
                    s.in_flight.contains_key(&id) || s.waiting.contains_key(&id)
                };
                if !known {
                    self.clone().start(id).await;
                }
            }
        }
    }

    /// A wake-up for a freshly queued message. A directory scan may have found the file
    /// first and its attempt may already have ended in a deferral: then the message waits
    /// for its retry and the late wake-up must not start one early.
    async fn start_new(self: Arc<Self>, id: String) {
        if self.schedule.lock().await.waiting.contains_key(&id) {
            return;
        }
        self.start(id).await;
    }

    async fn start(self: Arc<Self>, id: String) {
        let token = {
            let mut schedule = self.schedule.lock().await;
            if schedule.in_flight.contains_key(&id) {
                return;
            }
            schedule.next_token += 1;
            let token = schedule.next_token;
            schedule.in_flight.insert(id.clone(), token);
            token
        };
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        tokio::spawn(async move {
            self.attempt(&id, token).await;
            drop(permit);
        });
    }

    async fn attempt(&self, id: &str, token: u64) {
        tracing::debug!(queue_id = id, "delivery attempt");
        let asked = self.schedule.lock().await.asked.remove(id);
        let (envelope, message) = match self.queue.load(id).await {
            Ok(loaded) => loaded,
            Err(QueueError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Handled and removed between a directory scan and this attempt.
                self.finish(id, token, None).await;
                return;
            }
            Err(e) => {
                tracing::error!(queue_id = id, error = %e, "cannot load queued message");
                self.finish(id, token, None).await;
                return;
            }
        };
        match asked {
            Some(Action::Delete) => {
                tracing::warn!(
                    queue_id = id,
                    from = envelope.mail_from,
                    rcpts = envelope.recipients.len(),
                    "deleted by the administrator, undelivered"
                );
                if let Err(e) = self.queue.remove(id).await {
                    tracing::error!(queue_id = id, error = %e, "cannot delete");
                }
                self.finish(id, token, None).await;
                return;
            }
            Some(Action::Bounce) => {
                tracing::warn!(queue_id = id, "bounced by the administrator");
                let text = format!(
                    "5.0.0 Message returned by the administrator of {}",
                    self.hostname
                );
                let failed = envelope
                    .recipients
                    .iter()
                    .map(|r| {
                        let reply = ServerReply {
                            code: 550,
                            text: text.clone(),
                        };
                        (r.clone(), reply, None)
                    })
                    .collect();
                self.conclude(id, token, &envelope, &message, failed).await;
                return;
            }
            Some(Action::Retry) | None => {}
        }
        let now = crate::now_unix();
        if envelope.next_attempt > now && asked != Some(Action::Retry) {
            // Deferred before a restart: its retry is not due yet.
            let wait = Duration::from_secs((envelope.next_attempt - now) as u64);
            let attempts = envelope.attempts as usize;
            self.finish(id, token, Some((attempts, Instant::now() + wait)))
                .await;
            return;
        }
        // Each attempt is a span of the message's trace, whichever replica makes it.
        let span = tracing::info_span!(
            target: postbay_telemetry::traces::TARGET,
            "queue.attempt",
            queue_id = id,
            attempt = envelope.attempts + 1,
            rcpts = envelope.recipients.len(),
            outcome = tracing::field::Empty,
        );
        if let Some(parent) = &envelope.trace {
            postbay_telemetry::traces::set_parent(&span, parent);
        }
        tracing::Instrument::instrument(self.attempt_due(id, token, envelope, message), span).await
    }

    async fn attempt_due(&self, id: &str, token: u64, envelope: Envelope, message: Vec<u8>) {
        let Outcome {
            remaining,
            mut failed,
            succeeded,
            reason,
        } = self.deliver(&envelope, &message).await;
        let record = |outcome: &str| {
            tracing::Span::current().record("outcome", outcome);
        };
        self.report_success(&envelope, &message, &succeeded).await;
        if remaining.is_empty() {
            record(if failed.is_empty() {
                "delivered"
            } else {
                "failed"
            });
            return self.conclude(id, token, &envelope, &message, failed).await;
        }
        let remote = remaining.iter().any(|r| !r.local);
        let now = crate::now_unix();
        if self.outbound.is_none() && remaining.iter().all(|r| !r.local) {
            // Only remote recipients left and this process does not deliver to other
            // domains (`postbay dev` by default): not an attempt. The file keeps no retry
            // time, so a process with outbound delivery on sends them at once.
            record("waiting_for_outbound");
            if remaining.len() != envelope.recipients.len() {
                let mut next = envelope.clone();
                next.recipients = remaining;
                if let Err(e) = self.rewrite(&next, &message).await {
                    tracing::error!(queue_id = id, error = %e, "cannot record the attempt");
                }
            }
            self.report_failures(&envelope, &message, &failed).await;
            tracing::debug!(queue_id = id, reason, "waiting for outbound delivery");
            let later = Instant::now() + Duration::from_secs(3600);
            self.finish(id, token, Some((envelope.attempts as usize, later)))
                .await;
            return;
        }
        let expired = match (&self.outbound, remote) {
            (Some(out), true) => out.settings().backoff.expired(envelope.received_at, now),
            _ => (now - envelope.received_at) as u64 > self.settings.max_age.as_secs(),
        };
        if expired {
            // RFC 3463 X.4.7: delivery time expired; every recipient left fails.
            record("expired");
            tracing::warn!(queue_id = id, reason, "giving up after the queue lifetime");
            let text = format!("4.4.7 Message expired in the queue; last error: {reason}");
            for rcpt in remaining {
                let reply = ServerReply {
                    code: 421,
                    text: text.clone(),
                };
                failed.push((rcpt, reply, None));
            }
            self.conclude(id, token, &envelope, &message, failed).await;
            return;
        }
        self.report_failures(&envelope, &message, &failed).await;
        let mut next = envelope.clone();
        // Postfix's delay_warning_time: once per message, to the recipients that want it.
        if let Some(after) = self.settings.delay_warning {
            if !envelope.warned && (now - envelope.received_at) as u64 >= after.as_secs() {
                self.report_delay(&envelope, &message, &remaining, &reason)
                    .await;
                next.warned = true;
            }
        }
        let attempts = envelope.attempts + 1;
        let delay = match (&self.outbound, remote) {
            (Some(out), true) => out.settings().backoff.delay(attempts),
            _ => {
                let schedule = &self.settings.backoff;
                schedule
                    .get((attempts as usize - 1).min(schedule.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(Duration::from_secs(BACKOFF[0]))
            }
        };
        next.recipients = remaining;
        next.attempts = attempts;
        // Rounded up, so a restart never retries before the in-memory schedule would.
        next.next_attempt = now + delay.as_secs_f64().ceil() as i64;
        if let Err(e) = self.rewrite(&next, &message).await {
            tracing::error!(queue_id = id, error = %e, "cannot record the attempt");
        }
        record("deferred");
        tracing::info!(queue_id = id, attempts, ?delay, reason, "delivery deferred");
        self.finish(id, token, Some((attempts as usize, Instant::now() + delay)))
            .await;
    }

    /// Every recipient has a final answer: bounce the failures, then remove the message (or
    /// park it when no bounce can be sent).
    async fn conclude(
        &self,
        id: &str,
        token: u64,
        envelope: &Envelope,
        message: &[u8],
        failed: Vec<Failed>,
    ) {
        let bounced = self.report_failures(envelope, message, &failed).await;
        if failed.is_empty() || bounced {
            tracing::debug!(queue_id = id, "done");
            if let Err(e) = self.queue.remove(id).await {
                tracing::error!(queue_id = id, error = %e, "cannot remove delivered message");
            }
        } else if let Err(e) = self.queue.park(id).await {
            tracing::error!(queue_id = id, error = %e, "cannot park failed message");
        }
        self.finish(id, token, None).await;
    }

    async fn finish(&self, id: &str, token: u64, retry: Option<(usize, Instant)>) {
        let mut schedule = self.schedule.lock().await;
        if schedule.in_flight.get(id) != Some(&token) {
            tracing::error!(queue_id = id, "attempt finished without owning the message");
            return;
        }
        schedule.in_flight.remove(id);
        match retry {
            Some(at) => {
                schedule.waiting.insert(id.to_string(), at);
            }
            None => {
                schedule.waiting.remove(id);
            }
        }
    }

    async fn deliver(&self, envelope: &Envelope, message: &[u8]) -> Outcome {
        let local: Vec<&QueuedRecipient> = envelope.recipients.iter().filter(|r| r.local).collect();
        let remote: Vec<&QueuedRecipient> =
            envelope.recipients.iter().filter(|r| !r.local).collect();
        let mut out = Outcome::default();
        if !remote.is_empty() {
            match &self.outbound {
                Some(outbound) => {
                    self.deliver_remote(outbound, envelope, &remote, message, &mut out)
                        .await
                }
                None => {
                    out.reason =
                        "outbound delivery to remote domains is not enabled on this node".into();
                    out.remaining.extend(remote.into_iter().cloned());
                }
            }
        }
        let Outcome {
            remaining,
            failed,
            succeeded,
            reason,
        } = &mut out;
        if !local.is_empty() {
            let span = tracing::info_span!(
                target: postbay_telemetry::traces::TARGET,
                "lmtp.send",
                otel.kind = "client",
                rcpts = local.len(),
            );
            let sent = self.lmtp.deliver(envelope, &local, message);
            match tracing::Instrument::instrument(sent, span).await {
                Ok(replies) => {
                    for (rcpt, reply) in local.into_iter().zip(replies) {
                        if reply.is_success() {
                            postbay_telemetry::delivery_attempt("delivered", "local");
                            succeeded.push((rcpt.clone(), "delivered", reply, None));
                        } else if reply.is_permanent() {
                            postbay_telemetry::delivery_attempt("bounced", "local");
                            failed.push((rcpt.clone(), reply, None));
                        } else {
                            postbay_telemetry::delivery_attempt("deferred", "local");
                            *reason = format!("{} {}", reply.code, reply.text);
                            remaining.push(rcpt.clone());
                        }
                    }
                }
                Err(e) => {
                    *reason = e.to_string();
                    for _ in &local {
                        postbay_telemetry::delivery_attempt("deferred", "local");
                    }
                    remaining.extend(local.into_iter().cloned());
                }
            }
        }
        out
    }

    /// Remote recipients, one SMTP delivery per next hop (a domain, the relayhost, a transport)
    /// (at most `per_destination` at once per destination across messages). Returns the
    /// deferred, the failed, and why deferred.
    async fn deliver_remote(
        &self,
        outbound: &Outbound,
        envelope: &Envelope,
        remote: &[&QueuedRecipient],
        message: &[u8],
        out: &mut Outcome,
    ) {
        let forwarded = self.srs_sender(envelope, remote).await;
        let mut hops: Vec<(String, Nexthop, &str, Vec<&QueuedRecipient>)> = Vec::new();
        for rcpt in remote {
            let hop = outbound.nexthop(&rcpt.address);
            let key = outbound.key(&hop);
            let from = match &forwarded {
                Some(srs) if rcpt.original != rcpt.address => srs.as_str(),
                _ => envelope.mail_from.as_str(),
            };
            match hops.iter_mut().find(|(k, _, f, _)| *k == key && *f == from) {
                Some((_, _, _, list)) => list.push(rcpt),
                None => hops.push((key, hop, from, vec![rcpt])),
            }
        }
        for (key, hop, mail_from, rcpts) in hops {
            let addresses: Vec<&str> = rcpts.iter().map(|r| r.address.as_str()).collect();
            let dsn = dsn_params(envelope, &rcpts);
            // The span includes the wait for a per-destination slot: a slow delivery may be
            // a queue behind a busy destination.
            let span = tracing::info_span!(
                target: postbay_telemetry::traces::TARGET,
                "smtp.send",
                otel.kind = "client",
                destination = key.as_str(),
                rcpts = addresses.len(),
            );
            let sent = async {
                let _permit = self.destinations.acquire(&key).await;
                let out = crate::outbound::Outgoing {
                    mail_from,
                    recipients: &addresses,
                    message,
                    eight_bit: envelope.eight_bit,
                    smtputf8: envelope.smtputf8,
                    dsn: &dsn,
                };
                outbound.deliver(&hop, &out).await
            };
            let verdicts = tracing::Instrument::instrument(sent, span).await;
            for (rcpt, verdict) in rcpts.into_iter().zip(verdicts) {
                match verdict {
                    Verdict::Delivered { mta, dsn } => {
                        postbay_telemetry::delivery_attempt("delivered", "remote");
                        if !dsn {
                            // RFC 3461 §6.2.1: the next hop cannot report; we say "relayed".
                            let reply = ServerReply {
                                code: 250,
                                text: format!(
                                    "2.0.0 relayed to {mta}, which does not report delivery"
                                ),
                            };
                            out.succeeded
                                .push((rcpt.clone(), "relayed", reply, Some(mta.clone())));
                        }
                        tracing::info!(
                            queue_id = envelope.id,
                            rcpt = rcpt.address,
                            mx = mta,
                            "delivered"
                        );
                    }
                    Verdict::Failed { reply, mta } => {
                        postbay_telemetry::delivery_attempt("bounced", "remote");
                        out.failed.push((rcpt.clone(), reply, mta));
                    }
                    Verdict::Deferred { reason: why } => {
                        postbay_telemetry::delivery_attempt("deferred", "remote");
                        out.reason = why;
                        out.remaining.push(rcpt.clone());
                    }
                }
            }
        }
    }

    /// The SRS reverse path for this message's forwarded recipients (those an alias turned
    /// into a remote address), when SRS is on and the sender's domain is not ours: the
    /// receiver checks SPF against our servers, not the sender's.
    async fn srs_sender(&self, envelope: &Envelope, remote: &[&QueuedRecipient]) -> Option<String> {
        let srs = self.settings.srs.as_ref()?;
        if envelope.mail_from.is_empty() || remote.iter().all(|r| r.original == r.address) {
            return None;
        }
        match self.store.resolve(&envelope.mail_from).await {
            Ok(Resolution::NonLocalDomain) => {
                Some(srs.forward(&envelope.mail_from, crate::now_unix()))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(queue_id = envelope.id, error = %e, "sender lookup for SRS failed; forwarding as it came");
                None
            }
        }
    }

    /// Logs permanent failures and sends the sender a bounce for those it wants to hear of
    /// (RFC 3461 NOTIFY). Returns whether the failures are fully handled (bounce queued, or
    /// none wanted); false means the message should be kept for an admin (null sender, or
    /// the bounce could not be queued).
    async fn report_failures(
        &self,
        envelope: &Envelope,
        message: &[u8],
        failed: &[Failed],
    ) -> bool {
        for (rcpt, reply, _) in failed {
            tracing::warn!(
                queue_id = envelope.id,
                rcpt = rcpt.address,
                code = reply.code,
                reply = reply.text,
                "permanent delivery failure"
            );
        }
        let entries: Vec<dsn::Entry<'_>> = failed
            .iter()
            .filter(|(r, _, _)| dsn::wanted(r.notify, "failed"))
            .map(|(r, reply, mta)| entry(r, "failed", reply, mta.as_deref()))
            .collect();
        if entries.is_empty() {
            return true;
        }
        if envelope.mail_from.is_empty() {
            tracing::warn!(
                queue_id = envelope.id,
                "not bouncing a message with a null sender"
            );
            return false;
        }
        self.notify_sender(envelope, message, &entries).await
    }

    /// NOTIFY=SUCCESS: a report of the recipients delivered (or relayed) in this attempt.
    async fn report_success(&self, envelope: &Envelope, message: &[u8], done: &[Succeeded]) {
        let entries: Vec<dsn::Entry<'_>> = done
            .iter()
            .filter(|(r, action, _, _)| dsn::wanted(r.notify, action))
            .map(|(r, action, reply, mta)| entry(r, action, reply, mta.as_deref()))
            .collect();
        if entries.is_empty() || envelope.mail_from.is_empty() {
            return;
        }
        self.notify_sender(envelope, message, &entries).await;
    }

    /// The delay warning: the recipients still waiting, with the last reason.
    async fn report_delay(
        &self,
        envelope: &Envelope,
        message: &[u8],
        waiting: &[QueuedRecipient],
        reason: &str,
    ) {
        let reply = ServerReply {
            code: 400,
            text: format!("4.0.0 {reason}"),
        };
        let entries: Vec<dsn::Entry<'_>> = waiting
            .iter()
            .filter(|r| dsn::wanted(r.notify, "delayed"))
            .map(|r| entry(r, "delayed", &reply, None))
            .collect();
        if entries.is_empty() || envelope.mail_from.is_empty() {
            return;
        }
        tracing::info!(
            queue_id = envelope.id,
            rcpts = entries.len(),
            "delay warning"
        );
        self.notify_sender(envelope, message, &entries).await;
    }

    /// Queues a DSN to the sender; whether it was queued (or the sender is gone).
    async fn notify_sender(
        &self,
        envelope: &Envelope,
        message: &[u8],
        entries: &[dsn::Entry<'_>],
    ) -> bool {
        let now = crate::now_unix();
        let about = dsn::About {
            queue_id: &envelope.id,
            sender: &envelope.mail_from,
            arrival: envelope.received_at,
            envid: envelope.envid.as_deref(),
            full: envelope.ret == Some(dsn::Ret::Full),
            original: message,
        };
        let report = dsn::report(&self.hostname, &about, now, entries);
        let to = |address: String, local: bool| QueuedRecipient {
            address,
            original: envelope.mail_from.clone(),
            local,
            // RFC 3461 §5.2.1: a DSN asks for no DSN.
            notify: Some(dsn::Notify::default()),
            orcpt: None,
        };
        let recipients = match self.store.resolve(&envelope.mail_from).await {
            Ok(Resolution::Deliver(targets)) => targets
                .into_iter()
                .map(|t| match t {
                    Recipient::Local(a) => to(a, true),
                    Recipient::Remote(a) => to(a, false),
                })
                .collect(),
            Ok(Resolution::NonLocalDomain) => vec![to(envelope.mail_from.clone(), false)],
            Ok(Resolution::Unknown) => {
                tracing::warn!(
                    queue_id = envelope.id,
                    sender = envelope.mail_from,
                    "sender is an unknown local address, report dropped"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(queue_id = envelope.id, error = %e, "cannot resolve the sender for a report");
                return false;
            }
        };
        let report_envelope = Envelope {
            id: Queue::new_id(),
            mail_from: String::new(),
            recipients,
            received_at: now,
            client_ip: "127.0.0.1".into(),
            helo: self.hostname.clone(),
            smtputf8: envelope.smtputf8,
            eight_bit: true,
            attempts: 0,
            next_attempt: 0,
            // The report is part of the message's story.
            trace: postbay_telemetry::traces::traceparent(&tracing::Span::current()),
            ret: None,
            envid: None,
            warned: false,
        };
        let action = entries.first().map(|e| e.action).unwrap_or("failed");
        match self
            .queue
            .enqueue(&report_envelope, Vec::new(), report)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    queue_id = envelope.id,
                    dsn_id = report_envelope.id,
                    action,
                    "delivery status notification queued"
                );
                true
            }
            Err(e) => {
                tracing::error!(queue_id = envelope.id, error = %e, "cannot queue a report");
                false
            }
        }
    }

    async fn rewrite(&self, envelope: &Envelope, message: &[u8]) -> Result<(), super::QueueError> {
        let path = self.queue.path_of(&envelope.id);
        let mut line = serde_json::to_vec(envelope).expect("envelope serialises");
        line.push(b'\n');
        let message = message.to_vec();
        tokio::task::spawn_blocking(move || {
            postbay_store::fs::write_file_durably(&path, &[&line, &message])
        })
        .await
        .map_err(super::blocking("rewrite"))??;
        Ok(())
    }
}

/// One line of a report about `r`.
fn entry<'a>(
    r: &'a QueuedRecipient,
    action: &'static str,
    reply: &'a ServerReply,
    mta: Option<&'a str>,
) -> dsn::Entry<'a> {
    dsn::Entry {
        recipient: &r.original,
        orcpt: r.orcpt.as_deref(),
        action,
        code: reply.code,
        text: &reply.text,
        remote_mta: mta,
    }
}

/// The RFC 3461 parameters of `rcpts` for the next hop: RET and ENVID as the client gave
/// them; NOTIFY as given; ORCPT as given, else the address the client used when an alias
/// changed it (RFC 3461 §4.2 allows adding it), so the far end's report names it.
fn dsn_params(envelope: &Envelope, rcpts: &[&QueuedRecipient]) -> crate::outbound::DsnParams {
    let mut mail = Vec::new();
    match envelope.ret {
        Some(dsn::Ret::Full) => mail.push("RET=FULL".to_string()),
        Some(dsn::Ret::Hdrs) => mail.push("RET=HDRS".to_string()),
        None => {}
    }
    if let Some(envid) = &envelope.envid {
        mail.push(format!("ENVID={}", dsn::xtext(envid)));
    }
    let rcpt = rcpts
        .iter()
        .map(|r| {
            let mut params = Vec::new();
            if let Some(n) = r.notify {
                params.push(format!("NOTIFY={}", n.keyword()));
            }
            match &r.orcpt {
                Some(o) => params.push(format!("ORCPT=rfc822;{}", dsn::xtext(o))),
                None if r.original != r.address && !r.original.is_empty() => {
                    params.push(format!("ORCPT=rfc822;{}", dsn::xtext(&r.original)));
                }
                None => {}
            }
            params.join(" ")
        })
        .collect();
    crate::outbound::DsnParams {
        mail: mail.join(" "),
        rcpt,
    }
}
