//! Rspamd's HTTP protocol: which endpoint, the envelope in request headers, the JSON reply.
//! Parsing and encoding only; `crate::server` does the I/O.

pub mod reply;
pub mod request;

pub use reply::{CheckReply, ErrorReply, LearnReply, MilterReply, SymbolReply};
pub use request::{Endpoint, Envelope};

/// A request the filter will not serve, and the HTTP status it gets.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("method {0} not allowed here")]
    Method(String),
    #[error("bad {name} header: {reason}")]
    Header {
        name: &'static str,
        reason: &'static str,
    },
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("compressed bodies are not supported")]
    Compressed,
    #[error("empty message")]
    Empty,
    #[error("reading the body: {0}")]
    Body(String),
}

impl ProtocolError {
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ProtocolError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProtocolError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProtocolError::Compressed => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProtocolError::Header { .. } | ProtocolError::Empty | ProtocolError::Body(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}
