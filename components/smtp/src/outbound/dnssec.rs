//! Whether an answer is DNSSEC-validated, as a validating resolver says it (the AD bit,
//! RFC 4035 §3.2.3, asked for with AD in the query, RFC 6840 §5.7). DANE (RFC 7672) needs
//! this for the MX RRset, the MX host's addresses and its TLSA records. Like Postfix
//! (`smtp_dns_support_level = dnssec`) Postbay trusts the AD bit of its configured resolver
//! rather than validating itself: the resolver is the site's (a node-local Unbound, say), and
//! a stub that validates behind a resolver that strips signatures turns every signed domain
//! into "bogus". [`SecureDns::validates`] checks at start-up that the resolver does validate;
//! when it does not, DANE is off and said so, and nothing is deferred for it.
//!
//! Queries are built and parsed by hickory-proto; this module only carries them (UDP, TCP when
//! the answer is truncated, RFC 7766) with its own short timeout.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// An answer and whether the resolver vouched for it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// AD: every record (or the denial of existence) was validated.
    pub secure: bool,
    pub records: Vec<Record>,
}

impl Answer {
    /// The record data of type `rtype` (CNAMEs on the way left out).
    pub fn data(&self, rtype: RecordType) -> impl Iterator<Item = &RData> {
        self.records
            .iter()
            .filter(move |r| r.record_type() == rtype)
            .map(|r| &r.data)
    }

    /// NOERROR or NXDOMAIN: a real answer, as opposed to SERVFAIL (which a validating
    /// resolver gives for bogus data) and the like.
    pub fn answered(&self) -> bool {
        matches!(self.rcode, ResponseCode::NoError | ResponseCode::NXDomain)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnssecError {
    #[error("no DNS server is configured")]
    NoServer,
    #[error("bad name {0:?}")]
    BadName(String),
    #[error("DNS query for {0} timed out")]
    Timeout(String),
    #[error("DNS query for {name}: {reason}")]
    Failed { name: String, reason: String },
}

/// The resolver's servers and the timeout of one query (TLSA lookups get their own short one
/// so a resolver that drops them does not hold deliveries for the MX lookup's seconds).
#[derive(Debug, Clone)]
pub struct SecureDns {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl SecureDns {
    /// `servers` empty: the system's (/etc/resolv.conf).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> SecureDns {
        let servers = if servers.is_empty() {
            system_servers()
        } else {
            servers.to_vec()
        };
        SecureDns { servers, timeout }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Asks each server in turn until one answers.
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnssecError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let qname = if fqdn == "." {
            Name::root()
        } else {
            Name::from_ascii(&fqdn).map_err(|_| DnssecError::BadName(name.into()))?
        };
        let mut last = DnssecError::NoServer;
        for server in &self.servers {
            match tokio::time::timeout(self.timeout, ask(*server, &qname, rtype)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(reason)) => {
                    last = DnssecError::Failed {
                        name: fqdn.clone(),
                        reason: format!("{server}: {reason}"),
                    }
                }
                Err(_) => last = DnssecError::Timeout(fqdn.clone()),
            }
        }
        Err(last)
    }

    /// Whether the resolver validates: the SOA of a zone known to be signed (`probe`; the
    /// root, `.`, by default) must come back, NOERROR, with AD set. An AD bit on an error or
    /// an empty answer proves nothing (some servers echo the query's flags).
    pub async fn validates(&self, probe: &str) -> Result<bool, DnssecError> {
        let answer = self.query(probe, RecordType::SOA).await?;
        let has_soa = answer.data(RecordType::SOA).next().is_some();
        Ok(answer.rcode == ResponseCode::NoError && has_soa && answer.secure)
    }
}

/// The nameservers of /etc/resolv.conf, on their ports.
fn system_servers() -> Vec<SocketAddr> {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|ns| {
                let port = ns.connections.first().map(|c| c.port).unwrap_or(53);
                SocketAddr::new(ns.ip, port)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "reading /etc/resolv.conf for DNSSEC queries");
            Vec::new()
        }
    }
}

/// One query to one server: UDP, then TCP if the answer was truncated.
async fn ask(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Answer, String> {
    let id: u16 = rand::random();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    query.set_edns(edns);
    query.add_query(Query::query(name.clone(), rtype));
    let wire = query.to_vec().map_err(|e| e.to_string())?;

    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(&wire).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let response = loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        match Message::from_vec(&buf[..n]) {
            // Anything else is a stray or spoofed datagram: keep waiting for ours.
            Ok(m) if m.metadata.id == id && m.metadata.message_type == MessageType::Response => {
                break m
            }
            _ => continue,
        }
    };
    let response = if response.metadata.truncation {
        ask_tcp(server, &wire, id).await?
    } else {
        response
    };
    Ok(Answer {
        rcode: response.metadata.response_code,
        secure: response.metadata.authentic_data,
        records: response.answers,
    })
}

async fn ask_tcp(server: SocketAddr, wire: &[u8], id: u16) -> Result<Message, String> {
    let mut tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    let message = Message::from_vec(&buf).map_err(|e| e.to_string())?;
    if message.metadata.id != id {
        return Err("answer with another id over TCP".into());
    }
    Ok(message)
}
