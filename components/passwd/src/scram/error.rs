//! Why a SCRAM exchange failed. No variant carries a proof, key or nonce, so all are safe to log.

/// A failed SCRAM-SHA-256 exchange. An unknown user and a wrong password both end as
/// [`ScramError::InvalidProof`], so the error cannot tell them apart either.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A client message longer than we accept.
    #[error("SCRAM client message longer than {limit} bytes")]
    TooLong { limit: usize },
    /// The message does not follow the RFC 5802 section 7 grammar.
    #[error("malformed SCRAM message: {0}")]
    InvalidEncoding(&'static str),
    /// A username or authzid with a bare `=`, an empty name, or other bytes RFC 5802
    /// section 5.1 forbids.
    #[error("invalid SCRAM username encoding: {0}")]
    InvalidUsernameEncoding(&'static str),
    /// `p=...`: the client wants channel binding, which needs a `-PLUS` mechanism we do not
    /// offer (RFC 5802 section 6).
    #[error("SCRAM channel binding (p=) is not supported: use SCRAM-SHA-256, not -PLUS")]
    ChannelBindingNotSupported,
    /// The reserved `m=` attribute, which RFC 5802 section 5.1 says must fail authentication.
    #[error("SCRAM mandatory extension (m=) is not supported")]
    ExtensionsNotSupported,
    /// An authzid other than the authenticating user: acting for someone else is not offered.
    #[error("SCRAM authorization identity differs from the username")]
    AuthzidNotAllowed,
    /// `c=` in the client-final message is not the gs2 header of the client-first message
    /// (RFC 5802 section 5.1).
    #[error("SCRAM channel binding data does not match the gs2 header")]
    ChannelBindingMismatch,
    /// `r=` in the client-final message is not the nonce the server sent.
    #[error("SCRAM nonce does not match the server's")]
    NonceMismatch,
    /// A wrong password, or a user without a SCRAM credential.
    #[error("SCRAM client proof is invalid")]
    InvalidProof,
    /// A caller-supplied server nonce with characters outside RFC 5802's `printable`.
    #[error("server nonce must be 1..={limit} printable ASCII characters other than ','")]
    InvalidServerNonce { limit: usize },
}

impl ScramError {
    /// The `server-error-value` of RFC 5802 section 7, for protocols that send `e=...` as
    /// the server-final message instead of a bare failure reply.
    pub fn server_error_value(&self) -> &'static str {
        match self {
            ScramError::InvalidEncoding(_) => "invalid-encoding",
            ScramError::InvalidUsernameEncoding(_) => "invalid-username-encoding",
            ScramError::ChannelBindingNotSupported => "channel-binding-not-supported",
            ScramError::ExtensionsNotSupported => "extensions-not-supported",
            ScramError::ChannelBindingMismatch => "channel-bindings-dont-match",
            ScramError::InvalidProof => "invalid-proof",
            ScramError::TooLong { .. }
            | ScramError::AuthzidNotAllowed
            | ScramError::NonceMismatch
            | ScramError::InvalidServerNonce { .. } => "other-error",
        }
    }
}
