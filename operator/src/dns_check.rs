//! Whether the records a MailDomain needs are published: one UDP query per record to a
//! configured resolver (RFC 1035 wire format, written here: a stub this small does not
//! justify a resolver library), and a comparison in presentation form.
//!
//! The codec is sans-IO ([`query`], [`parse_response`]); [`Checker`] adds the socket. A failed
//! lookup (timeout, SERVFAIL, truncation) leaves `published` absent rather than false, so a
//! flaky resolver does not report records as missing.

use std::net::SocketAddr;
use std::time::Duration;

use postbay_api::{DnsRecord, DnsRecordType};
use tokio::net::UdpSocket;

use crate::dns_endpoint::unquote;

/// The UDP payload size offered by EDNS(0) (RFC 6891): large enough for a 2048-bit DKIM TXT
/// beside others at the apex, small enough to avoid IP fragmentation (DNS flag day 2020).
const EDNS_UDP: u16 = 1232;
/// Compression pointers followed before a name is declared malformed.
const MAX_POINTERS: usize = 32;

/// Why a lookup gave no answer to compare.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    #[error("malformed DNS response")]
    Malformed,
    #[error("response does not answer the query")]
    Mismatch,
    #[error("truncated response")]
    Truncated,
    #[error("server answered with RCODE {0}")]
    Rcode(u8),
    #[error("DNS i/o: {0}")]
    Io(String),
    #[error("no answer within the timeout")]
    Timeout,
}

/// Record type code (RFC 1035 3.2.2, RFC 3596, RFC 2782, RFC 6698).
pub fn type_code(type_: DnsRecordType) -> u16 {
    match type_ {
        DnsRecordType::A => 1,
        DnsRecordType::Cname => 5,
        DnsRecordType::Mx => 15,
        DnsRecordType::Txt => 16,
        DnsRecordType::Aaaa => 28,
        DnsRecordType::Srv => 33,
        DnsRecordType::Tlsa => 52,
    }
}

/// A recursive query (RD set) for `name` and `qtype`, class IN, with an EDNS(0) OPT record
/// offering [`EDNS_UDP`] bytes.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 1]); // QD=1, AN=NS=0, AR=1
    write_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    // OPT (RFC 6891 section 6.1.2): root name, type 41, class = payload size, TTL 0, no data.
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&EDNS_UDP.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    out
}

