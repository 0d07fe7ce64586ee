//! The HTTP listener (hyper 1, HTTP/1.0 and 1.1: rspamc speaks 1.0 with `Connection: close`).
//! Limits on every connection: header count, time to send the headers, time for the whole
//! request, body size, and connections at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::learn::Learner;
use crate::protocol::{CheckReply, Endpoint, Envelope, ErrorReply, LearnReply, ProtocolError};

/// Connection and request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted (Rspamd's `max_message` defaults to 50 MiB).
    pub max_message_size: usize,
    /// Request headers at most (envelope headers: one per recipient).
    pub max_headers: usize,
    /// Time for a client to send its request headers.
    pub header_timeout: Duration,
    /// Time for one connection, request and reply included.
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 50 * 1024 * 1024,
            max_headers: 1100,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_connections: 1000,
        }
    }
}

/// What the listener serves.
pub struct Filter {
    pub engine: Engine,
    pub learner: Arc<dyn Learner>,
    pub limits: Limits,
}

/// Accepts connections until the task is dropped, each handled by `handle` on a task of its
/// own; beyond `max_connections` at once a new one is closed at once. `what` names the
/// listener in logs.
pub(crate) async fn accept_each<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    what: &'static str,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, what, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, what, "connection refused: too many connections");
            continue;
        };
        let work = handle(stream, peer);
        tokio::spawn(async move {
            let _permit = permit;
            work.await;
        });
    }
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, filter: Arc<Filter>) {
    let max = filter.limits.max_connections;
    accept_each(listener, max, "filter", move |stream, peer| {
        let filter = filter.clone();
        async move {
            let limits = filter.limits.clone();
            let service = hyper::service::service_fn(move |req| {
                let filter = filter.clone();
                async move { Ok::<_, Infallible>(handle(&filter, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_headers(limits.max_headers)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.request_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "filter connection error"),
                Err(_) => tracing::info!(%peer, "filter connection timed out"),
            }
        }
    })
    .await
}

async fn handle(filter: &Filter, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match respond(filter, req).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%error, "filter request refused");
            json(
                error.status(),
                &ErrorReply {
                    error: error.to_string(),
                },
            )
        }
    }
}

async fn respond(
    filter: &Filter,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProtocolError> {
    let endpoint = match Endpoint::route(req.method(), req.uri().path())? {
        Some(endpoint) => endpoint,
        None => {
            return Ok(json(
                StatusCode::NOT_FOUND,
                &ErrorReply {
                    error: "unknown command".into(),
                },
            ))
        }
    };
    if endpoint == Endpoint::Ping {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"pong\r\n")))
            .expect("static response"));
    }
    let (parts, body) = req.into_parts();
    let envelope = Envelope::from_headers(&parts.headers)?;
    if parts.headers.contains_key("compression")
        || parts
            .headers
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(ProtocolError::Compressed);
    }
    let max = filter.limits.max_message_size;
    let declared = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ProtocolError::TooLarge(max));
    }
    let body = Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ProtocolError::TooLarge(max)
            } else {
                ProtocolError::Body(e.to_string())
            }
        })?
        .to_bytes();
    if body.is_empty() {
        return Err(ProtocolError::Empty);
    }
    match endpoint {
        Endpoint::Check => {
            let started = Instant::now();
            // A child of the SMTP server's `filter.scan` span when it sent `traceparent`.
            let span = tracing::info_span!(
                target: postbay_telemetry::traces::TARGET,
                "filter.check",
                otel.kind = "server",
                queue_id = envelope.queue_id.as_deref(),
                action = tracing::field::Empty,
                score = tracing::field::Empty,
            );
            if let Some(parent) = parts
                .headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
            {
                postbay_telemetry::traces::set_parent(&span, parent);
            }
            let verdict =
                tracing::Instrument::instrument(filter.engine.scan(&body, &envelope), span.clone())
                    .await;
            postbay_telemetry::filter_scan(verdict.action.as_str(), started.elapsed());
            span.record("action", verdict.action.as_str());
            span.record("score", verdict.score);
            tracing::info!(
                queue_id = envelope.queue_id.as_deref().unwrap_or("-"),
                ip = ?envelope.ip,
                action = verdict.action.as_str(),
                score = verdict.score,
                symbols = %verdict.symbols.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
                "scanned"
            );
            Ok(json(
                StatusCode::OK,
                &CheckReply::from_verdict(&verdict, started.elapsed()),
            ))
        }
        Endpoint::Learn { spam } => match filter.learner.learn(&body, spam, &envelope).await {
            Ok(()) => {
                postbay_telemetry::filter_learn(spam, "learned");
                Ok(json(StatusCode::OK, &LearnReply { success: true }))
            }
            Err(error) => {
                postbay_telemetry::filter_learn(spam, "failed");
                tracing::warn!(%error, spam, "learning failed");
                Ok(json(
                    error.status(),
                    &ErrorReply {
                        error: error.to_string(),
                    },
                ))
            }
        },
        Endpoint::Ping => unreachable!("answered above"),
    }
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).expect("replies serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("static response")
}
