//! Final delivery into a mailbox: add Return-Path and Delivered-To (RFC 5321 §4.4), store
//! the message in the INBOX, and say per recipient what happened in LMTP terms.

use std::sync::Arc;

use crate::proto::reply::Reply;
use postbay_store::blobs::bytes_owned::Part;
use postbay_store::NewMessage;
use postbay_store::{Error as StoreError, Store};

/// One delivery: who sent it, the idempotency id (TRANSID) and the content.
pub struct Delivery<'a> {
    pub return_path: &'a str,
    pub transaction_id: Option<&'a str>,
    pub content: Arc<Vec<u8>>,
    pub received_at: i64,
}

/// Stores the message for `mailbox` (a canonical local address) and returns the LMTP reply.
pub async fn deliver_to(
    store: &Store,
    mailbox: &str,
    original_rcpt: &str,
    delivery: &Delivery<'_>,
) -> Reply {
    let header = format!(
        "Return-Path: <{}>\r\nDelivered-To: {}\r\n",
        sanitize(delivery.return_path),
        sanitize(mailbox)
    );
    let message = NewMessage {
        parts: vec![
            Part::Owned(header.into_bytes()),
            Part::Shared(delivery.content.clone()),
        ],
        internal_date: delivery.received_at,
        flags: Vec::new(),
        delivery_key: delivery.transaction_id.map(|t| format!("{t}:{mailbox}")),
    };
    // The filter's add-header verdict (X-Spam: Yes) files into Junk; a mailbox whose Junk
    // folder was deleted gets it in INBOX.
    let folder = if is_spam(&delivery.content) {
        "Junk"
    } else {
        "INBOX"
    };
    let span = tracing::info_span!(
        target: postbay_telemetry::traces::TARGET,
        "store.deliver",
        mailbox,
        folder,
        uid = tracing::field::Empty,
        duplicate = tracing::field::Empty,
    );
    let stored = async {
        match store.deliver(mailbox, folder, message.clone()).await {
            Err(StoreError::NoSuchFolder(_)) if folder != "INBOX" => {
                store.deliver(mailbox, "INBOX", message).await
            }
            other => other,
        }
    };
    let result = tracing::Instrument::instrument(stored, span.clone()).await;
    if let Ok(done) = &result {
        span.record("uid", done.uid);
        span.record("duplicate", done.duplicate);
    }
    match result {
        Ok(done) => {
            tracing::info!(
                mailbox,
                uid = done.uid,
                duplicate = done.duplicate,
                transid = delivery.transaction_id,
                "delivered"
            );
            Reply::new(250, "2.0.0", format!("<{original_rcpt}> Saved"))
        }
        Err(StoreError::OverQuota { .. }) => {
            Reply::new(552, "5.2.2", format!("<{original_rcpt}> Mailbox is full"))
        }
        Err(StoreError::NoSuchMailbox(_)) | Err(StoreError::NoSuchFolder(_)) => {
            Reply::new(550, "5.1.1", format!("<{original_rcpt}> User unknown"))
        }
        Err(e) => {
            tracing::error!(mailbox, error = %e, "delivery failed");
            Reply::new(
                451,
                "4.3.0",
                format!("<{original_rcpt}> Temporary failure, try again later"),
            )
        }
    }
}

/// Whether the header section has an `X-Spam: Yes` field (what the filter adds from its
/// add-header threshold, as Rspamd's milter headers do).
pub fn is_spam(message: &[u8]) -> bool {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(message.len());
    message[..end].split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        line[..colon].eq_ignore_ascii_case(b"X-Spam")
            && line[colon + 1..].trim_ascii().eq_ignore_ascii_case(b"yes")
    })
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '<' && *c != '>')
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn spam_header() {
        assert!(super::is_spam(b"From: a\r\nX-Spam: Yes\r\n\r\nbody"));
        assert!(super::is_spam(b"x-spam:yes\r\n\r\n"));
        assert!(!super::is_spam(b"X-Spam-Score: 7\r\n\r\nX-Spam: Yes\r\n"));
        assert!(!super::is_spam(b"X-Spam: No\r\n\r\n"));
    }
}
