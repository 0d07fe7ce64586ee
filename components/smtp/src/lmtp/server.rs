//! Accept loop of the LMTP listener: postbay-net's, without TLS or PROXY protocol. LMTP is
//! an internal hop (the SMTP queue, or a classic MTA during migration); limits still apply.

use std::sync::Arc;
use std::time::Duration;

use postbay_net::{ConnectionGate, Door, ListenerSettings, ProxyPolicy};
use tokio::net::TcpListener;

use super::session::{LmtpContext, LmtpSession};

pub async fn serve_lmtp(listener: TcpListener, ctx: Arc<LmtpContext>, gate: ConnectionGate) {
    let settings = ListenerSettings {
        proxy: ProxyPolicy::default(),
        gate,
        tls: None,
        implicit_tls: false,
    };
    let door = Door {
        busy_reply: b"421 4.7.0 Too many connections\r\n",
        tls_handshake_timeout: Duration::from_secs(30),
    };
    postbay_net::serve::serve(listener, settings, door, move |stream, peer, _| {
        LmtpSession::new(ctx.clone(), stream, peer).run()
    })
    .await
}
