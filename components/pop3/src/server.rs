//! Listening sockets: accept, read a PROXY header if the peer is a trusted load balancer,
//! apply connection limits, optionally start implicit TLS (port 995), then run a
//! [`Session`]. The same loop as the SMTP server's, with POP3's replies.

use std::sync::Arc;
use std::time::Duration;

use postbay_net::listener;
use postbay_smtp::wire::MaybeTls;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::session::{Session, TLS_HANDSHAKE_TIMEOUT};
use crate::Pop3Context;

/// The listener settings SMTP uses (PROXY policy, connection gate, TLS, implicit TLS),
/// shared so one configuration type serves every mail listener.
pub use postbay_smtp::server::ListenerSettings;

/// How long a trusted proxy may take to send its header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever; each one runs in its own task. With `implicit_tls` every
/// connection starts with a TLS handshake (POP3S, RFC 8314 §3.3); otherwise STLS is offered
/// when `tls` is set.
pub async fn serve(listener: TcpListener, ctx: Arc<Pop3Context>, settings: ListenerSettings) {
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
                    // Over implicit TLS the client cannot read this; it just sees the close.
                    if !settings.implicit_tls {
                        let _ = rejected
                            .stream
                            .write_all(b"-ERR [SYS/TEMP] Too many connections, try again later\r\n")
                            .await;
                    }
                    let _ = rejected.stream.shutdown().await;
                    return;
                }
            };
            let acceptor = settings.tls.as_ref().map(|t| t.acceptor());
            let mut stream = MaybeTls::Plain(accepted.stream);
            let stls = if settings.implicit_tls {
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
                None
            } else {
                acceptor
            };
            Session::new(ctx, stream, accepted.peer, stls).run().await;
            drop(accepted.permit);
        });
    }
}