/// Writes `name` as labels (no compression).
pub fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// The answers of type `qtype` in a response to query `id`, in presentation form
/// (`10 mx.example.com.`, `"v=spf1 ..."`). NXDOMAIN is an empty answer, not an error.
pub fn parse_response(msg: &[u8], id: u16, qtype: u16) -> Result<Vec<String>, DnsError> {
    let u16_at = |at: usize| -> Result<u16, DnsError> {
        msg.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(DnsError::Malformed)
    };
    if u16_at(0)? != id {
        return Err(DnsError::Mismatch);
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Mismatch); // not a response
    }
    if flags & 0x0200 != 0 {
        return Err(DnsError::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Ok(Vec::new()),
        rcode => return Err(DnsError::Rcode(rcode)),
    }
    let (qdcount, ancount) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..qdcount {
        at = read_name(msg, at)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..ancount {
        let (_, after_name) = read_name(msg, at)?;
        let rtype = u16_at(after_name)?;
        let rdlength = usize::from(u16_at(after_name + 8)?);
        let start = after_name + 10;
        let rdata = msg
            .get(start..start + rdlength)
            .ok_or(DnsError::Malformed)?;
        if rtype == qtype {
            out.push(rdata_text(msg, start, rdata, rtype)?);
        }
        at = start + rdlength;
    }
    Ok(out)
}

fn rdata_text(msg: &[u8], start: usize, rdata: &[u8], rtype: u16) -> Result<String, DnsError> {
    let u16_of = |b: &[u8], at: usize| -> Result<u16, DnsError> {
        b.get(at..at + 2)
            .map(|x| u16::from_be_bytes([x[0], x[1]]))
            .ok_or(DnsError::Malformed)
    };
    Ok(match rtype {
        1 if rdata.len() == 4 => format!("{}.{}.{}.{}", rdata[0], rdata[1], rdata[2], rdata[3]),
        28 if rdata.len() == 16 => {
            let octets: [u8; 16] = rdata.try_into().map_err(|_| DnsError::Malformed)?;
            std::net::Ipv6Addr::from(octets).to_string()
        }
        5 => format!("{}.", read_name(msg, start)?.0),
        15 => format!("{} {}.", u16_of(rdata, 0)?, read_name(msg, start + 2)?.0),
        33 => {
            let target = read_name(msg, start + 6)?.0;
            let target = if target.is_empty() {
                ".".to_string()
            } else {
                format!("{target}.")
            };
            format!(
                "{} {} {} {target}",
                u16_of(rdata, 0)?,
                u16_of(rdata, 2)?,
                u16_of(rdata, 4)?
            )
        }
        16 => {
            let mut strings = Vec::new();
            let mut at = 0;
            while at < rdata.len() {
                let len = usize::from(rdata[at]);
                let chunk = rdata.get(at + 1..at + 1 + len).ok_or(DnsError::Malformed)?;
                let text = String::from_utf8_lossy(chunk);
                strings.push(format!(
                    "\"{}\"",
                    text.replace('\\', "\\\\").replace('"', "\\\"")
                ));
                at += 1 + len;
            }
            strings.join(" ")
        }
        _ => return Err(DnsError::Malformed),
    })
}

/// Reads a possibly compressed name at `at`: the name without the trailing dot, and the
/// offset just after it in the message.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    for _ in 0..MAX_POINTERS {
        loop {
            let len = *msg.get(at).ok_or(DnsError::Malformed)?;
            match len {
                0 => {
                    let after = end.unwrap_or(at + 1);
                    return Ok((labels.join("."), after));
                }
                l if l & 0xc0 == 0xc0 => {
                    let low = *msg.get(at + 1).ok_or(DnsError::Malformed)?;
                    end.get_or_insert(at + 2);
                    at = (usize::from(l & 0x3f) << 8) | usize::from(low);
                    break;
                }
                l if l & 0xc0 == 0 => {
                    let l = usize::from(l);
                    let label = msg.get(at + 1..at + 1 + l).ok_or(DnsError::Malformed)?;
                    labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                    at += 1 + l;
                }
                _ => return Err(DnsError::Malformed),
            }
        }
    }
    Err(DnsError::Malformed)
}

/// Whether `answers` hold `expected`: TXT by their data (however split into strings), host
/// names without regard to case.
pub fn matches(type_: DnsRecordType, expected: &str, answers: &[String]) -> bool {
    let normal = |v: &str| match type_ {
        DnsRecordType::Txt => unquote(v),
        _ => v.trim().to_ascii_lowercase(),
    };
    let want = normal(expected);
    answers.iter().any(|a| normal(a) == want)
}

/// Looks records up at one resolver.
pub struct Checker {
    server: SocketAddr,
    timeout: Duration,
}

impl Checker {
    pub fn new(server: SocketAddr, timeout: Duration) -> Checker {
        Checker { server, timeout }
    }

    pub async fn lookup(&self, name: &str, type_: DnsRecordType) -> Result<Vec<String>, DnsError> {
        let io = |e: std::io::Error| DnsError::Io(e.to_string());
        let bind: SocketAddr = if self.server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(self.server).await.map_err(io)?;
        let id: u16 = rand_id();
        let qtype = type_code(type_);
        socket.send(&query(id, name, qtype)).await.map_err(io)?;
        let mut buf = [0u8; EDNS_UDP as usize];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| DnsError::Timeout)?
                .map_err(io)?;
            match parse_response(&buf[..n], id, qtype) {
                Err(DnsError::Mismatch) => continue, // a stray datagram; keep waiting
                other => return other,
            }
        }
    }

    /// Sets `published` on each record: true or false when the resolver answered, absent
    /// when it did not. The lookups run concurrently, so a silent resolver costs one timeout.
    pub async fn check(&self, records: &mut [DnsRecord]) {
        let lookups = records.iter().map(|r| self.lookup(&r.name, r.type_));
        let answers = futures::future::join_all(lookups).await;
        for (record, answer) in records.iter_mut().zip(answers) {
            record.published = match answer {
                Ok(answers) => Some(matches(record.type_, &record.value, &answers)),
                Err(e) => {
                    tracing::debug!(name = %record.name, error = %e, "DNS check failed");
                    None
                }
            };
        }
    }
}

/// A query id that a blind spoofer cannot guess cheaply; not cryptographic, and need not be:
/// the answer is advice in a status field.
fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16 ^ std::process::id() as u16
}

#[cfg(test)]
mod tests;
