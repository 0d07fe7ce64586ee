//! Sans-IO PROXY protocol header parser (HAProxy spec, v1 text and v2 binary).
//!
//! Kept free of I/O so it can be fuzzed and table-tested; [`super::read_proxy_header`]
//! drives it against a socket. The parser tells the caller the minimum number of bytes
//! it still needs, and that minimum never reaches past the end of a valid header, so a
//! reader that reads exactly that much never consumes protocol bytes by accident.

use std::net::{IpAddr, SocketAddr};

/// First bytes of a v1 (text) header.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The 12-byte v2 (binary) signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest legal v1 line including CRLF (spec section 2.1).
pub const V1_MAX_LEN: usize = 107;
/// Shortest legal v1 line: `PROXY UNKNOWN\r\n`.
const V1_MIN_LEN: usize = 15;
/// Fixed part of a v2 header: signature, ver/cmd, fam/proto, length.
const V2_FIXED_LEN: usize = 16;

/// Result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// The buffer is a proper prefix of a header; at least `at_least` more bytes
    /// are needed (always >= 1, and never more than the rest of a valid header).
    NeedMore { at_least: usize },
    /// A complete header occupies `buf[..consumed]`. `addr` is the client's source
    /// address, or `None` when the header carries none we use (v2 LOCAL, v1
    /// UNKNOWN, UNSPEC/UNIX families, datagram protocols): the caller then keeps
    /// the real peer address.
    Done {
        addr: Option<SocketAddr>,
        consumed: usize,
    },
    /// Not a valid header.
    Invalid(InvalidHeader),
}

/// Why a buffer is not a valid PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHeader {
    /// Starts with neither `PROXY ` nor the v2 signature.
    #[error("no PROXY protocol signature")]
    NoSignature,
    /// No CRLF within the first 107 bytes of a v1 line.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    /// A v2 header with a bad version, command, family or length.
    #[error("malformed PROXY v2 header")]
    V2Malformed,
}

/// Parses a PROXY v1 or v2 header at the start of `buf`, auto-detecting the version.
pub fn parse(buf: &[u8]) -> Parse {
    if buf.is_empty() {
        return Parse::NeedMore {
            at_least: V1_MIN_LEN.min(V2_FIXED_LEN),
        };
    }
    if starts_like(buf, V2_SIGNATURE) {
        parse_v2(buf)
    } else if starts_like(buf, V1_PREFIX) {
        parse_v1(buf)
    } else {
        Parse::Invalid(InvalidHeader::NoSignature)
    }
}

/// True when `buf` and `signature` agree on their common length.
fn starts_like(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

fn parse_v1(buf: &[u8]) -> Parse {
    let len = buf.len();
    if len < V1_PREFIX.len() {
        return Parse::NeedMore {
            at_least: V1_MIN_LEN - len,
        };
    }
    let window = &buf[..len.min(V1_MAX_LEN)];
    let Some(i) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        // The CR must sit at index <= 105 so that CRLF fits in 107 bytes.
        if len >= V1_MAX_LEN - 1 {
            return Parse::Invalid(InvalidHeader::V1TooLong);
        }
        return Parse::NeedMore {
            at_least: V1_MIN_LEN.saturating_sub(len).max(2),
        };
    };
    if window[i] == b'\n' {
        return Parse::Invalid(InvalidHeader::V1Malformed);
    }
    if i + 2 > V1_MAX_LEN {
        return Parse::Invalid(InvalidHeader::V1TooLong);
    }
    match buf.get(i + 1) {
        None => Parse::NeedMore { at_least: 1 },
        Some(b'\n') => {
            let line = &buf[..i + 2];
            match parse_v1_line(line) {
                Some(addr) => Parse::Done {
                    addr,
                    consumed: line.len(),
                },
                None => Parse::Invalid(InvalidHeader::V1Malformed),
            }
        }
        Some(_) => Parse::Invalid(InvalidHeader::V1Malformed),
    }
}

/// Parses one complete CRLF-terminated v1 line; `None` if malformed.
fn parse_v1_line(line: &[u8]) -> Option<Option<SocketAddr>> {
    use ppp::v1::{Addresses, Header};
    match Header::try_from(line) {
        Ok(header) => Some(match header.addresses {
            Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            Addresses::Unknown => None,
        }),
        // The spec says everything after "UNKNOWN" up to CRLF is ignored; ppp
        // rejects UNKNOWN lines carrying many fields, so accept them here.
        Err(_) if is_v1_unknown(line) => Some(None),
        Err(_) => None,
    }
}

fn is_v1_unknown(line: &[u8]) -> bool {
    const UNKNOWN: &[u8] = b"PROXY UNKNOWN";
    line.starts_with(UNKNOWN) && matches!(line.get(UNKNOWN.len()), Some(b' ' | b'\r'))
}

