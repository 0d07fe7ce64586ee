//! The POP3 listeners: postbay-net's accept loop (PROXY header, connection limits,
//! implicit TLS on 995, RFC 8314 §3.3) running a [`Session`] per connection; STLS is
//! offered on plaintext listeners when TLS is configured.

use std::sync::Arc;

use postbay_net::Door;
use tokio::net::TcpListener;

use crate::session::{Session, TLS_HANDSHAKE_TIMEOUT};
use crate::Pop3Context;

pub use postbay_net::ListenerSettings;

/// Accepts connections forever; each one runs in its own task.
pub async fn serve(listener: TcpListener, ctx: Arc<Pop3Context>, settings: ListenerSettings) {
    let door = Door {
        busy_reply: b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    };
    postbay_net::serve::serve(listener, settings, door, move |stream, peer, stls| {
        Session::new(ctx.clone(), stream, peer, stls).run()
    })
    .await
}
