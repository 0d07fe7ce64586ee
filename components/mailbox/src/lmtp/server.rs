//! Accept loop of the LMTP listener. LMTP is an internal hop (the SMTP queue, or a classic
//! MTA during migration), so there is no TLS or PROXY protocol; limits still apply.

use std::sync::Arc;

use postbay_net::{listener, ConnectionGate, ProxyPolicy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::session::{LmtpContext, LmtpSession};
use postbay_smtp::wire::MaybeTls;

pub async fn serve_lmtp(listener: TcpListener, ctx: Arc<LmtpContext>, gate: ConnectionGate) {
    let no_proxy = ProxyPolicy::default();
    loop {
        let (stream, peer) = listener::accept(&listener).await;
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let gate = gate.clone();
        let no_proxy = no_proxy.clone();
        tokio::spawn(async move {
            let Ok(established) =
                listener::establish(stream, peer, &no_proxy, std::time::Duration::from_secs(1))
                    .await
            else {
                return;
            };
            match established.admit(&gate) {
                listener::Admission::Accepted(accepted) => {
                    LmtpSession::new(ctx, MaybeTls::Plain(accepted.stream), accepted.peer)
                        .run()
                        .await;
                }
                listener::Admission::Rejected(mut rejected) => {
                    let _ = rejected
                        .stream
                        .write_all(b"421 4.7.0 Too many connections\r\n")
                        .await;
                }
            }
        });
    }
}
