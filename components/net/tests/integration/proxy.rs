use std::net::SocketAddr;
use std::time::Duration;

use postbay_net::{listener, ProxyError, ProxyPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(5);

fn trusting_loopback(required: bool) -> ProxyPolicy {
    ProxyPolicy {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        required,
    }
}

fn v2_header_tcp6(src: &str, sport: u16) -> Vec<u8> {
    let src: std::net::Ipv6Addr = src.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x21, 0, 36]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&[0u8; 16]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&25u16.to_be_bytes());
    h
}

fn v2_header_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&25u16.to_be_bytes());
    h
}

/// Connects to a fresh listener, sends `bytes` in one write, and establishes the
/// server side with `policy`. Returns the result plus the client socket.
async fn establish_with(
    policy: ProxyPolicy,
    bytes: &[u8],
) -> (Result<listener::Established, ProxyError>, TcpStream) {
    let tcp = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut client = TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
    client.write_all(bytes).await.unwrap();
    let (stream, peer) = listener::accept(&tcp).await;
    (listener::establish(stream, peer, &policy, T).await, client)
}

#[tokio::test]
async fn trusted_peer_v2_ipv4_header_sets_client_and_keeps_data() {
    let mut bytes = v2_header_tcp4([198, 51, 100, 7], 40123);
    bytes.extend_from_slice(b"EHLO client.example\r\n");
    let (conn, _client) = establish_with(trusting_loopback(true), &bytes).await;
    let mut conn = conn.unwrap();
    assert_eq!(
        conn.peer,
        "198.51.100.7:40123".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        conn.local.ip(),
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    let mut line = vec![0u8; 21];
    conn.stream.read_exact(&mut line).await.unwrap();
    assert_eq!(line, b"EHLO client.example\r\n");
}

#[tokio::test]
async fn trusted_peer_v2_ipv6_header_sets_client() {
    let (conn, _client) = establish_with(
        trusting_loopback(true),
        &v2_header_tcp6("2001:db8::42", 5555),
    )
    .await;
    assert_eq!(
        conn.unwrap().peer,
        "[2001:db8::42]:5555".parse::<SocketAddr>().unwrap()
    );
}

#[tokio::test]
async fn trusted_peer_v1_header_sets_client() {
    let (conn, _client) = establish_with(
        trusting_loopback(true),
        b"PROXY TCP4 203.0.113.9 127.0.0.1 6000 143\r\na1 NOOP\r\n",
    )
    .await;
    let mut conn = conn.unwrap();
    assert_eq!(conn.peer, "203.0.113.9:6000".parse::<SocketAddr>().unwrap());
    let mut rest = [0u8; 9];
    conn.stream.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"a1 NOOP\r\n");
}

#[tokio::test]
async fn v2_local_command_keeps_real_peer() {
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let (conn, client) = establish_with(trusting_loopback(true), &local).await;
    assert_eq!(conn.unwrap().peer, client.local_addr().unwrap());
}

#[tokio::test]
async fn untrusted_peer_header_is_not_consumed() {
    let policy = ProxyPolicy {
        trusted: vec!["10.0.0.0/8".parse().unwrap()],
        required: true,
    };
    let header = v2_header_tcp4([198, 51, 100, 7], 40123);
    let (conn, client) = establish_with(policy, &header).await;
    let mut conn = conn.unwrap();
    assert_eq!(conn.peer, client.local_addr().unwrap());
    // The protocol server sees the header bytes and will reject them.
    let mut got = vec![0u8; header.len()];
    conn.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(got, header);
}

#[tokio::test]
async fn trusted_peer_without_required_header() {
    let (conn, client) = establish_with(trusting_loopback(true), b"EHLO x\r\n").await;
    assert!(matches!(conn.unwrap_err(), ProxyError::Invalid(_)));
    drop(client);

    let (conn, client) = establish_with(trusting_loopback(false), b"EHLO x\r\n").await;
    let mut conn = conn.unwrap();
    assert_eq!(conn.peer, client.local_addr().unwrap());
    let mut got = [0u8; 8];
    conn.stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"EHLO x\r\n");
}
