//! Drains the queue: hands each message to the mailbox component over LMTP, retries
//! temporary failures with backoff, and parks messages that can never be delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Mutex, Semaphore};

use super::{dsn, Envelope, Queue, QueueError, QueuedRecipient};
use crate::lmtp::client::{LmtpClient, ServerReply};
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
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            concurrency: 32,
            scan_interval: Duration::from_secs(5),
            max_age: Duration::from_secs(5 * 86_400),
            backoff: BACKOFF.iter().map(|&s| Duration::from_secs(s)).collect(),
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
}

pub struct Runner {
    queue: Queue,
    lmtp: Arc<LmtpClient>,
    /// Resolves bounce recipients (the original sender).
    store: postbay_store::Store,
    hostname: String,
    settings: RunnerSettings,
    slots: Arc<Semaphore>,
    schedule: Arc<Mutex<Schedule>>,
}

enum Outcome {
    /// Every recipient got a final answer (delivered or permanently failed).
    Done {
        failed: Vec<(QueuedRecipient, ServerReply)>,
    },
    /// Some recipients must be tried again (others may have failed for good).
    Retry {
        remaining: Vec<QueuedRecipient>,
        failed: Vec<(QueuedRecipient, ServerReply)>,
        reason: String,
    },
}

impl Runner {
    pub fn new(
        queue: Queue,
        lmtp: Arc<LmtpClient>,
        store: postbay_store::Store,
        hostname: String,
        settings: RunnerSettings,
    ) -> Arc<Runner> {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        Arc::new(Runner {
            queue,
            lmtp,
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
        loop {
            tokio::select! {
                id = wake.recv() => match id {
                    Some(id) => self.clone().start_new(id).await,
                    None => break,
                },
                _ = tick.tick() => self.clone().start_due().await,
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
        let outcome = self.deliver(&envelope, &message).await;
        match outcome {
            Outcome::Done { failed } => {
                let bounced = self.report_failures(&envelope, &message, &failed).await;
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
            Outcome::Retry {
                remaining,
                failed,
                reason,
            } => {
                self.report_failures(&envelope, &message, &failed).await;
                let age = crate::now_unix() - envelope.received_at;
                if age as u64 > self.settings.max_age.as_secs() {
                    tracing::warn!(queue_id = id, reason, "giving up after max queue age");
                    let _ = self.queue.park(id).await;
                    self.finish(id, token, None).await;
                    return;
                }
                if remaining.len() < envelope.recipients.len() {
                    let mut shrunk = envelope.clone();
                    shrunk.recipients = remaining;
                    if let Err(e) = self.rewrite(&shrunk, &message).await {
                        tracing::error!(queue_id = id, error = %e, "cannot record partial delivery");
                    }
                }
                let attempts = {
                    let s = self.schedule.lock().await;
                    s.waiting.get(id).map(|(n, _)| *n).unwrap_or(0) + 1
                };
                let schedule = &self.settings.backoff;
                let delay = schedule
                    .get((attempts - 1).min(schedule.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(Duration::from_secs(BACKOFF[0]));
                tracing::info!(queue_id = id, attempts, ?delay, reason, "delivery deferred");
                self.finish(id, token, Some((attempts, Instant::now() + delay)))
                    .await;
            }
        }
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
        let mut remaining: Vec<QueuedRecipient> = envelope
            .recipients
            .iter()
            .filter(|r| !r.local)
            .cloned()
            .collect();
        let mut failed = Vec::new();
        let mut reason = String::new();
        if !remaining.is_empty() {
            reason = "outbound delivery to remote domains is not enabled on this node".into();
        }
        if !local.is_empty() {
            match self.lmtp.deliver(envelope, &local, message).await {
                Ok(replies) => {
                    for (rcpt, reply) in local.into_iter().zip(replies) {
                        if reply.is_success() {
                            continue;
                        } else if reply.is_permanent() {
                            failed.push((rcpt.clone(), reply));
                        } else {
                            reason = format!("{} {}", reply.code, reply.text);
                            remaining.push(rcpt.clone());
                        }
                    }
                }
                Err(e) => {
                    reason = e.to_string();
                    remaining.extend(local.into_iter().cloned());
                }
            }
        }
        if remaining.is_empty() {
            Outcome::Done { failed }
        } else {
            Outcome::Retry {
                remaining,
                failed,
                reason,
            }
        }
    }

    /// Logs permanent failures and sends the sender a bounce. Returns whether the failures
    /// are fully handled (bounce queued); false means the message should be kept for an
    /// admin (null sender, or the bounce could not be queued).
    async fn report_failures(
        &self,
        envelope: &Envelope,
        message: &[u8],
        failed: &[(QueuedRecipient, ServerReply)],
    ) -> bool {
        if failed.is_empty() {
            return true;
        }
        for (rcpt, reply) in failed {
            tracing::warn!(
                queue_id = envelope.id,
                rcpt = rcpt.address,
                code = reply.code,
                reply = reply.text,
                "permanent delivery failure"
            );
        }
        if envelope.mail_from.is_empty() {
            tracing::warn!(
                queue_id = envelope.id,
                "not bouncing a message with a null sender"
            );
            return false;
        }
        let failures: Vec<dsn::Failure<'_>> = failed
            .iter()
            .map(|(r, reply)| dsn::Failure {
                recipient: &r.original,
                code: reply.code,
                text: &reply.text,
            })
            .collect();
        let now = crate::now_unix();
        let bounce = dsn::bounce(
            &self.hostname,
            &envelope.id,
            &envelope.mail_from,
            envelope.received_at,
            now,
            &failures,
            message,
        );
        let recipients = match self.store.resolve(&envelope.mail_from).await {
            Ok(Resolution::Deliver(targets)) => targets
                .into_iter()
                .map(|t| match t {
                    Recipient::Local(a) => QueuedRecipient {
                        address: a,
                        original: envelope.mail_from.clone(),
                        local: true,
                    },
                    Recipient::Remote(a) => QueuedRecipient {
                        address: a,
                        original: envelope.mail_from.clone(),
                        local: false,
                    },
                })
                .collect(),
            Ok(Resolution::NonLocalDomain) => vec![QueuedRecipient {
                address: envelope.mail_from.clone(),
                original: envelope.mail_from.clone(),
                local: false,
            }],
            Ok(Resolution::Unknown) => {
                tracing::warn!(
                    queue_id = envelope.id,
                    sender = envelope.mail_from,
                    "sender is an unknown local address, bounce dropped"
                );
                return true;
            }
            Err(e) => {
                tracing::error!(queue_id = envelope.id, error = %e, "cannot resolve the sender for a bounce");
                return false;
            }
        };
        let bounce_envelope = Envelope {
            id: Queue::new_id(),
            mail_from: String::new(),
            recipients,
            received_at: now,
            client_ip: "127.0.0.1".into(),
            helo: self.hostname.clone(),
            smtputf8: envelope.smtputf8,
            eight_bit: true,
        };
        match self
            .queue
            .enqueue(&bounce_envelope, Vec::new(), bounce)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    queue_id = envelope.id,
                    bounce_id = bounce_envelope.id,
                    "bounce queued"
                );
                true
            }
            Err(e) => {
                tracing::error!(queue_id = envelope.id, error = %e, "cannot queue bounce");
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