fn parse_v2(buf: &[u8]) -> Parse {
    use ppp::v2::{Addresses, Command, Header, ParseError, Protocol};
    if buf.len() < V2_FIXED_LEN {
        return Parse::NeedMore {
            at_least: V2_FIXED_LEN - buf.len(),
        };
    }
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    match Header::try_from(buf) {
        Ok(header) => {
            let addr = match (header.command, header.protocol, header.addresses) {
                (Command::Proxy, Protocol::Stream, Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (Command::Proxy, Protocol::Stream, Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                // LOCAL (health checks), UNSPEC, UNIX, datagrams: keep the peer.
                _ => None,
            };
            Parse::Done {
                addr,
                consumed: header.len(),
            }
        }
        Err(ParseError::Incomplete(_) | ParseError::Partial(..)) if buf.len() < total => {
            Parse::NeedMore {
                at_least: total - buf.len(),
            }
        }
        Err(_) => Parse::Invalid(InvalidHeader::V2Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut p = src.to_vec();
        p.extend_from_slice(&[10, 0, 0, 1]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&25u16.to_be_bytes());
        v2(0x21, 0x11, &p)
    }

    fn v2_tcp6(src: [u8; 16], sport: u16) -> Vec<u8> {
        let mut p = src.to_vec();
        p.extend_from_slice(&[0u8; 16]);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&25u16.to_be_bytes());
        v2(0x21, 0x21, &p)
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    /// Valid headers and the address they must yield.
    fn valid_cases() -> Vec<(&'static str, Vec<u8>, Option<SocketAddr>)> {
        let v6 = "2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets();
        let mut tlv = v2_tcp4([192, 0, 2, 9], 4000);
        // Append a NOOP TLV (type 0x04) and patch the length field.
        tlv.extend_from_slice(&[0x04, 0x00, 0x02, 0xAA, 0xBB]);
        let len = (tlv.len() - 16) as u16;
        tlv[14..16].copy_from_slice(&len.to_be_bytes());
        let mut unix = vec![0u8; 216];
        unix[..4].copy_from_slice(b"/sck");
        vec![
            (
                "v1 tcp4",
                b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 25\r\n".to_vec(),
                sa("192.0.2.1:51000"),
            ),
            (
                "v1 tcp6",
                b"PROXY TCP6 2001:db8::1 2001:db8::2 4444 993\r\n".to_vec(),
                sa("[2001:db8::1]:4444"),
            ),
            (
                "v1 tcp6 max length",
                b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n".to_vec(),
                sa("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            ),
            ("v1 unknown", b"PROXY UNKNOWN\r\n".to_vec(), None),
            (
                "v1 unknown with fields",
                b"PROXY UNKNOWN a b c d e f g\r\n".to_vec(),
                None,
            ),
            ("v2 tcp4", v2_tcp4([192, 0, 2, 7], 1234), sa("192.0.2.7:1234")),
            ("v2 tcp6", v2_tcp6(v6, 587), sa("[2001:db8::7]:587")),
            ("v2 tcp4 with tlv", tlv, sa("192.0.2.9:4000")),
            ("v2 local", v2(0x20, 0x00, &[]), None),
            (
                "v2 local with addresses",
                {
                    let mut h = v2_tcp4([192, 0, 2, 7], 1234);
                    h[12] = 0x20;
                    h
                },
                None,
            ),
            ("v2 unspec", v2(0x21, 0x00, &[]), None),
            ("v2 udp4", {
                let mut h = v2_tcp4([192, 0, 2, 7], 1234);
                h[13] = 0x12;
                h
            }, None),
            ("v2 unix", v2(0x21, 0x31, &unix), None),
        ]
    }

    #[test]
    fn valid_headers() {
        for (name, bytes, want) in valid_cases() {
            assert_eq!(
                parse(&bytes),
                Parse::Done {
                    addr: want,
                    consumed: bytes.len()
                },
                "{name}"
            );
        }
    }

    #[test]
    fn trailing_protocol_bytes_are_not_consumed() {
        for (name, bytes, want) in valid_cases() {
            let mut with_tail = bytes.clone();
            with_tail.extend_from_slice(b"EHLO x\r\n");
            assert_eq!(
                parse(&with_tail),
                Parse::Done {
                    addr: want,
                    consumed: bytes.len()
                },
                "{name}"
            );
        }
    }

    /// Every truncation asks for more, and never for more than the header has left:
    /// this is what lets the reader avoid reading protocol bytes.
    #[test]
    fn truncated_headers_need_more_within_bounds() {
        for (name, bytes, _) in valid_cases() {
            for k in 0..bytes.len() {
                match parse(&bytes[..k]) {
                    Parse::NeedMore { at_least } => {
                        assert!(at_least >= 1, "{name} at {k}");
                        assert!(k + at_least <= bytes.len(), "{name} at {k}: {at_least}");
                    }
                    other => panic!("{name} truncated at {k}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn malformed_headers() {
        let too_long = {
            let mut l = b"PROXY UNKNOWN ".to_vec();
            l.resize(110, b'x');
            l.extend_from_slice(b"\r\n");
            l
        };
        let mut bad_version = v2_tcp4([1, 2, 3, 4], 5);
        bad_version[12] = 0x11;
        let mut bad_command = v2_tcp4([1, 2, 3, 4], 5);
        bad_command[12] = 0x2F;
        let mut bad_family = v2_tcp4([1, 2, 3, 4], 5);
        bad_family[13] = 0x41;
        let mut short_addr = v2_tcp4([1, 2, 3, 4], 5);
        short_addr[15] = 4; // length 4 cannot hold TCP4 addresses
        let cases: Vec<(&str, Vec<u8>, InvalidHeader)> = vec![
            (
                "smtp command",
                b"EHLO example.org\r\n".to_vec(),
                InvalidHeader::NoSignature,
            ),
            (
                "lowercase proxy",
                b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                InvalidHeader::NoSignature,
            ),
            (
                "tls client hello",
                vec![0x16, 0x03, 0x01, 0x00, 0xa5],
                InvalidHeader::NoSignature,
            ),
            (
                "almost v2 signature",
                b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c".to_vec(),
                InvalidHeader::NoSignature,
            ),
            (
                "bad protocol",
                b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "v6 address in tcp4",
                b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "bad ip",
                b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "port out of range",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "missing port",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "extra field",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "double space",
                b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "bare LF",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "CR without LF",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "empty after prefix",
                b"PROXY \r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "unknownish",
                b"PROXY UNKNOWNX\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            (
                "invalid utf8",
                b"PROXY TCP4 \xff\xfe 5.6.7.8 1 2\r\n".to_vec(),
                InvalidHeader::V1Malformed,
            ),
            ("too long", too_long, InvalidHeader::V1TooLong),
            (
                "no CRLF in 107 bytes",
                {
                    let mut l = b"PROXY ".to_vec();
                    l.resize(200, b'1');
                    l
                },
                InvalidHeader::V1TooLong,
            ),
            ("v2 version 1", bad_version, InvalidHeader::V2Malformed),
            ("v2 bad command", bad_command, InvalidHeader::V2Malformed),
            ("v2 bad family", bad_family, InvalidHeader::V2Malformed),
            (
                "v2 length too short for family",
                short_addr,
                InvalidHeader::V2Malformed,
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(parse(&bytes), Parse::Invalid(want), "{name}");
        }
    }

    /// A v1 line without CRLF is rejected as soon as 106 bytes show no CR.
    #[test]
    fn v1_length_boundary() {
        let mut l = b"PROXY ".to_vec();
        l.resize(105, b'1');
        assert!(matches!(parse(&l), Parse::NeedMore { at_least: 2 }));
        l.push(b'1');
        assert_eq!(parse(&l), Parse::Invalid(InvalidHeader::V1TooLong));
    }

    /// v2 headers are rejected on their fixed part, without waiting for the payload.
    #[test]
    fn v2_rejects_early() {
        let mut h = v2(0x21, 0x11, &[0; 12]);
        h[12] = 0x31;
        assert_eq!(parse(&h[..16]), Parse::Invalid(InvalidHeader::V2Malformed));
    }

    /// Deterministic mini-fuzz (the real one lives in fuzz/): random mutations of valid
    /// headers must never panic and must keep the `Parse` invariants.
    #[test]
    fn mutations_keep_invariants() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let bases: Vec<Vec<u8>> = valid_cases().into_iter().map(|c| c.1).collect();
        for round in 0..20_000 {
            let mut buf = bases[round % bases.len()].clone();
            for _ in 0..(next() % 4) {
                let r = next();
                let pos = (r as usize >> 8) % (buf.len() + 1);
                match r % 3 {
                    0 if pos < buf.len() => buf[pos] = (r >> 32) as u8,
                    1 => buf.insert(pos, (r >> 32) as u8),
                    _ => buf.truncate(pos),
                }
            }
            match parse(&buf) {
                Parse::NeedMore { at_least } => assert!(at_least >= 1),
                Parse::Done { consumed, .. } => {
                    assert!(consumed <= buf.len() && consumed >= V1_MIN_LEN);
                    assert_eq!(parse(&buf[..consumed]), parse(&buf));
                }
                Parse::Invalid(_) => {}
            }
        }
    }
}
