//! Listening sockets: accept, read a PROXY header if the peer is a trusted load balancer,
//! apply connection limits, optionally start implicit TLS (port 993), then run a [`Session`].

use std::sync::Arc;
use std::time::Duration;

use postbay_net::{listener, ConnectionGate, ProxyPolicy, TlsProvider};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::conn::MaybeTls;
use crate::session::Session;
use crate::ImapContext;

/// How long a trusted proxy may take to send its header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an implicit-TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One listener's behaviour.
#[derive(Clone)]
pub struct ListenerSettings {
    pub proxy: ProxyPolicy,
    pub gate: ConnectionGate,
    /// Certificates for STARTTLS (or implicit TLS). Without it STARTTLS is not offered.
    pub tls: Option<TlsProvider>,
    /// TLS from the first byte (port 993) instead of STARTTLS (port 143).
    pub implicit_tls: bool,
}

/// Accepts connections forever; each one runs in its own task.
pub async fn serve(listener: TcpListener, ctx: Arc<ImapContext>, settings: ListenerSettings) {
    loop {
        let (stream, peer) = listener::accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let settings = settings.clone();
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
                    return;
                }
            };
            let accepted = match established.admit(&settings.gate) {
                listener::Admission::Accepted(accepted) => accepted,
                listener::Admission::Rejected(mut rejected) => {
                    // RFC 9051 §7.1.5: BYE as greeting refuses the connection.
                    let _ = rejected
                        .stream
                        .write_all(b"* BYE Too many connections, try again later\r\n")
                        .await;
                    let _ = rejected.stream.shutdown().await;
                    return;
                }
            };
            let acceptor = settings.tls.as_ref().map(|t| t.acceptor());
            let mut stream = MaybeTls::Plain(accepted.stream);
            if settings.implicit_tls {
                let Some(acceptor) = &acceptor else {
                    tracing::error!("implicit TLS listener without TLS configuration");
                    return;
                };
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, stream.upgrade(acceptor)).await {
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
            Session::new(ctx, stream, accepted.peer, starttls)
                .run()
                .await;
            drop(accepted.permit);
        });
    }
}
