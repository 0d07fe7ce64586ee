//! One LMTP conversation (RFC 2033): LHLO, MAIL, RCPT..., DATA or BDAT, and one final
//! reply per accepted recipient, each reflecting that recipient's own delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::lmtp::deliver::{deliver_to, Delivery};
use crate::proto::reply::{multiline, Reply};
use crate::proto::{read_chunk, read_data, CommandReader, Content, QueueReply};
use postbay_net::wire::{MaybeTls, ReadError, Wire};
use postbay_store::{Recipient, Resolution, Store};

pub struct LmtpContext {
    pub hostname: String,
    pub store: Store,
    pub max_message_size: usize,
    pub timeout: Duration,
    pub max_recipients: usize,
}

struct Rcpt {
    original: String,
    mailboxes: Vec<String>,
}

#[derive(Default)]
struct Transaction {
    from: Option<String>,
    transaction_id: Option<String>,
    /// `XTRACE=` of MAIL: the sending attempt's trace context.
    trace: Option<String>,
    rcpts: Vec<Rcpt>,
    chunks: Option<Content>,
}

pub struct LmtpSession<S> {
    ctx: Arc<LmtpContext>,
    wire: Wire<S>,
    peer: SocketAddr,
    greeted: bool,
    tx: Transaction,
    /// The XTRACE value the reader took off the last MAIL line.
    mail_trace: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LmtpSession<S> {
    pub fn new(ctx: Arc<LmtpContext>, stream: MaybeTls<S>, peer: SocketAddr) -> Self {
        LmtpSession {
            ctx,
            wire: Wire::new(stream),
            peer,
            greeted: false,
            tx: Transaction::default(),
            mail_trace: None,
        }
    }

    pub async fn run(mut self) {
        self.wire
            .queue(format!("220 {} LMTP Postbay ready\r\n", self.ctx.hostname).as_bytes());
        let mut reader = CommandReader::extracting_mail_param(super::XTRACE);
        loop {
            let request = match reader.next(&mut self.wire, self.ctx.timeout).await {
                Ok(Ok(request)) => request,
                Ok(Err(e)) => {
                    self.wire.queue_reply(&lmtp_protocol_error(&e));
                    continue;
                }
                Err(ReadError::Timeout(_)) => {
                    self.wire.queue_reply(&Reply::timeout());
                    break;
                }
                Err(_) => break,
            };
            self.mail_trace = reader.take_extracted();
            match self.dispatch(request).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(ReadError::Timeout(_)) => {
                    self.wire.queue_reply(&Reply::timeout());
                    break;
                }
                Err(_) => break,
            }
        }
        self.wire.shutdown().await;
        tracing::debug!(peer = %self.peer, "lmtp session ended");
    }

