//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030): receive the content, add our trace header,
//! write it durably to the queue, and only then say 250.

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Ending, Session, Transaction};
use crate::inbound::received::Trace;
use crate::proto::reply::Reply;
use crate::proto::{read_chunk, read_data, Content};
use crate::queue::{Envelope, Queue, QueuedRecipient};
use postbay_net::wire::ReadError;
use postbay_store::Recipient;

/// RFC 5321 §6.3: a message that has passed this many hops is looping.
const MAX_HOPS: usize = 50;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn data(&mut self) -> Result<Option<Ending>, ReadError> {
        if self.chunks.is_some() {
            self.reply(Reply::bad_sequence("DATA not allowed during BDAT transfer"));
            return Ok(None);
        }
        if self.tx.mail_from.is_none() {
            self.reply(Reply::bad_sequence("Need MAIL command"));
            return Ok(None);
        }
        if self.tx.rcpts.is_empty() {
            self.reply(Reply::new(554, "5.5.1", "No valid recipients"));
            return Ok(None);
        }
        self.reply(Reply::new(
            354,
            "",
            "Start mail input; end with <CRLF>.<CRLF>",
        ));
        let content = read_data(
            &mut self.wire,
            self.ctx.config.max_message_size,
            self.ctx.config.data_timeout,
        )
        .await?;
        self.finish_message(content, "DATA").await;
        Ok(None)
    }

    pub(super) async fn bdat(
        &mut self,
        size: usize,
        last: bool,
    ) -> Result<Option<Ending>, ReadError> {
        let mut content = self.chunks.take().unwrap_or(Content {
            bytes: Vec::new(),
            too_big: false,
        });
        read_chunk(
            &mut self.wire,
            size,
            &mut content,
            self.ctx.config.max_message_size,
            self.ctx.config.data_timeout,
        )
        .await?;
        if self.tx.mail_from.is_none() || self.tx.rcpts.is_empty() {
            // The chunk was consumed to stay in sync; the transaction is not valid.
            self.reply(Reply::bad_sequence("Need MAIL and RCPT before BDAT"));
            return Ok(None);
        }
        if last {
            self.finish_message(content, "BDAT").await;
        } else {
            self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
            self.chunks = Some(content);
        }
        Ok(None)
    }

    /// One message's trace starts here: the span covers the checks, the filter, the
    /// signing and the fsync'd enqueue, and its context goes into the queue entry.
    /// `transfer`: DATA or BDAT, for the log.
    async fn finish_message(&mut self, content: Content, transfer: &'static str) {
        let span = tracing::info_span!(
            target: postbay_telemetry::traces::TARGET,
            "smtp.message",
            otel.kind = "server",
            size = content.bytes.len(),
            rcpts = self.tx.rcpts.len(),
            queue_id = tracing::field::Empty,
            reply = tracing::field::Empty,
        );
        let reply =
            tracing::Instrument::instrument(self.accept_message(content, transfer), span.clone())
                .await;
        span.record("reply", i64::from(reply.code));
        self.reply(reply);
    }

    /// The checks, the filter or submission rules, and the enqueue; returns the one reply.
    async fn accept_message(&mut self, content: Content, transfer: &'static str) -> Reply {
        let tx = std::mem::take(&mut self.tx);
        self.chunks = None;
        if content.too_big {
            return Reply::too_big();
        }
        if count_received(&content.bytes) > MAX_HOPS {
            return Reply::new(554, "5.4.6", "Too many hops, mail loop detected");
        }
        let body = crate::proto::normalize_bare_lf(content.bytes);
        let id = Queue::new_id();
        tracing::Span::current().record("queue_id", id.as_str());
        let now = crate::now_unix();
        let body = match self.login.clone() {
            Some(login) => match self.submitted(&login, &tx, body, &id, now).await {
                Ok(body) => body,
                Err(refusal) => return refusal,
            },
            None => match (&self.ctx.config.filter, self.role) {
                (Some(filter), super::Role::Mx { .. }) => {
                    match super::filter::decide(filter, &self.scan_envelope(&tx, &id), body).await {
                        Ok(body) => body,
                        Err(refusal) => return refusal,
                    }
                }
                _ => body,
            },
        };
        self.enqueue(tx, body, id, now, transfer).await
    }

    fn scan_envelope<'a>(
        &'a self,
        tx: &'a Transaction,
        id: &'a str,
    ) -> super::filter::ScanEnvelope<'a> {
        super::filter::ScanEnvelope {
            ip: self.peer.ip(),
            helo: self.helo.as_deref().unwrap_or(""),
            mail_from: tx.mail_from.as_deref().unwrap_or(""),
            rcpts: tx.rcpts.iter().map(|r| r.original.as_str()).collect(),
            queue_id: id,
        }
    }

    /// A logged-in user's message: the submission fixes (RFC 6409 §8), the `From:` check,
    /// the sending limit, and the DKIM signatures of the `From:` domain.
    async fn submitted(
        &mut self,
        login: &super::Login,
        tx: &Transaction,
        body: Vec<u8>,
        id: &str,
        now: i64,
    ) -> Result<Vec<u8>, Reply> {
        let prepared = super::submission::prepare(&body, &self.ctx.config.hostname, id, now);
        let user = login.rights.login();
        if prepared.from_fields != 1 || prepared.from.is_empty() {
            return Err(Reply::new(
                550,
                "5.6.0",
                "Message must have exactly one From header with an address",
            ));
        }
        if let Some(other) = prepared.from.iter().find(|a| !login.rights.allows(a)) {
            tracing::info!(peer = %self.peer, login = user, from = other, "From header not owned by login");
            // 553 is not a reply to DATA (RFC 5321 §4.3.2); 550 5.7.1 is the policy refusal.
            return Err(Reply::new(
                550,
                "5.7.1",
                format!("From address rejected: not owned by user {user}"),
            )
            .because("sender_mismatch"));
        }
        let recipients = tx.rcpts.len().try_into().unwrap_or(u32::MAX);
        if let Err(over) =
            self.ctx
                .sends
                .try_send(user, recipients, login.limits, std::time::Instant::now())
        {
            tracing::warn!(peer = %self.peer, login = user, ?over, "sending limit reached");
            return Err(
                Reply::new(450, "4.7.1", "Sending rate limit exceeded, try again later")
                    .because("rate_limit"),
            );
        }
        let domain = prepared.from[0]
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_string();
        let message = prepared.message;
        match self.ctx.signer.sign(&domain, &message).await {
            Ok(signed) => {
                if let Some(why) = signed.unsigned() {
                    tracing::warn!(
                        domain,
                        ?why,
                        queue_id = id,
                        "sending unsigned: no usable DKIM key for the From domain"
                    );
                }
                let mut out = signed.header;
                out.extend_from_slice(&message);
                Ok(out)
            }
            Err(e) => {
                // A key that cannot be read must not stop the user's mail: it leaves unsigned,
                // and the log says why.
                tracing::error!(domain, error = %e, "DKIM signing failed; sending unsigned");
                Ok(message)
            }
        }
    }

    async fn enqueue(
        &mut self,
        tx: Transaction,
        body: Vec<u8>,
        id: String,
        now: i64,
        transfer: &'static str,
    ) -> Reply {
        let mut recipients: Vec<QueuedRecipient> = Vec::new();
        for rcpt in &tx.rcpts {
            for target in &rcpt.targets {
                let (address, local) = match target {
                    Recipient::Local(a) => (a.clone(), true),
                    Recipient::Remote(a) => (a.clone(), false),
                };
                if !recipients.iter().any(|r| r.address == address) {
                    recipients.push(QueuedRecipient {
                        address,
                        original: rcpt.original.clone(),
                        local,
                        notify: rcpt.notify,
                        orcpt: rcpt.orcpt.clone(),
                    });
                }
            }
        }
        let tls = self.wire.stream.tls_description();
        // RFC 3848 §2 and RFC 8314 §4.3: the A records an authenticated submission.
        let protocol = match (self.esmtp, tls.is_some(), self.login.is_some()) {
            (true, true, true) => "ESMTPSA",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, false, false) => "ESMTP",
            (false, _, _) => "SMTP",
        };
        let helo = self.helo.clone().unwrap_or_default();
        let single = (tx.rcpts.len() == 1).then(|| tx.rcpts[0].original.as_str());
        // Submitted mail is not scanned, but its authentication is recorded (issue 13).
        let mut header = match &self.login {
            Some(login) => super::received::submission_auth_results(
                &self.ctx.config.hostname,
                login.rights.login(),
                tx.mail_from.as_deref().unwrap_or(""),
            ),
            None => Vec::new(),
        };
        let trace = Trace {
            helo: &helo,
            client_ip: self.peer.ip(),
            by_host: &self.ctx.config.hostname,
            protocol,
            tls: tls.as_deref(),
            queue_id: &id,
            single_recipient: single,
            timestamp: now,
        }
        .header();
        header.extend_from_slice(&trace);
        let envelope = Envelope {
            id: id.clone(),
            mail_from: tx.mail_from.unwrap_or_default(),
            recipients,
            received_at: now,
            client_ip: self.peer.ip().to_string(),
            helo,
            smtputf8: tx.smtputf8,
            eight_bit: tx.eight_bit,
            attempts: 0,
            next_attempt: 0,
            trace: postbay_telemetry::traces::traceparent(&tracing::Span::current()),
            ret: tx.ret,
            envid: tx.envid.clone(),
            warned: false,
        };
        match self.ctx.queue.enqueue(&envelope, header, body).await {
            Ok(()) => {
                tracing::info!(queue_id = id, from = envelope.mail_from, rcpts = envelope.recipients.len(), peer = %self.peer, transfer, "message queued");
                postbay_telemetry::message_accepted(self.role.metric_label());
                Reply::new(250, "2.0.0", format!("Ok: queued as {id}"))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot queue message");
                Reply::temporary_failure()
            }
        }
    }
}

/// Number of Received headers in the header section.
pub(super) fn count_received(message: &[u8]) -> usize {
    let header_end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let headers = &message[..header_end];
    let mut count = 0;
    let mut line_start = true;
    for (i, &b) in headers.iter().enumerate() {
        if line_start
            && headers.len() - i >= 9
            && headers[i..i + 9].eq_ignore_ascii_case(b"received:")
        {
            count += 1;
        }
        line_start = b == b'\n';
    }
    count
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
