//! The accept loop every mail listener shares (SMTP, IMAP, POP3, LMTP): accept, read a
//! PROXY header when the peer is a trusted load balancer, apply the connection limits,
//! start implicit TLS on ports that need it, then hand the stream to the protocol's
//! session. Protocols differ only in how they refuse a connection over the limits and in
//! the session they run.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::Prefixed;
use tokio_rustls::TlsAcceptor;

use crate::listener::{self, Admission};
use crate::{ConnectionGate, MaybeTls, ProxyPolicy, TlsProvider};

/// How long a trusted proxy may take to send its header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One listener's behaviour.
#[derive(Clone)]
pub struct ListenerSettings {
    pub proxy: ProxyPolicy,
    pub gate: ConnectionGate,
    /// Certificates for STARTTLS/STLS (or implicit TLS). Without them STARTTLS is not
    /// offered.
    pub tls: Option<TlsProvider>,
    /// TLS from the first byte (ports 465, 993, 995) instead of STARTTLS.
    pub implicit_tls: bool,
}

/// What differs between protocols at the door.
#[derive(Debug, Clone, Copy)]
pub struct Door {
    /// Written to a connection refused by the limits (on plaintext listeners), e.g.
    /// `421 4.7.0 …\r\n` or `* BYE …\r\n`.
    pub busy_reply: &'static [u8],
    /// How long an implicit-TLS handshake may take.
    pub tls_handshake_timeout: Duration,
}

/// Accepts connections forever; each one runs in its own task. `session` gets the stream
/// (TLS already running on implicit-TLS listeners), the client's address (from the PROXY
/// header when there is one) and the acceptor for STARTTLS, if it may be offered. The
/// connection's slot in the gate is held until the session ends.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    settings: ListenerSettings,
    door: Door,
    session: F,
) where
    F: Fn(MaybeTls<Prefixed<TcpStream>>, SocketAddr, Option<TlsAcceptor>) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: Future + Send + 'static,
{
    // The `listener` label of the connection metrics: one value per bound address.
    let name: std::sync::Arc<str> = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_string(), |a| a.to_string())
        .into();
    loop {
        let (stream, peer) = listener::accept(&listener).await;
        let name = name.clone();
        let _ = stream.set_nodelay(true);
        let settings = settings.clone();
        let session = session.clone();
        tokio::spawn(async move {
            let established = match listener::establish(
                stream,
                peer,
                &settings.proxy,
                PROXY_HEADER_TIMEOUT,
            )
            .await
            {
                Ok(established) => established,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "dropping connection without a valid PROXY header");
                    postbay_telemetry::connection_refused(&name, "proxy_header");
                    return;
                }
            };
            let accepted = match established.admit(&settings.gate) {
                Admission::Accepted(accepted) => accepted,
                Admission::Rejected(mut rejected) => {
                    postbay_telemetry::connection_refused(&name, "limit");
                    // Over implicit TLS the client could not read it; it just sees the close.
                    if !settings.implicit_tls {
                        let _ = rejected.stream.write_all(door.busy_reply).await;
                    }
                    let _ = rejected.stream.shutdown().await;
                    return;
                }
            };
            let _open = postbay_telemetry::connection_opened(&name);
            let acceptor = settings.tls.as_ref().map(|t| t.acceptor());
            let mut stream = MaybeTls::Plain(accepted.stream);
            if settings.implicit_tls {
                let Some(acceptor) = &acceptor else {
                    tracing::error!("implicit TLS listener without TLS configuration");
                    return;
                };
                match tokio::time::timeout(door.tls_handshake_timeout, stream.upgrade(acceptor))
                    .await
                {
                    Ok(Ok(())) => {}
                    _ => {
                        tracing::debug!(peer = %accepted.peer, "implicit TLS handshake failed");
                        return;
                    }
                }
            }
            let starttls = if settings.implicit_tls {
                None
            } else {
                acceptor
            };
            // Every log line of the session carries its id and the client's address.
            let span = tracing::info_span!(
                "session",
                session = next_session_id(),
                remote = %accepted.peer,
                listener = %name,
            );
            let _ended =
                tracing::Instrument::instrument(session(stream, accepted.peer, starttls), span)
                    .await;
            drop(accepted.permit);
        });
    }
}

/// Process-wide session numbers, for telling one connection's log lines apart.
fn next_session_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
