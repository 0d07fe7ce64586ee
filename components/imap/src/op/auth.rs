//! STARTTLS, LOGIN and AUTHENTICATE (PLAIN, RFC 4616; LOGIN; SASL-IR, RFC 4959).

use std::borrow::Cow;

use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::core::AString;
use imap_codec::imap_types::secret::Secret;

use postbay_auth::sasl::{self, LoginExchange, LoginStep};
use postbay_auth::LoginOutcome;

use crate::op::any::capability_code;
use crate::protocol::{no, OpResult, Outcome, Protocol};

/// An AUTHENTICATE exchange waiting for the client's next response.
#[derive(Debug)]
pub enum Sasl {
    Plain,
    Login(LoginExchange),
}

impl Sasl {
    /// The challenge to send before the client's next line.
    pub fn challenge(&self) -> &'static [u8] {
        match self {
            Sasl::Plain => b"",
            Sasl::Login(exchange) => exchange.challenge(),
        }
    }
}

/// Next step of an AUTHENTICATE exchange.
pub enum Step {
    Continue(Sasl),
    Done(OpResult),
}

pub fn starttls(p: &mut Protocol) -> OpResult {
    if p.tls_active {
        return Err(no(None, "TLS is already active"));
    }
    if !p.starttls_available {
        return Err(no(None, "TLS is not available on this port"));
    }
    Ok(Outcome::StartTls)
}

fn plaintext_refused(p: &Protocol) -> Option<crate::protocol::OpError> {
    (!p.tls_active && !p.ctx.limits.allow_plaintext_auth).then(|| {
        no(
            Some("PRIVACYREQUIRED"),
            "Plaintext authentication disallowed on non-secure (SSL/TLS) connections",
        )
    })
}

pub async fn login(
    p: &mut Protocol,
    username: AString<'_>,
    password: Secret<AString<'_>>,
) -> OpResult {
    if let Some(e) = plaintext_refused(p) {
        return Err(e);
    }
    let username = String::from_utf8_lossy(username.as_ref()).into_owned();
    let password = password.declassify().as_ref().to_vec();
    finish(p, &username, &password).await
}

pub async fn authenticate(
    p: &mut Protocol,
    mechanism: AuthMechanism<'_>,
    initial_response: Option<Secret<Cow<'_, [u8]>>>,
) -> OpResult {
    if let Some(e) = plaintext_refused(p) {
        return Err(e);
    }
    let initial = initial_response.map(|r| r.declassify().to_vec());
    let sasl = match mechanism {
        AuthMechanism::Plain => Sasl::Plain,
        AuthMechanism::Login => Sasl::Login(LoginExchange::new()),
        other => {
            return Err(no(
                None,
                format!("Unsupported authentication mechanism {other}"),
            ))
        }
    };
    match initial {
        None => Ok(Outcome::Authenticate(sasl)),
        Some(data) => match step(p, sasl, &data).await {
            Step::Continue(next) => Ok(Outcome::Authenticate(next)),
            Step::Done(result) => result,
        },
    }
}

/// Feeds one client response into the exchange.
pub async fn step(p: &mut Protocol, sasl: Sasl, data: &[u8]) -> Step {
    match sasl {
        Sasl::Plain => match sasl::parse_plain(data) {
            Ok(c) => Step::Done(finish(p, &c.authcid, c.password.expose()).await),
            Err(_) => Step::Done(Err(crate::protocol::bad("Invalid PLAIN message"))),
        },
        Sasl::Login(exchange) => match exchange.step(data) {
            Ok(LoginStep::Continue(next)) => Step::Continue(Sasl::Login(next)),
            Ok(LoginStep::Done { username, password }) => {
                Step::Done(finish(p, &username, password.expose()).await)
            }
            Err(_) => Step::Done(Err(crate::protocol::bad("Invalid user name"))),
        },
    }
}

async fn finish(p: &mut Protocol, username: &str, password: &[u8]) -> OpResult {
    let ctx = p.ctx.clone();
    match ctx
        .authenticator
        .check_password(p.peer, username, password)
        .await
    {
        LoginOutcome::Success(mailbox) => {
            let user = crate::auth::User::from(mailbox);
            tracing::info!(peer = %p.peer, user = %user.address, "logged in");
            p.user = Some(user);
            Ok(Outcome::Ok(capability_code(p), "Logged in".into()))
        }
        LoginOutcome::Failed => {
            p.auth_failures += 1;
            Err(no(Some("AUTHENTICATIONFAILED"), "Authentication failed."))
        }
        LoginOutcome::Throttled { .. } => {
            p.auth_failures += 1;
            Err(no(
                Some("UNAVAILABLE"),
                "Too many failed logins, try again later.",
            ))
        }
        LoginOutcome::Unavailable => Err(no(
            Some("UNAVAILABLE"),
            "Temporary authentication failure, try again later.",
        )),
    }
}
