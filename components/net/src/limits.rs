//! Connection limits: a cap on concurrent connections, in total and per client IP,
//! so one client (or a flood) cannot exhaust the server's sockets and memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Limits for one listener (or a group sharing a gate). `0` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Concurrent connections in total.
    pub max_connections: usize,
    /// Concurrent connections from one client IP address.
    pub max_per_ip: usize,
}

impl ConnectionLimits {
    /// No limit at all.
    pub const fn unlimited() -> Self {
        Self {
            max_connections: 0,
            max_per_ip: 0,
        }
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// `max_connections` reached.
    #[error("too many connections")]
    Total,
    /// `max_per_ip` reached for this client.
    #[error("too many connections from this address")]
    PerIp,
}

/// Counts live connections; cheap to clone and share between listeners.
///
/// Check it with the client address *after* PROXY processing, otherwise every
/// connection relayed by a load balancer counts against the balancer's IP.
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    inner: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Gate {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counter updates cannot panic half-way, so a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionGate {
    /// A gate enforcing `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            inner: Arc::new(Gate {
                limits,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// The limits this gate enforces.
    pub fn limits(&self) -> ConnectionLimits {
        self.inner.limits
    }

    /// Admits a connection from `ip`, or says which limit is reached. The returned
    /// permit holds the slot until it is dropped.
    ///
    /// IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, LimitExceeded> {
        let ip = ip.to_canonical();
        let limits = self.inner.limits;
        let mut counts = self.inner.counts();
        if limits.max_connections != 0 && counts.total >= limits.max_connections {
            return Err(LimitExceeded::Total);
        }
        let from_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if limits.max_per_ip != 0 && from_ip >= limits.max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        counts.total += 1;
        counts.per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionPermit {
            gate: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections currently admitted.
    pub fn active(&self) -> usize {
        self.inner.counts().total
    }

    /// Connections currently admitted from `ip`.
    pub fn active_from(&self, ip: IpAddr) -> usize {
        let ip = ip.to_canonical();
        self.inner.counts().per_ip.get(&ip).copied().unwrap_or(0)
    }
}

/// One admitted connection; releases its slot on drop.
#[derive(Debug)]
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct ConnectionPermit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl ConnectionPermit {
    /// The client address the slot is counted against.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.gate.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Keep the map as small as the set of connected clients.
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_and_release() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_connections: 10,
            max_per_ip: 2,
        });
        let a1 = gate.try_acquire(ip("192.0.2.1")).unwrap();
        let _a2 = gate.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(
            gate.try_acquire(ip("192.0.2.1")).unwrap_err(),
            LimitExceeded::PerIp
        );
        // The mapped form is the same client.
        assert_eq!(
            gate.try_acquire(ip("::ffff:192.0.2.1")).unwrap_err(),
            LimitExceeded::PerIp
        );
        let _b = gate.try_acquire(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.active(), 3);
        drop(a1);
        assert_eq!(gate.active_from(ip("192.0.2.1")), 1);
        let _a3 = gate.try_acquire(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn total_limit_and_release() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_connections: 2,
            max_per_ip: 5,
        });
        let a = gate.try_acquire(ip("192.0.2.1")).unwrap();
        let _b = gate.try_acquire(ip("2001:db8::1")).unwrap();
        assert_eq!(
            gate.try_acquire(ip("192.0.2.3")).unwrap_err(),
            LimitExceeded::Total
        );
        drop(a);
        assert_eq!(gate.active(), 1);
        assert_eq!(gate.active_from(ip("192.0.2.1")), 0);
        let _c = gate.try_acquire(ip("192.0.2.3")).unwrap();
    }

    #[test]
    fn clones_share_counts_and_zero_is_unlimited() {
        let gate = ConnectionGate::new(ConnectionLimits::unlimited());
        let other = gate.clone();
        let permits: Vec<_> = (0..100)
            .map(|_| other.try_acquire(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(gate.active(), 100);
        drop(permits);
        assert_eq!(gate.active(), 0);
        assert_eq!(gate.active_from(ip("192.0.2.1")), 0);
    }

    #[test]
    fn permits_released_across_threads() {
        let gate = ConnectionGate::new(ConnectionLimits {
            max_connections: 1000,
            max_per_ip: 1000,
        });
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let gate = gate.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let addr = IpAddr::from([10, 0, t, (i % 4) as u8]);
                        drop(gate.try_acquire(addr).unwrap());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(gate.active(), 0);
    }
}
