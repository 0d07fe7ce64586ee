//! Postbay's IMAP server: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) over the shared
//! store, so every replica of the mailbox component serves the same mailboxes.
//!
//! # Wiring
//!
//! ```no_run
//! use std::sync::Arc;
//! use postbay_imap::{serve, ImapContext, ImapLimits, ListenerSettings};
//! use postbay_net::{ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
//!
//! # async fn run(store: postbay_store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = Arc::new(ImapContext::new(store, "mail.example.test", ImapLimits::default()));
//! let tls = TlsProvider::new(TlsSettings::default()).await?;
//! let listener = postbay_net::listener::bind("0.0.0.0:143".parse()?).await?;
//! let settings = ListenerSettings {
//!     proxy: ProxyPolicy::default(),
//!     gate: ConnectionGate::new(ConnectionLimits { max_connections: 10_000, max_per_ip: 50 }),
//!     tls: Some(tls),
//!     implicit_tls: false, // true for port 993
//! };
//! tokio::spawn(serve(listener, ctx, settings));
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! * [`server`] accepts connections (PROXY protocol, limits, implicit TLS) and starts a
//!   [`Session`] per client.
//! * [`session`] frames input with imap-codec's fragmentizer (line and literal limits,
//!   continuation requests), runs STARTTLS, AUTHENTICATE and IDLE, and hands each command to
//!   [`op::dispatch`].
//! * [`op`] has one module per command group; handlers change the I/O-free [`Protocol`]
//!   state and talk to the store.
//! * [`selected`] tracks the selected mailbox and reports other sessions' changes (on any
//!   replica) by polling the folder's modseq.
//! * [`message`] turns stored messages into ENVELOPE, BODYSTRUCTURE and sections.
//! * [`context`] keeps SEARCH and SORT results up to date for the client (RFC 5267 §4).
//! * [`notify`] holds a session's NOTIFY (RFC 5465) and sends STATUS and LIST between
//!   commands and in IDLE, from the change feed's folder and mailbox-list watches.
//!
//! # Replicas
//!
//! UIDs are allocated by the store under the folder row lock, so replicas never share one.
//! A session keeps what it knows of its selected folder (UID, flags, modseq per message,
//! `selected.rs`) and brings it up to date from the store's change feed before it answers
//! from it; the feed is raised at once by this process's commits and by one poller per
//! process every `idle_poll_interval` for other replicas' (docs/architecture.md). Logins go
//! through postbay-auth, whose throttle and cache are per process.

pub mod address;
pub mod auth;
pub mod config;
pub mod context;
pub mod ext_syntax;
pub mod learn;
pub mod message;
pub mod mutf7;
pub mod names;
pub mod notify;
pub mod op;
pub mod protocol;
pub mod response;
pub mod selected;
pub mod server;
pub mod session;

pub use config::ImapLimits;
pub use postbay_net::MaybeTls;
pub use protocol::Protocol;
pub use server::{serve, ListenerSettings};
pub use session::Session;

/// What every session of one server shares.
pub struct ImapContext {
    pub store: postbay_store::Store,
    /// Our name, for logs and greetings.
    pub hostname: String,
    pub limits: ImapLimits,
    /// Password checks and the login throttle; the process's one, shared with POP3 and
    /// submission when built with [`ImapContext::with_authenticator`].
    pub authenticator: postbay_auth::Authenticator,
    /// Where Junk moves are taught to the filter (`imap.learn_url`); none: not taught.
    pub learner: Option<std::sync::Arc<learn::Learner>>,
    /// One permit per COMPRESS=DEFLATE session (`limits.max_compressed_sessions`), held
    /// for the life of the connection: the cap on codec memory.
    pub compress_permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl ImapContext {
    /// A server with its own authenticator, throttling by `limits`' login settings.
    pub fn new(
        store: postbay_store::Store,
        hostname: impl Into<String>,
        limits: ImapLimits,
    ) -> ImapContext {
        let authenticator = postbay_auth::Authenticator::new(
            store.clone(),
            postbay_auth::AuthConfig {
                policy: limits.login_policy(),
                ..postbay_auth::AuthConfig::default()
            },
        );
        ImapContext::with_authenticator(store, hostname, limits, authenticator)
    }

    /// A server checking logins with the process's shared `authenticator` (whose policy
    /// then applies, not `limits`' login settings).
    pub fn with_authenticator(
        store: postbay_store::Store,
        hostname: impl Into<String>,
        limits: ImapLimits,
        authenticator: postbay_auth::Authenticator,
    ) -> ImapContext {
        store.set_change_poll_interval(limits.idle_poll_interval);
        let compress_permits = std::sync::Arc::new(tokio::sync::Semaphore::new(
            limits
                .max_compressed_sessions
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        ImapContext {
            store,
            hostname: hostname.into(),
            limits,
            authenticator,
            learner: None,
            compress_permits,
        }
    }

    /// Teaches the filter from Junk moves (see [`learn`]).
    pub fn with_learner(mut self, learner: learn::Learner) -> ImapContext {
        self.learner = Some(std::sync::Arc::new(learner));
        self
    }
}

/// Where a command handler may push output early (FETCH of large mailboxes), keeping the
/// handlers independent of the actual stream.
#[allow(async_fn_in_trait)]
pub trait Sink {
    async fn write(&mut self, out: &mut Vec<u8>) -> std::io::Result<()>;
}

/// A sink that keeps everything in memory, for tests and the fuzz target.
impl Sink for Vec<u8> {
    async fn write(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        self.append(out);
        Ok(())
    }
}

/// Entry points for the fuzz target and robustness tests; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{ImapContext, MaybeTls, Session};

    /// Plays `input` to a fresh session as a client's bytes (then closes the client's
    /// sending side) and returns everything the server wrote.
    pub async fn run_session(ctx: Arc<ImapContext>, input: &[u8]) -> Vec<u8> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let task = tokio::spawn(Session::new(ctx, MaybeTls::Plain(server), peer, None).run());
        let (mut rd, mut wr) = tokio::io::split(client);
        let writer = async move {
            let _ = wr.write_all(input).await;
            let _ = wr.shutdown().await;
        };
        let reader = async move {
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let ((), out) = tokio::join!(writer, reader);
        if let Err(e) = task.await {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        out
    }
}
