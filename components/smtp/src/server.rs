//! The SMTP listeners: postbay-net's accept loop (PROXY header, connection limits,
//! implicit TLS on 465) running a [`Session`] per connection, in the listener's [`Role`].

use std::sync::Arc;

use postbay_net::Door;
use tokio::net::TcpListener;

pub use crate::inbound::Role;
use crate::inbound::Session;
use crate::ServerContext;

pub use postbay_net::ListenerSettings;

/// Accepts connections forever; each one runs in its own task.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    settings: ListenerSettings,
    role: Role,
) {
    let door = Door {
        busy_reply: b"421 4.7.0 Too many connections, try again later\r\n",
        tls_handshake_timeout: ctx.config.command_timeout,
    };
    postbay_net::serve::serve(listener, settings, door, move |stream, peer, starttls| {
        Session::new(ctx.clone(), stream, peer, starttls, role).run()
    })
    .await
}
