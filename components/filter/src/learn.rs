//! Learning (`/learnspam`, `/learnham`): what the HTTP endpoints hand a message to.

use futures::future::BoxFuture;

use crate::protocol::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// Rspamd answers the same when a message was learnt already.
    #[error("<{0}> has been already learned as {1}, ignore it")]
    AlreadyLearned(String, &'static str),
    #[error("token storage: {0}")]
    Storage(String),
    /// Per-domain classifiers need to know whose: `Deliver-To` or `Rcpt`.
    #[error("the classifier is per domain: name the recipient (Deliver-To or Rcpt header)")]
    NoRecipient,
}

impl LearnError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            LearnError::AlreadyLearned(..) => http::StatusCode::from_u16(208).expect("valid"),
            LearnError::Storage(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            LearnError::NoRecipient => http::StatusCode::BAD_REQUEST,
        }
    }
}

pub trait Learner: Send + Sync {
    /// Learns `raw` as spam or ham; `envelope` names the recipient (Deliver-To, Rcpt) whose
    /// classifier learns when there is one per domain.
    fn learn<'a>(
        &'a self,
        raw: &'a [u8],
        spam: bool,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), LearnError>>;
}