    /// Handles one command; false ends the session.
    async fn dispatch(&mut self, request: Request<String>) -> Result<bool, ReadError> {
        match request {
            Request::Lhlo { host } => {
                self.greeted = true;
                self.tx = Transaction::default();
                let lines = vec![
                    format!("{} Hello {host}", self.ctx.hostname),
                    "PIPELINING".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "CHUNKING".into(),
                    "CHECKPOINT".into(),
                    super::XTRACE.into(),
                    format!("SIZE {}", self.ctx.max_message_size),
                ];
                multiline(250, &lines, self.wire.output_buffer());
            }
            Request::Ehlo { .. } | Request::Helo { .. } => {
                self.wire
                    .queue_reply(&Reply::new(500, "5.5.1", "This is LMTP: use LHLO"))
            }
            Request::Mail { from } => {
                if !self.greeted {
                    self.wire
                        .queue_reply(&Reply::bad_sequence("Send LHLO first"));
                } else if self.tx.from.is_some() {
                    self.wire
                        .queue_reply(&Reply::bad_sequence("Nested MAIL command"));
                } else if from.size > self.ctx.max_message_size {
                    self.wire.queue_reply(&Reply::too_big());
                } else {
                    self.tx.transaction_id = from.trans_id.clone();
                    self.tx.trace = self.mail_trace.take();
                    self.tx.from = Some(from.address);
                    self.wire
                        .queue_reply(&Reply::new(250, "2.1.0", "Sender OK"));
                }
            }
            Request::Rcpt { to } => self.rcpt(to.address).await,
            Request::Data => {
                if let Some(reply) = self.not_ready_for_content() {
                    self.wire.queue_reply(&reply);
                    return Ok(true);
                }
                self.wire.queue_reply(&Reply::new(
                    354,
                    "",
                    "Start mail input; end with <CRLF>.<CRLF>",
                ));
                let content =
                    read_data(&mut self.wire, self.ctx.max_message_size, self.ctx.timeout).await?;
                self.deliver(content).await;
            }
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                let mut content = self.tx.chunks.take().unwrap_or(Content {
                    bytes: Vec::new(),
                    too_big: false,
                });
                read_chunk(
                    &mut self.wire,
                    chunk_size,
                    &mut content,
                    self.ctx.max_message_size,
                    self.ctx.timeout,
                )
                .await?;
                if let Some(reply) = self.not_ready_for_content() {
                    self.wire.queue_reply(&reply);
                } else if is_last {
                    self.deliver(content).await;
                } else {
                    self.tx.chunks = Some(content);
                    self.wire.queue_reply(&Reply::new(
                        250,
                        "2.0.0",
                        format!("{chunk_size} octets received"),
                    ));
                }
            }
            Request::Rset => {
                self.tx = Transaction::default();
                self.wire.queue_reply(&Reply::ok());
            }
            Request::Noop { .. } => self.wire.queue_reply(&Reply::ok()),
            Request::Quit => {
                self.wire.queue_reply(&Reply::new(221, "2.0.0", "Bye"));
                return Ok(false);
            }
            Request::Vrfy { .. } => {
                self.wire
                    .queue_reply(&Reply::new(252, "2.5.0", "Cannot VRFY user"))
            }
            _ => self
                .wire
                .queue_reply(&Reply::new(502, "5.5.1", "Command not implemented")),
        }
        Ok(true)
    }

    fn not_ready_for_content(&self) -> Option<Reply> {
        if self.tx.from.is_none() {
            Some(Reply::bad_sequence("Need MAIL command"))
        } else if self.tx.rcpts.is_empty() {
            Some(Reply::new(503, "5.5.1", "No valid recipients"))
        } else {
            None
        }
    }

    async fn rcpt(&mut self, address: String) {
        if self.tx.from.is_none() {
            self.wire
                .queue_reply(&Reply::bad_sequence("Need MAIL before RCPT"));
            return;
        }
        if self.tx.rcpts.len() >= self.ctx.max_recipients {
            self.wire
                .queue_reply(&Reply::new(452, "4.5.3", "Too many recipients"));
            return;
        }
        // The SMTP queue sends canonical mailbox addresses: one lookup settles those.
        if let Ok(Some(mb)) = self.ctx.store.mailbox(&address).await {
            if mb.enabled {
                self.tx.rcpts.push(Rcpt {
                    original: address,
                    mailboxes: vec![mb.address],
                });
                self.wire
                    .queue_reply(&Reply::new(250, "2.1.5", "Recipient OK"));
                return;
            }
        }
        match self.ctx.store.resolve(&address).await {
            Ok(Resolution::Deliver(targets)) => {
                let mailboxes: Vec<String> = targets
                    .into_iter()
                    .filter_map(|t| match t {
                        Recipient::Local(m) => Some(m),
                        Recipient::Remote(_) => None,
                    })
                    .collect();
                if mailboxes.is_empty() {
                    // LMTP is final delivery: forwarding elsewhere is the MTA's job.
                    self.wire
                        .queue_reply(&Reply::new(550, "5.1.1", "Not a local mailbox"));
                } else {
                    self.tx.rcpts.push(Rcpt {
                        original: address,
                        mailboxes,
                    });
                    self.wire
                        .queue_reply(&Reply::new(250, "2.1.5", "Recipient OK"));
                }
            }
            Ok(_) => self
                .wire
                .queue_reply(&Reply::new(550, "5.1.1", "User unknown")),
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                self.wire.queue_reply(&Reply::temporary_failure());
            }
        }
    }

    /// Final delivery of one message, a span of the message's trace when the client sent
    /// its context.
    async fn deliver(&mut self, content: Content) {
        let span = tracing::info_span!(
            target: postbay_telemetry::traces::TARGET,
            "lmtp.deliver",
            otel.kind = "server",
            transid = self.tx.transaction_id.as_deref(),
            rcpts = self.tx.rcpts.len(),
            size = content.bytes.len(),
        );
        if let Some(parent) = &self.tx.trace {
            postbay_telemetry::traces::set_parent(&span, parent);
        }
        tracing::Instrument::instrument(self.deliver_traced(content), span).await
    }

    async fn deliver_traced(&mut self, content: Content) {
        let tx = std::mem::take(&mut self.tx);
        if content.too_big {
            for _ in &tx.rcpts {
                self.wire.queue_reply(&Reply::too_big());
            }
            return;
        }
        let delivery = Delivery {
            return_path: tx.from.as_deref().unwrap_or(""),
            transaction_id: tx.transaction_id.as_deref(),
            content: Arc::new(crate::proto::normalize_bare_lf(content.bytes)),
            received_at: postbay_store::now_unix(),
        };
        for rcpt in &tx.rcpts {
            let mut reply = None;
            for mailbox in &rcpt.mailboxes {
                let r = deliver_to(&self.ctx.store, mailbox, &rcpt.original, &delivery).await;
                // The worst outcome among the targets decides: a temporary failure makes the
                // client retry, and deduplication makes the retry safe for the others.
                let worse = match &reply {
                    None => true,
                    Some(prev) => rank(&r) > rank(prev),
                };
                if worse {
                    reply = Some(r);
                }
            }
            self.wire
                .queue_reply(&reply.unwrap_or_else(Reply::temporary_failure));
        }
    }
}

fn rank(reply: &Reply) -> u8 {
    match reply.code {
        200..=299 => 0,
        500..=599 => 1,
        _ => 2,
    }
}

fn lmtp_protocol_error(e: &smtp_proto::Error) -> Reply {
    match e {
        smtp_proto::Error::ResponseTooLong => Reply::line_too_long(),
        smtp_proto::Error::UnknownCommand => Reply::unknown_command(),
        _ => Reply::syntax("Syntax error"),
    }
}
