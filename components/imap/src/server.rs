//! The IMAP listeners: postbay-net's accept loop (PROXY header, connection limits,
//! implicit TLS on 993) running a [`Session`] per connection.

use std::sync::Arc;
use std::time::Duration;

use postbay_net::Door;
use tokio::net::TcpListener;

use crate::session::Session;
use crate::ImapContext;

pub use postbay_net::ListenerSettings;

/// How long an implicit-TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts connections forever; each one runs in its own task.
pub async fn serve(listener: TcpListener, ctx: Arc<ImapContext>, settings: ListenerSettings) {
    let door = Door {
        // RFC 9051 §7.1.5: BYE as greeting refuses the connection.
        busy_reply: b"* BYE Too many connections, try again later\r\n",
        tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT,
    };
    postbay_net::serve::serve(listener, settings, door, move |stream, peer, starttls| {
        Session::new(ctx.clone(), stream, peer, starttls).run()
    })
    .await
}
