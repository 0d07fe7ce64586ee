//! Binding, accepting and establishing connections.
//!
//! The accept loop only calls [`accept`] and spawns; everything that may wait on
//! the client ([`establish`], i.e. the PROXY header) runs in the per-connection
//! task so that a slow or silent client cannot stall other accepts. The limit
//! check ([`Established::admit`]) comes after the PROXY header, because only then
//! is the real client address known.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::limits::{ConnectionGate, ConnectionPermit, LimitExceeded};
use crate::proxy::{read_proxy_header, Prefixed, ProxyError, ProxyPolicy};

/// Pending-connection queue length; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 1024;

/// Binds a listening socket with `SO_REUSEADDR`, so a restarted server can rebind
/// while old connections linger in TIME_WAIT.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    Ok(listener)
}

/// Accepts the next connection, riding out errors instead of returning them: an
/// aborted handshake or a momentary file-descriptor shortage must not end the
/// accept loop.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off so we do not spin while the
                // condition lasts; pending connections wait in the backlog.
                tracing::error!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// A connection whose client address is known (PROXY header processed) but that
/// has not passed the connection limits yet.
#[derive(Debug)]
pub struct Established {
    /// The socket, replaying any bytes read past the PROXY header.
    pub stream: Prefixed<TcpStream>,
    /// The client: the PROXY header's source, or the TCP peer.
    pub peer: SocketAddr,
    /// The local socket address the connection arrived on.
    pub local: SocketAddr,
}

/// Reads the PROXY header if `peer` is trusted (see [`read_proxy_header`]). Call it
/// in the per-connection task, never in the accept loop.
pub async fn establish(
    mut stream: TcpStream,
    peer: SocketAddr,
    policy: &ProxyPolicy,
    timeout: Duration,
) -> Result<Established, ProxyError> {
    let local = stream.local_addr()?;
    let (client, leftover) = read_proxy_header(&mut stream, peer, policy, timeout).await?;
    Ok(Established {
        stream: Prefixed::new(leftover, stream),
        peer: client,
        local,
    })
}

impl Established {
    /// Takes a slot from `gate` for the client. On refusal the connection is handed
    /// back so the server can send its protocol's "busy" reply before closing.
    pub fn admit(self, gate: &ConnectionGate) -> Admission {
        match gate.try_acquire(self.peer.ip()) {
            Ok(permit) => Admission::Accepted(Accepted {
                stream: self.stream,
                peer: self.peer,
                local: self.local,
                permit,
            }),
            Err(reason) => {
                tracing::info!(peer = %self.peer, %reason, "connection refused by limits");
                Admission::Rejected(Rejected {
                    stream: self.stream,
                    peer: self.peer,
                    local: self.local,
                    reason,
                })
            }
        }
    }
}

/// The outcome of [`Established::admit`]. Not a `Result`: a refused connection is
/// an expected outcome that still needs serving (with a "busy" reply).
#[derive(Debug)]
pub enum Admission {
    /// Within the limits: serve the session.
    Accepted(Accepted),
    /// Over a limit: reply and close.
    Rejected(Rejected),
}

/// A connection admitted by the limits; keep `permit` alive as long as the session.
#[derive(Debug)]
pub struct Accepted {
    /// The socket, replaying any bytes read past the PROXY header.
    pub stream: Prefixed<TcpStream>,
    /// The client: the PROXY header's source, or the TCP peer.
    pub peer: SocketAddr,
    /// The local socket address the connection arrived on.
    pub local: SocketAddr,
    /// Releases the connection slot when dropped.
    pub permit: ConnectionPermit,
}

/// A connection refused by the limits, returned so the server can say why.
#[derive(Debug)]
pub struct Rejected {
    /// The socket; write a short "try later" reply and drop it.
    pub stream: Prefixed<TcpStream>,
    /// The client: the PROXY header's source, or the TCP peer.
    pub peer: SocketAddr,
    /// The local socket address the connection arrived on.
    pub local: SocketAddr,
    /// Which limit was hit.
    pub reason: LimitExceeded,
}
