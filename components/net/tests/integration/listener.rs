use std::time::Duration;

use postbay_net::{
    listener, Admission, ConnectionGate, ConnectionLimits, LimitExceeded, ProxyPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A silent trusted peer must not hold up the accept loop: establish() runs in the
/// per-connection task, and the next client is served meanwhile.
#[tokio::test]
async fn slow_proxy_peer_does_not_block_accepts() {
    let tcp = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = tcp.local_addr().unwrap();
    let policy = ProxyPolicy {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        required: true,
    };
    let gate = ConnectionGate::new(ConnectionLimits {
        max_connections: 10,
        max_per_ip: 10,
    });
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener::accept(&tcp).await;
            let (policy, gate) = (policy.clone(), gate.clone());
            tokio::spawn(async move {
                let conn = listener::establish(stream, peer, &policy, Duration::from_secs(30))
                    .await
                    .unwrap();
                let Admission::Accepted(mut accepted) = conn.admit(&gate) else {
                    panic!("refused");
                };
                let reply = format!("hello {}\n", accepted.peer.ip());
                accepted.stream.write_all(reply.as_bytes()).await.unwrap();
            });
        }
    });

    let _silent = TcpStream::connect(addr).await.unwrap();
    let mut fast = TcpStream::connect(addr).await.unwrap();
    fast.write_all(b"PROXY TCP4 192.0.2.5 127.0.0.1 1 25\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), fast.read_to_string(&mut reply))
        .await
        .expect("second client was blocked by the first")
        .unwrap();
    assert_eq!(reply, "hello 192.0.2.5\n");
}

/// Limits apply to the client address from the PROXY header, and a refused
/// connection is handed back so the server can answer.
#[tokio::test]
async fn admit_applies_limits_to_proxied_client() {
    let tcp = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = tcp.local_addr().unwrap();
    let policy = ProxyPolicy {
        trusted: vec!["127.0.0.1/32".parse().unwrap()],
        required: true,
    };
    let gate = ConnectionGate::new(ConnectionLimits {
        max_connections: 10,
        max_per_ip: 1,
    });
    let mut clients = Vec::new();
    let mut outcomes = Vec::new();
    for src in ["192.0.2.1", "192.0.2.2", "192.0.2.1"] {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("PROXY TCP4 {src} 127.0.0.1 1000 25\r\n").as_bytes())
            .await
            .unwrap();
        clients.push(c);
        let (stream, peer) = listener::accept(&tcp).await;
        let conn = listener::establish(stream, peer, &policy, Duration::from_secs(5))
            .await
            .unwrap();
        outcomes.push(conn.admit(&gate));
    }
    assert!(matches!(outcomes[0], Admission::Accepted(_)));
    assert!(matches!(outcomes[1], Admission::Accepted(_)));
    let Admission::Rejected(mut rejected) = outcomes.pop().unwrap() else {
        panic!("third connection should be refused");
    };
    assert_eq!(rejected.reason, LimitExceeded::PerIp);
    rejected.stream.write_all(b"421 busy\r\n").await.unwrap();
    drop(rejected);
    let mut reply = String::new();
    clients[2].read_to_string(&mut reply).await.unwrap();
    assert_eq!(reply, "421 busy\r\n");

    assert_eq!(gate.active(), 2);
    outcomes.clear();
    assert_eq!(gate.active(), 0);
}

#[tokio::test]
async fn bind_reuses_address_after_close() {
    let tcp = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = tcp.local_addr().unwrap();
    // Leave a connection behind in TIME_WAIT on the server side.
    let client = TcpStream::connect(addr).await.unwrap();
    let (server_side, _) = listener::accept(&tcp).await;
    drop(server_side);
    drop(client);
    drop(tcp);
    listener::bind(addr)
        .await
        .expect("rebinding with SO_REUSEADDR");
}
