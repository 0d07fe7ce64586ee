//! SCRAM-SHA-256 (RFC 5802, RFC 7677) through the [`Authenticator`]: the credential lookup,
//! the throttle, and the failure accounting around postbay-passwd's sans-IO exchange. The
//! protocol sends `server_first`, reads the client-final message, and sends `server_final`.

use std::net::IpAddr;
use std::time::Instant;

use postbay_passwd::scram::{
    ClientFirst, ScramCredential, ScramError, ServerFirst, UnknownUserKey,
};
use postbay_store::MailboxRow;

use crate::{clip, AuthError, Authenticator, LoginOutcome};

/// What the directory holds for a SCRAM login.
#[derive(Debug)]
pub struct ScramLookup {
    /// The mailbox, if it exists and is enabled.
    pub mailbox: Option<MailboxRow>,
    /// Its SCRAM credential, if it has one; `None` makes the exchange fail at the proof.
    pub credential: Option<ScramCredential>,
    /// For made-up credentials of unknown users, so their replies look like real ones.
    pub unknown_user_key: UnknownUserKey,
}

/// A started exchange, waiting for the client-final message (boxed: it is large, and
/// travels in protocol state enums).
pub struct ScramExchange {
    inner: Box<Pending>,
}

struct Pending {
    server: ServerFirst,
    mailbox: Option<MailboxRow>,
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramExchange")
            .field("username", &self.inner.server.username())
            .finish_non_exhaustive()
    }
}

/// The first step's result.
#[derive(Debug)]
pub enum ScramStart {
    /// Send `server_first`, then pass the client's answer to [`Authenticator::scram_finish`].
    Challenge {
        exchange: ScramExchange,
        server_first: String,
    },
    /// The client-first message is not valid SCRAM (not a password guess: not counted).
    Malformed(ScramError),
    Throttled {
        retry_after: std::time::Duration,
    },
    Unavailable,
}

/// The last step's result.
#[derive(Debug)]
// Returned once per login and matched at once, never stored: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ScramOutcome {
    /// Send `server_final` (`v=...`); the client is then logged in as `mailbox`.
    Success {
        mailbox: MailboxRow,
        server_final: String,
    },
    /// Wrong password, unknown or disabled user, or a broken client-final message: counted
    /// in the throttle like a wrong password, and answered after the failure delay.
    Failed(ScramError),
}

impl Authenticator {
    /// The one place SCRAM credentials come from: `mailboxes.scram_sha256`, which the
    /// reconcile core derives from a cleartext Secret next to the Argon2id hash, or else
    /// `password_hash` itself when that is a `{SCRAM-SHA-256}` hash. A mailbox with neither
    /// has none (it can still log in with PLAIN or LOGIN).
    pub async fn scram_credential(&self, username: &str) -> Result<ScramLookup, AuthError> {
        let unknown_user_key = self.unknown_user_key().clone();
        let mailbox = self
            .store()
            .mailbox(username)
            .await?
            .filter(|mailbox| mailbox.enabled);
        let stored = mailbox.as_ref().and_then(|m| {
            m.scram_sha256
                .as_deref()
                .or(Some(m.password_hash.as_str()).filter(|h| is_scram(h)))
        });
        let credential = match (&mailbox, stored) {
            (Some(mailbox), Some(stored)) => Some(ScramCredential::parse(stored).map_err(
                |source| AuthError::UnusableHash {
                    address: mailbox.address.clone(),
                    source,
                },
            )?),
            _ => None,
        };
        Ok(ScramLookup {
            mailbox,
            credential,
            unknown_user_key,
        })
    }

    /// This process's key for unknown users' made-up SCRAM credentials
    /// ([`crate::AuthConfig::scram_unknown_user_secret`]).
    pub fn unknown_user_key(&self) -> &UnknownUserKey {
        &self.inner.unknown_user_key
    }

    /// Reads the client-first message, checks the throttle, looks the user up and answers
    /// with the server-first message (the same shape for unknown users, RFC 5802 §5.1).
    pub async fn scram_start(&self, ip: IpAddr, client_first: &[u8]) -> ScramStart {
        let first = match ClientFirst::parse(client_first) {
            Ok(first) => first,
            Err(e) => return ScramStart::Malformed(e),
        };
        let started = Instant::now();
        let (username, _) = clip(first.username());
        if let Some(LoginOutcome::Throttled { retry_after }) =
            self.throttled(ip, username, started).await
        {
            postbay_telemetry::login("throttled", self.protocol, "scram");
            return ScramStart::Throttled { retry_after };
        }
        let lookup = match self.scram_credential(first.username()).await {
            Ok(lookup) => lookup,
            Err(e) => {
                tracing::error!(%ip, username, error = %e, "SCRAM login could not be checked");
                postbay_telemetry::login("unavailable", self.protocol, "scram");
                return ScramStart::Unavailable;
            }
        };
        let (server, server_first) =
            first.respond(lookup.credential.as_ref(), &lookup.unknown_user_key);
        ScramStart::Challenge {
            exchange: ScramExchange {
                inner: Box::new(Pending {
                    server,
                    mailbox: lookup.mailbox.filter(|_| lookup.credential.is_some()),
                }),
            },
            server_first,
        }
    }

    /// Checks the client-final message against the exchange.
    pub async fn scram_finish(
        &self,
        ip: IpAddr,
        exchange: ScramExchange,
        client_final: &[u8],
    ) -> ScramOutcome {
        let started = Instant::now();
        let Pending { server, mailbox } = *exchange.inner;
        let username = clip(server.username()).0.to_string();
        let error = match (server.finish(client_final), mailbox) {
            (Ok(done), Some(mailbox)) => {
                let (_, server_final) = done.into_parts();
                postbay_telemetry::login("success", self.protocol, "scram");
                return ScramOutcome::Success {
                    mailbox,
                    server_final,
                };
            }
            // Cannot happen (made-up credentials never pass), but never a login without a row.
            (Ok(_), None) => ScramError::InvalidProof,
            (Err(e), _) => e,
        };
        let _ = self
            .fail(ip, &username, started, "SCRAM exchange failed")
            .await;
        postbay_telemetry::login("failed", self.protocol, "scram");
        ScramOutcome::Failed(error)
    }
}

/// Whether a stored hash is in the `{SCRAM-SHA-256}` scheme (scheme names are
/// case-insensitive, as Dovecot reads them).
fn is_scram(stored: &str) -> bool {
    let prefix = format!("{{{}}}", postbay_passwd::scram::SCHEME_NAME);
    stored
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(&prefix))
}
