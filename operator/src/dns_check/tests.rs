use std::collections::HashMap;
use std::sync::Arc;

use postbay_api::MailDomainSpec;
use postbay_reconcile::dns::domain_records;
use postbay_reconcile::MailHosts;

use super::*;

/// A local authoritative-style DNS server on 127.0.0.1 answering from a table; unknown
/// names get NXDOMAIN. Answers use a compression pointer to the question, as real servers do.
struct Zone(HashMap<(String, u16), Vec<Vec<u8>>>);

impl Zone {
    fn new() -> Zone {
        Zone(HashMap::new())
    }

    fn add(&mut self, name: &str, qtype: u16, rdata: Vec<u8>) {
        self.0
            .entry((name.to_string(), qtype))
            .or_default()
            .push(rdata);
    }

    fn answer(&self, query: &[u8]) -> Vec<u8> {
        let (name, after) = read_name(query, 12).unwrap();
        let qtype = u16::from_be_bytes([query[after], query[after + 1]]);
        let question = &query[12..after + 4];
        let rrs = self.0.get(&(name, qtype));
        let mut out = Vec::new();
        out.extend_from_slice(&query[0..2]);
        let rcode = if rrs.is_some() { 0 } else { 3 };
        out.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(rrs.map_or(0, Vec::len) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(question);
        for rdata in rrs.into_iter().flatten() {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }
}

fn name(n: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_name(&mut out, n);
    out
}

fn mx(pref: u16, host: &str) -> Vec<u8> {
    let mut out = pref.to_be_bytes().to_vec();
    out.extend(name(host));
    out
}

fn srv(prio: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for n in [prio, weight, port] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend(name(target));
    out
}

fn txt(strings: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in strings {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// Serves `zone` on 127.0.0.1 until the test ends.
async fn serve(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let zone = Arc::new(zone);
    tokio::spawn(async move {
        let mut buf = [0u8; 1232];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let reply = zone.answer(&buf[..n]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

#[test]
fn queries_carry_id_rd_and_the_question() {
    let q = query(0x1234, "_dmarc.Example.test.", 16);
    assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
    assert_eq!(&q[10..12], &[0, 1], "one additional record: OPT");
    let (name, after) = read_name(&q, 12).unwrap();
    assert_eq!(name, "_dmarc.example.test");
    assert_eq!(&q[after..after + 4], &[0, 16, 0, 1]);
    assert_eq!(&q[after + 4..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn hostile_responses_are_malformed_not_panics() {
    // A pointer to itself.
    let mut looped = query(7, "a.test", 1);
    looped.truncate(looped.len() - 11); // no OPT
    looped[11] = 0;
    looped[2] |= 0x80;
    looped[6..8].copy_from_slice(&1u16.to_be_bytes());
    looped.extend_from_slice(&[0xc0, 0x0c + (looped.len() as u8 - 12)]);
    let at = looped.len() - 2;
    looped[at + 1] = at as u8;
    looped.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
    assert_eq!(parse_response(&looped, 7, 1), Err(DnsError::Malformed));
    // Cut short anywhere.
    let mut zone = Zone::new();
    // A 2048-bit DKIM key TXT needs more than 512 bytes beside its question: EDNS carries it.
    zone.add("a.test", 16, txt(&[&"k".repeat(255), &"k".repeat(255)]));
    let big = zone.answer(&query(5, "a.test", 16));
    assert!(big.len() > 512);
    assert_eq!(parse_response(&big, 5, 16).unwrap().len(), 1);
    zone.add("a.test", 15, mx(10, "mx.a.test"));
    let full = zone.answer(&query(9, "a.test", 15));
    assert_eq!(parse_response(&full, 9, 15).unwrap(), ["10 mx.a.test."]);
    for cut in 0..full.len() {
        assert!(parse_response(&full[..cut], 9, 15).is_err(), "cut at {cut}");
    }
    assert_eq!(parse_response(&full, 8, 15), Err(DnsError::Mismatch));
    let mut truncated = full.clone();
    truncated[2] |= 0x02;
    assert_eq!(parse_response(&truncated, 9, 15), Err(DnsError::Truncated));
}

#[tokio::test]
async fn published_records_are_told_apart_from_missing_and_wrong_ones() {
    let spec = MailDomainSpec {
        domain: "example.test".into(),
        catch_all: None,
        dmarc: None,
        mta_sts: None,
        spam_filter: None,
    };
    let mut records = domain_records(&spec, &MailHosts::single("mail.example.test"), &[]);
    let mut zone = Zone::new();
    zone.add("example.test", 15, mx(10, "MAIL.example.test"));
    // SPF published beside another TXT, split differently than we print it.
    zone.add("example.test", 16, txt(&["google-site-verification=x"]));
    zone.add("example.test", 16, txt(&["v=spf1 ", "mx -all"]));
    // DMARC published with another policy; TLS-RPT missing; SRV for IMAPS correct.
    zone.add("_dmarc.example.test", 16, txt(&["v=DMARC1; p=reject"]));
    zone.add(
        "_imaps._tcp.example.test",
        33,
        srv(0, 1, 993, "mail.example.test"),
    );
    let checker = Checker::new(serve(zone).await, Duration::from_secs(2));
    checker.check(&mut records).await;
    let published = |purpose: &str| {
        records
            .iter()
            .find(|r| r.purpose == purpose)
            .unwrap()
            .published
    };
    assert_eq!(published("mx"), Some(true));
    assert_eq!(published("spf"), Some(true));
    assert_eq!(published("dmarc"), Some(false));
    assert_eq!(published("tls-rpt"), Some(false));
    assert_eq!(published("srv:imaps"), Some(true));
    assert_eq!(published("srv:imap"), Some(false));
}

#[tokio::test]
async fn a_silent_resolver_leaves_published_unknown() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let checker = Checker::new(silent.local_addr().unwrap(), Duration::from_millis(200));
    let mut records = vec![postbay_reconcile::dns::dkim_record(
        "example.test",
        "s1",
        postbay_api::DkimAlgorithm::Ed25519Sha256,
        "AAAA",
    )];
    checker.check(&mut records).await;
    assert_eq!(records[0].published, None);
}
