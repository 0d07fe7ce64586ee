//! /healthz, /readyz and /metrics on one small HTTP/1.1 listener. Probes and Prometheus send
//! one short GET per connection, which needs no HTTP library.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;
use crate::{Error, Result};

pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(Error::Io)
}

/// Serves until the process ends. `ready` flips to true once the operator can reconcile (or
/// stands by as a healthy non-leader).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) {
    postbay_telemetry::probe::serve(listener, move |stream| {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        async move { answer(stream, &metrics, &ready).await }
    })
    .await
}

async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    ready: &AtomicBool,
) -> std::io::Result<()> {
    let (method, path) = postbay_telemetry::probe::read_request(&mut stream).await?;
    let (status, content_type, body) =
        route(&method, &path, metrics, ready.load(Ordering::Relaxed));
    postbay_telemetry::probe::respond(&mut stream, status, content_type, &body).await
}

/// Status line, content type and body for a request.
fn route(
    method: &str,
    path: &str,
    metrics: &Metrics,
    ready: bool,
) -> (&'static str, &'static str, String) {
    if method != "GET" {
        return ("405 Method Not Allowed", "text/plain", "GET only\n".into());
    }
    match path {
        "/healthz" => ("200 OK", "text/plain", "ok\n".into()),
        "/readyz" if ready => ("200 OK", "text/plain", "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", "text/plain", "starting\n".into()),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
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
    async fn probes_and_metrics_over_a_real_socket() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let ready = Arc::new(AtomicBool::new(false));
        tokio::spawn(serve(listener, metrics.clone(), ready.clone()));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        ready.store(true, Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200 OK"));
        metrics.set_leader(true);
        let text = get(addr, "/metrics").await;
        assert!(text.contains("postbay_operator_leader 1"), "{text}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
