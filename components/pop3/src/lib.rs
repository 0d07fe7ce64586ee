//! Postbay's POP3 server: the INBOX of a mailbox over RFC 1939, for clients that download
//! and delete.
//!
//! | RFC | what | where |
//! | --- | --- | --- |
//! | 1939 | POP3: USER/PASS, STAT, LIST, RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL | [`session`] |
//! | 2449 | CAPA, response codes, PIPELINING, line lengths | [`command`], [`response`] |
//! | 2595 §4 | STLS | [`session`] |
//! | 3206 | `[AUTH]`, `[SYS/TEMP]`, `[SYS/PERM]` | [`response::Code`] |
//! | 4616, 5034 | AUTH PLAIN, with initial response or continuation | [`sasl`] |
//!
//! Not offered: APOP (needs cleartext passwords), `[IN-USE]` (no maildrop lock, see
//! [`maildrop`]). UIDL ids are `<uidvalidity>.<uid>` of the INBOX, the same numbers IMAP
//! shows ([`maildrop`] explains why they are stable).
//!
//! # Wiring
//!
//! ```no_run
//! # async fn wire(store: postbay_store::Store, tls: postbay_net::TlsProvider) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy};
//! use postbay_pop3::{serve, ListenerSettings, Pop3Context, Pop3Limits};
//!
//! let ctx = Arc::new(Pop3Context::new(store, "mail.example.test", Pop3Limits::default()));
//! let gate = ConnectionGate::new(ConnectionLimits { max_connections: 1000, max_per_ip: 20 });
//! let proxy = ProxyPolicy { trusted: vec![], required: false };
//! // Port 110: plaintext, STLS offered.
//! let plain = postbay_net::listener::bind("0.0.0.0:110".parse().unwrap()).await?;
//! let settings = ListenerSettings { proxy, gate, tls: Some(tls), implicit_tls: false };
//! tokio::spawn(serve(plain, ctx.clone(), settings.clone()));
//! // Port 995: TLS from the first byte.
//! let pop3s = postbay_net::listener::bind("0.0.0.0:995".parse().unwrap()).await?;
//! tokio::spawn(serve(pop3s, ctx, ListenerSettings { implicit_tls: true, ..settings }));
//! # Ok(()) }
//! ```
//!
//! Passwords travel in the clear inside USER/PASS and AUTH PLAIN, so by default they are
//! accepted only over TLS or from loopback ([`PlaintextAuth`]); on port 110 clients use STLS.

pub mod command;
#[doc(hidden)]
pub mod fuzzing;
pub mod maildrop;
pub mod message;
pub mod response;
pub mod sasl;
pub mod server;
pub mod session;

use std::time::Duration;

use postbay_store::Store;

pub use command::{parse_command, Command, ParseError};
pub use server::{serve, ListenerSettings};
pub use session::{Ending, Session};

/// Named limits; crossing one gets a typed `-ERR` and, for the hard ones, a closed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pop3Limits {
    /// Longest command line, CRLF included. RFC 2449 §4 says 255; we take 1024 because
    /// long addresses plus long passwords overflow 255 in USER/PASS and some clients ignore
    /// the limit. Longer lines are read to their end, thrown away and answered `-ERR`.
    pub max_command_line: usize,
    /// Longest AUTH continuation line: RFC 5034 §4 lets a SASL response exceed the command
    /// limit (a base64 PLAIN message with a long password does).
    pub max_sasl_line: usize,
    /// Autologout: RFC 1939 §3 requires at least 10 minutes. Also bounds how long a client
    /// that stopped reading can hold a session while we write.
    pub idle_timeout: Duration,
    /// Failed logins (PASS or AUTH) on one connection before it is closed.
    pub max_auth_failures: u32,
    /// Unknown, malformed or out-of-state commands on one connection before it is closed.
    pub max_bad_commands: u32,
    /// Login throttle settings, used only by [`Pop3Context::new`], which builds an
    /// authenticator for this server alone; a process serving several protocols shares one
    /// `postbay_auth::Authenticator` ([`Pop3Context::with_authenticator`]) and its policy.
    /// Mapped onto [`postbay_auth::LoginPolicy`] by [`Pop3Limits::login_policy`].
    ///
    /// Delay before answering the first recent failed login; doubles for each further one
    /// from the network or for the user name, up to `max_failure_delay`.
    pub failure_delay: Duration,
    pub max_failure_delay: Duration,
    /// Failed logins from one network (IPv4 address, IPv6 /64) within `failure_window`
    /// after which it is refused until the window has passed since its last failure.
    /// (The per-user limit is the policy's default.)
    pub max_failures_per_ip: u32,
    pub failure_window: Duration,
}

