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
    match store.deliver(mailbox, "INBOX", message).await {
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

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != '<' && *c != '>')
        .collect()
}
