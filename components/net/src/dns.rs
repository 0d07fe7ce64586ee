//! Resolver settings shared by every DNS client of Postbay (the outbound MX lookup, the
//! filter's SPF/DKIM/DMARC lookups): servers named by a setting, so sites with a local
//! resolver and tests with a DNS server on 127.0.0.0/8 reach them on any port.

use std::net::SocketAddr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};

/// Each server asked over UDP first and over TCP for truncated answers (RFC 7766), on its
/// own port. An empty list is the caller's cue to use the system configuration instead.
pub fn nameservers_config(nameservers: &[SocketAddr]) -> ResolverConfig {
    let servers = nameservers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    ResolverConfig::from_name_servers(servers)
}
