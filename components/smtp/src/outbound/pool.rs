//! Connection reuse: a session that carried a transaction is reset and kept for a moment, so
//! the next message to the same destination skips DNS, TCP, TLS and EHLO (Postfix's
//! connection cache, `smtp_connection_cache_on_demand`). A session is kept only while idle
//! less than `idle`, reused only while younger than `max_age` and for at most `max_uses`
//! transactions (Postfix: 2 s, 300 s, unlimited), and at most `per_destination` idle
//! sessions are kept per destination. A reaper closes expired ones with QUIT.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::client::Session;

/// Limits of the connection cache (`outbound.connection_cache_*`).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// How long an idle session is kept; zero turns reuse off.
    pub idle: Duration,
    /// No reuse of a session older than this.
    pub max_age: Duration,
    /// Transactions per session at most; 0 = no limit.
    pub max_uses: u32,
    /// Idle sessions kept per destination at most.
    pub per_destination: usize,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            idle: Duration::from_secs(2),
            max_age: Duration::from_secs(300),
            max_uses: 0,
            per_destination: 20,
        }
    }
}

/// A session waiting for its next transaction.
pub struct Idle {
    pub session: Session,
    /// `host[ip]`, as in logs and DSNs.
    pub mta: String,
    opened: Instant,
    since: Instant,
    uses: u32,
}

/// A session taken from the pool or newly made, with its history.
pub struct Checkout {
    pub session: Session,
    pub mta: String,
    opened: Instant,
    uses: u32,
    /// Came from the pool (a broken one is retried on a new connection).
    pub reused: bool,
}

impl Checkout {
    pub fn fresh(session: Session, mta: String) -> Checkout {
        Checkout {
            session,
            mta,
            opened: Instant::now(),
            uses: 0,
            reused: false,
        }
    }
}

#[derive(Default)]
pub struct Pool {
    settings: PoolSettings,
    idle: Mutex<HashMap<String, Vec<Idle>>>,
}

impl Pool {
    /// A pool and, when reuse is on and a runtime is running, its reaper task (which ends
    /// when the pool is dropped).
    pub fn new(settings: PoolSettings) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            settings,
            idle: Mutex::default(),
        });
        if !settings.idle.is_zero() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(&pool), settings.idle));
            }
        }
        pool
    }

    /// The most recently used idle session for `destination`, if one is still fresh.
    pub fn take(&self, destination: &str) -> Option<Checkout> {
        let now = Instant::now();
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(destination)?;
        let mut expired = Vec::new();
        let mut found = None;
        while let Some(idle) = list.pop() {
            if self.fresh(&idle, now) {
                found = Some(idle);
                break;
            }
            expired.push(idle);
        }
        if list.is_empty() {
            map.remove(destination);
        }
        drop(map);
        close_all(expired);
        let idle = found?;
        postbay_telemetry::outbound_connection("reused");
        Some(Checkout {
            session: idle.session,
            mta: idle.mta,
            opened: idle.opened,
            uses: idle.uses,
            reused: true,
        })
    }

    /// Hands back a session whose transaction ended cleanly: RSET, then kept (or QUIT when
    /// reuse is off, the session is spent, or the destination has enough idle sessions).
    pub async fn give_back(&self, destination: &str, mut c: Checkout) {
        c.uses += 1;
        let spent = self.settings.max_uses > 0 && c.uses >= self.settings.max_uses;
        if self.settings.idle.is_zero() || spent || c.opened.elapsed() >= self.settings.max_age {
            c.session.quit().await;
            return;
        }
        // RFC 5321 §4.1.1.5: RSET clears the transaction; a server that does not answer
        // it is not worth keeping.
        if c.session.reset().await.is_err() {
            return;
        }
        let overflow = {
            let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = map.entry(destination.to_string()).or_default();
            if list.len() >= self.settings.per_destination.max(1) {
                Some(c.session)
            } else {
                list.push(Idle {
                    session: c.session,
                    mta: c.mta,
                    opened: c.opened,
                    since: Instant::now(),
                    uses: c.uses,
                });
                None
            }
        };
        if let Some(session) = overflow {
            session.quit().await;
        }
    }

    fn fresh(&self, idle: &Idle, now: Instant) -> bool {
        now.duration_since(idle.since) < self.settings.idle
            && now.duration_since(idle.opened) < self.settings.max_age
    }

    /// Takes out every expired session.
    fn expired(&self) -> Vec<Idle> {
        let now = Instant::now();
        let mut map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        map.retain(|_, list| {
            let (keep, gone): (Vec<Idle>, Vec<Idle>) =
                list.drain(..).partition(|i| self.fresh(i, now));
            out.extend(gone);
            *list = keep;
            !list.is_empty()
        });
        out
    }

    /// Idle sessions now (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        let map = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(Vec::len).sum()
    }
}

fn close_all(sessions: Vec<Idle>) {
    if sessions.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for idle in sessions {
            idle.session.quit().await;
        }
    });
}

async fn reap(pool: Weak<Pool>, idle: Duration) {
    let mut tick = tokio::time::interval((idle / 2).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let expired = pool.expired();
        drop(pool);
        for i in expired {
            i.session.quit().await;
        }
    }
}
