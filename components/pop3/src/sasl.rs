//! SASL for POP3 (RFC 5034). The decoders (base64 responses, PLAIN, RFC 4616) are
//! postbay-auth's, shared with IMAP and SMTP submission; this module names what POP3 offers.

pub use postbay_auth::sasl::{decode_response, parse_plain, PlainCredentials, SaslError};

/// The mechanisms we offer. PLAIN only: the store keeps password hashes, so mechanisms that
/// need the cleartext (CRAM-MD5, APOP) cannot be served; SCRAM-SHA-256 has its glue in
/// postbay-auth and is not offered here yet.
pub const MECHANISMS: &[&str] = &["PLAIN"];