impl Default for Pop3Limits {
    fn default() -> Self {
        let login = postbay_auth::LoginPolicy::default();
        Pop3Limits {
            max_command_line: 1024,
            max_sasl_line: 8192,
            idle_timeout: Duration::from_secs(600),
            max_auth_failures: 3,
            max_bad_commands: 10,
            failure_delay: login.failure_delay,
            max_failure_delay: login.max_failure_delay,
            max_failures_per_ip: login.max_failures_per_network,
            failure_window: login.failure_window,
        }
    }
}

impl Pop3Limits {
    /// The login settings as the shared policy.
    pub fn login_policy(&self) -> postbay_auth::LoginPolicy {
        postbay_auth::LoginPolicy {
            failure_delay: self.failure_delay,
            max_failure_delay: self.max_failure_delay,
            max_failures_per_network: self.max_failures_per_ip,
            failure_window: self.failure_window,
            ..postbay_auth::LoginPolicy::default()
        }
    }
}

/// Whether USER/PASS and AUTH PLAIN are accepted on a connection without TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlaintextAuth {
    Always,
    /// Only from 127.0.0.0/8 and ::1 (after PROXY processing, so the real client counts):
    /// local tools and tests work, a network client must use STLS or port 995. Like
    /// Dovecot's `disable_plaintext_auth = yes`.
    #[default]
    LoopbackOnly,
    Never,
}

/// What every session of one server shares. Build it with [`Pop3Context::new`] or
/// [`Pop3Context::with_authenticator`]: it also holds the message-size cache, which
/// sessions must share.
pub struct Pop3Context {
    pub store: Store,
    /// Named in the greeting and sign-off.
    pub hostname: String,
    pub limits: Pop3Limits,
    pub plaintext_auth: PlaintextAuth,
    /// Password checks, throttle and hashing pool (the process's one when shared).
    pub authenticator: postbay_auth::Authenticator,
    sizes: maildrop::SizeCache,
}

impl Pop3Context {
    /// A server with its own authenticator, throttling by `limits`' login settings.
    pub fn new(store: Store, hostname: impl Into<String>, limits: Pop3Limits) -> Pop3Context {
        let authenticator = postbay_auth::Authenticator::new(
            store.clone(),
            postbay_auth::AuthConfig {
                policy: limits.login_policy(),
                ..postbay_auth::AuthConfig::default()
            },
        );
        Pop3Context::with_authenticator(store, hostname, limits, authenticator)
    }

    /// A server checking logins with the process's shared `authenticator` (whose policy
    /// then applies, not `limits`' login settings).
    pub fn with_authenticator(
        store: Store,
        hostname: impl Into<String>,
        limits: Pop3Limits,
        authenticator: postbay_auth::Authenticator,
    ) -> Pop3Context {
        Pop3Context {
            store,
            hostname: hostname.into(),
            limits,
            plaintext_auth: PlaintextAuth::default(),
            authenticator,
            sizes: maildrop::SizeCache::default(),
        }
    }

    pub fn with_plaintext_auth(mut self, policy: PlaintextAuth) -> Pop3Context {
        self.plaintext_auth = policy;
        self
    }
}
