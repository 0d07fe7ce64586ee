//! Listener plumbing shared by Postbay's SMTP, LMTP, IMAP and POP3 servers.
//!
//! * [`tls`]: a [`TlsProvider`] serving certificates from PEM files (a mounted
//!   kubernetes.io/tls Secret works as is) that are reloaded when they change, or a
//!   self-signed certificate for development.
//! * [`proxy`]: PROXY protocol v1/v2 from trusted load balancers, with a sans-IO
//!   parser ([`proxy::parse`]) and the [`Prefixed`] stream wrapper.
//! * [`limits`]: total and per-IP connection limits ([`ConnectionGate`]).
//! * [`listener`]: binding, accepting, and turning a TCP connection into an
//!   admitted session.
//! * [`wire`]: the buffered byte stream every text protocol's session reads and writes.
//! * [`deflate`]: COMPRESS=DEFLATE (RFC 4978) over that stream.
//!
//! # Connection lifecycle
//!
//! The accept loop does nothing that waits on a client: it calls
//! [`listener::accept`] and spawns. The spawned task calls [`listener::establish`]
//! (reads the PROXY header if the peer is trusted) and then
//! [`Established::admit`], which applies the limits to the *real* client address
//! and hands the socket back on refusal so the server can answer in its protocol.
//! Implicit TLS (465, 993, 995) or STARTTLS uses [`TlsProvider::acceptor`] on the
//! [`Prefixed`] stream.
//!
//! ```no_run
//! use std::time::Duration;
//! use postbay_net::{listener, Admission, ConnectionGate, ConnectionLimits, ProxyPolicy, TlsProvider, TlsSettings};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsProvider::new(TlsSettings::default()).await?;
//! let gate = ConnectionGate::new(ConnectionLimits { max_connections: 1000, max_per_ip: 20 });
//! let policy = ProxyPolicy { trusted: vec!["10.0.0.0/8".parse()?], required: true };
//! let tcp = listener::bind("0.0.0.0:465".parse()?).await?;
//! loop {
//!     let (stream, peer) = listener::accept(&tcp).await;
//!     let (tls, gate, policy) = (tls.clone(), gate.clone(), policy.clone());
//!     tokio::spawn(async move {
//!         let Ok(conn) = listener::establish(stream, peer, &policy, Duration::from_secs(5)).await else {
//!             return;
//!         };
//!         match conn.admit(&gate) {
//!             Admission::Accepted(accepted) => {
//!                 let Ok(mut session) = tls.acceptor().accept(accepted.stream).await else { return };
//!                 let _ = session.write_all(b"220 ready\r\n").await;
//!                 // ... serve; `accepted.permit` is dropped at the end.
//!             }
//!             Admission::Rejected(mut rejected) => {
//!                 let _ = rejected.stream.write_all(b"421 too busy\r\n").await;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```

pub mod deflate;
pub mod dns;
pub mod limits;
pub mod listener;
pub mod proxy;
pub mod serve;
pub mod stream;
pub mod tls;
pub mod wire;

pub use limits::{ConnectionGate, ConnectionLimits, ConnectionPermit, LimitExceeded};
pub use listener::{Accepted, Admission, Established, Rejected};
pub use proxy::{read_proxy_header, Prefixed, ProxyError, ProxyPolicy};
pub use serve::{Door, ListenerSettings};
pub use stream::MaybeTls;
pub use tls::{client_config_trusting, TlsError, TlsProvider, TlsSettings};
