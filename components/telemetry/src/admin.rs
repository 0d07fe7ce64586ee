//! The admin listener: `/healthz` (the process answers), `/readyz` (it should get traffic:
//! listeners bound, database reachable, not draining) and `/metrics`. Probes and Prometheus
//! send one short GET per connection, which needs no HTTP library.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read; probes send far less.
const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/readyz` waits for the database check.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// What `/readyz` reports; shared with the role that flips it.
#[derive(Clone, Default)]
pub struct Health {
    started: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    database: Arc<std::sync::OnceLock<Check>>,
}

impl Health {
    /// Every listener is bound.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// SIGTERM arrived: no new connections, take us out of the Service.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// How to tell that the database answers (set once the store is open).
    pub fn set_database_check<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: Check = Arc::new(move || Box::pin(check()));
        let _ = self.database.set(check);
    }

    /// `Ok` when ready, else why not.
    pub async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("draining");
        }
        if !self.started.load(Ordering::SeqCst) {
            return Err("starting");
        }
        let Some(check) = self.database.get() else {
            return Err("database not open");
        };
        match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, check()).await {
            Ok(true) => Ok(()),
            _ => Err("database not reachable"),
        }
    }
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, health: Health) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &health).await {
                tracing::debug!(error = %e, "admin connection failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body) = if method != "GET" {
        ("405 Method Not Allowed", text, "GET only\n".to_string())
    } else {
        match path {
            "/healthz" => ("200 OK", text, "ok\n".to_string()),
            "/readyz" => match health.ready().await {
                Ok(()) => ("200 OK", text, "ready\n".to_string()),
                Err(why) => ("503 Service Unavailable", text, format!("{why}\n")),
            },
            "/metrics" => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                crate::metrics().render(),
            ),
            _ => ("404 Not Found", text, "not found\n".to_string()),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn readiness_follows_start_database_and_drain() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Health::default();
        tokio::spawn(serve(listener, health.clone()));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.contains("503"));
        health.set_started();
        let up = Arc::new(AtomicBool::new(false));
        let probe = up.clone();
        health.set_database_check(move || {
            let probe = probe.clone();
            async move { probe.load(Ordering::SeqCst) }
        });
        assert!(get(addr, "/readyz")
            .await
            .contains("database not reachable"));
        up.store(true, Ordering::SeqCst);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        health.set_draining();
        assert!(get(addr, "/readyz").await.contains("draining"));
        crate::smtp_reply(250);
        assert!(get(addr, "/metrics")
            .await
            .contains("postbay_smtp_replies_total{class=\"2xx\"}"));
    }
}
