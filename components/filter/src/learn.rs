//! Learning (`/learnspam`, `/learnham`): what the HTTP endpoints hand a message to.

use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// Rspamd answers the same when a message was learnt already.
    #[error("<{0}> has been already learned as {1}, ignore it")]
    AlreadyLearned(String, &'static str),
    #[error("token storage: {0}")]
    Storage(String),
}

impl LearnError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            LearnError::AlreadyLearned(..) => http::StatusCode::from_u16(208).expect("valid"),
            LearnError::Storage(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

pub trait Learner: Send + Sync {
    fn learn<'a>(&'a self, raw: &'a [u8], spam: bool) -> BoxFuture<'a, Result<(), LearnError>>;
}
