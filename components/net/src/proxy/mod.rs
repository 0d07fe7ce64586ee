//! PROXY protocol (v1 and v2) for connections relayed by a trusted load balancer.
//!
//! Only peers inside [`ProxyPolicy::trusted`] are asked for a header: accepting one
//! from anybody would let any client forge its source address. A header sent by an
//! untrusted peer is left in the stream, where the protocol server rejects it as a
//! bad command.

mod parse;
mod prefixed;

pub use parse::{parse, InvalidHeader, Parse, V1_MAX_LEN, V1_PREFIX, V2_SIGNATURE};
pub use prefixed::Prefixed;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Which peers must (or may) send a PROXY header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Peers (usually the load balancer's addresses) whose header is believed.
    pub trusted: Vec<IpNet>,
    /// When true a trusted peer must send a header; when false it may also connect
    /// directly and the first bytes decide.
    ///
    /// Prefer `true` for server-speaks-first protocols (SMTP, LMTP, IMAP, POP3): a
    /// direct client waits for the greeting and sends nothing, so with `false`
    /// the greeting is delayed until the header timeout expires.
    pub required: bool,
}

impl ProxyPolicy {
    /// Whether a header from `ip` is expected and believed.
    ///
    /// IPv4-mapped IPv6 addresses (from dual-stack sockets) match IPv4 networks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// Why no client address could be established.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The trusted peer sent something that is not a valid header.
    #[error("invalid PROXY header: {0}")]
    Invalid(#[from] InvalidHeader),
    /// The header did not arrive within the timeout.
    #[error("timed out waiting for PROXY header")]
    Timeout,
    /// The peer closed the connection before a complete header.
    #[error("connection closed before PROXY header was complete")]
    Closed,
    /// Reading from the socket failed.
    #[error("reading PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header a trusted `peer` sends, returning the client address and
/// any bytes read beyond the header (hand them to [`Prefixed`]).
///
/// For untrusted peers nothing is read and `(peer, [])` is returned. Reads are
/// sized by the parser so that a complete header is never followed by over-read
/// bytes; the leftover is only non-empty when a trusted peer connects without a
/// header while `policy.required` is false. In that mode a peer that sends nothing
/// within `timeout` is treated as a direct client, too.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    policy: &ProxyPolicy,
    timeout: Duration,
) -> Result<(SocketAddr, Vec<u8>), ProxyError> {
    if !policy.is_trusted(peer.ip()) {
        return Ok((peer, Vec::new()));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        match parse(&buf) {
            Parse::Done { addr, consumed } => {
                let leftover = buf.split_off(consumed);
                let client = addr.unwrap_or(peer);
                tracing::debug!(%peer, %client, "PROXY header accepted");
                return Ok((client, leftover));
            }
            Parse::Invalid(InvalidHeader::NoSignature) if !policy.required => {
                tracing::debug!(%peer, "trusted peer connected without PROXY header");
                return Ok((peer, buf));
            }
            Parse::Invalid(reason) => {
                tracing::warn!(%peer, %reason, "rejecting connection from trusted peer");
                return Err(reason.into());
            }
            Parse::NeedMore { at_least } => {
                let filled = buf.len();
                buf.resize(filled + at_least, 0);
                let read = tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])).await;
                let n = match read {
                    Ok(result) => result?,
                    Err(_elapsed) if filled == 0 && !policy.required => {
                        tracing::debug!(%peer, "no PROXY header before timeout; direct client");
                        return Ok((peer, Vec::new()));
                    }
                    Err(_elapsed) => {
                        tracing::warn!(%peer, "timed out waiting for PROXY header");
                        return Err(ProxyError::Timeout);
                    }
                };
                if n == 0 {
                    return Err(ProxyError::Closed);
                }
                buf.truncate(filled + n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn policy(required: bool) -> ProxyPolicy {
        ProxyPolicy {
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            required,
        }
    }

    const LB: &str = "10.1.2.3:40000";
    const V1: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 25\r\n";
    const T: Duration = Duration::from_secs(5);

    #[test]
    fn trust_matching() {
        let p = policy(true);
        assert!(p.is_trusted("10.9.9.9".parse().unwrap()));
        assert!(p.is_trusted("::ffff:10.9.9.9".parse().unwrap()));
        assert!(p.is_trusted("::1".parse().unwrap()));
        assert!(!p.is_trusted("11.0.0.1".parse().unwrap()));
        assert!(!ProxyPolicy::default().is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[tokio::test]
    async fn header_split_across_writes_and_followed_by_data() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            for chunk in V1.chunks(7) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"EHLO x\r\n").await.unwrap();
            client
        });
        let (addr, leftover) =
            read_proxy_header(&mut server, LB.parse().unwrap(), &policy(true), T)
                .await
                .unwrap();
        assert_eq!(addr, "192.0.2.1:51000".parse().unwrap());
        assert!(leftover.is_empty(), "header reads must not over-read");
        let _client = writer.await.unwrap();
        let mut rest = [0u8; 8];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"EHLO x\r\n");
    }

    #[tokio::test]
    async fn untrusted_peer_is_not_read() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(V1).await.unwrap();
        let peer: SocketAddr = "203.0.113.5:1000".parse().unwrap();
        let (addr, leftover) = read_proxy_header(&mut server, peer, &policy(true), T)
            .await
            .unwrap();
        assert_eq!(addr, peer);
        assert!(leftover.is_empty());
        let mut got = vec![0u8; V1.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, V1);
    }

    #[tokio::test]
    async fn optional_header_passes_direct_clients_through() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"a001 CAPABILITY\r\n").await.unwrap();
        let peer: SocketAddr = LB.parse().unwrap();
        let (addr, leftover) = read_proxy_header(&mut server, peer, &policy(false), T)
            .await
            .unwrap();
        assert_eq!(addr, peer);
        assert!(!leftover.is_empty() && b"a001 CAPABILITY\r\n".starts_with(&leftover));
    }

    #[tokio::test]
    async fn optional_header_with_silent_client_times_out_to_direct() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let peer: SocketAddr = LB.parse().unwrap();
        let short = Duration::from_millis(50);
        let (addr, leftover) = read_proxy_header(&mut server, peer, &policy(false), short)
            .await
            .unwrap();
        assert_eq!((addr, leftover.len()), (peer, 0));
    }

    #[tokio::test]
    async fn required_header_errors() {
        let peer: SocketAddr = LB.parse().unwrap();
        let short = Duration::from_millis(50);

        let (_client, mut server) = tokio::io::duplex(1024);
        let err = read_proxy_header(&mut server, peer, &policy(true), short)
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Timeout), "{err}");

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"EHLO x\r\n").await.unwrap();
        let err = read_proxy_header(&mut server, peer, &policy(true), T)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyError::Invalid(InvalidHeader::NoSignature)),
            "{err}"
        );

        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&V1[..20]).await.unwrap();
        drop(client);
        let err = read_proxy_header(&mut server, peer, &policy(true), T)
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Closed), "{err}");

        // A partial header is a timeout even when the header is optional.
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&V1[..20]).await.unwrap();
        let err = read_proxy_header(&mut server, peer, &policy(false), short)
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Timeout), "{err}");
    }
}
