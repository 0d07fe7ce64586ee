//! The admin listener: `/healthz` (the process answers), `/readyz` (it should get traffic:
//! listeners bound, database reachable, not draining) and `/metrics`. Probes and Prometheus
//! send one short GET per connection, which needs no HTTP library.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

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
    crate::probe::serve(listener, move |stream| {
        let health = health.clone();
        async move { answer(stream, &health).await }
    })
    .await
}

async fn answer(mut stream: TcpStream, health: &Health) -> std::io::Result<()> {
    let (method, path) = crate::probe::read_request(&mut stream).await?;
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body) = if method != "GET" {
        ("405 Method Not Allowed", text, "GET only\n".to_string())
    } else {
        match path.as_str() {
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
    crate::probe::respond(&mut stream, status, content_type, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        crate::smtp_reply(250, "");
        assert!(get(addr, "/metrics")
            .await
            .contains("postbay_smtp_replies_total{class=\"2xx\",reason=\"none\"}"));
    }
}
