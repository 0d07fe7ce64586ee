//! OpenTelemetry traces: one trace follows a message from SMTP accept through the filter,
//! the queue and LMTP to the store.
//!
//! Off unless an OTLP endpoint is configured (`tracing.otlp_endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Only spans with
//! [`TARGET`] are exported: a connection's `session` span is log context, not a trace root,
//! so an idle IMAP session or a port scan makes no trace. The context crosses process
//! boundaries as a W3C `traceparent` string (<https://www.w3.org/TR/trace-context/>): in
//! the queue entry, in an HTTP header to the filter and as a MAIL parameter over LMTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::Layer;

/// The `tracing` target of exported spans: `tracing::info_span!(target: TARGET, "smtp.message")`.
pub const TARGET: &str = "postbay::trace";

/// Trace settings (the `tracing:` section of the configuration).
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// OTLP/HTTP base URL (`/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces kept; parent-based, so a sampled upstream stays sampled.
    pub sample_ratio: Option<f64>,
    /// `service.name`; default `OTEL_SERVICE_NAME`, else the caller's default.
    pub service_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("tracing.sample_ratio must be between 0 and 1, not {0}")]
    SampleRatio(f64),
}

/// Flushes and stops the exporter when dropped (at process exit).
pub struct TracesGuard {
    provider: Option<SdkTracerProvider>,
}

impl TracesGuard {
    /// Traces off: nothing to flush.
    pub fn disabled() -> TracesGuard {
        TracesGuard { provider: None }
    }

    pub fn enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TracesGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Whether traces are configured at all (settings or the standard variables).
fn endpoint_configured(settings: &TraceSettings) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled
        && (settings
            .otlp_endpoint
            .as_deref()
            .is_some_and(|e| !e.is_empty())
            || set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The OpenTelemetry layer for the subscriber (`None` when traces are off) and the guard
/// that flushes it. `runtime` runs the exporter's HTTP requests: the SDK's batch processor
/// exports from a thread of its own, which has no Tokio reactor.
pub fn layer<S>(
    settings: &TraceSettings,
    default_service: &str,
    runtime: tokio::runtime::Handle,
) -> Result<(Option<impl Layer<S>>, TracesGuard), TraceError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !endpoint_configured(settings) {
        return Ok((None, TracesGuard::disabled()));
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime {
            inner: Arc::new(
                opentelemetry_http::hyper::HyperClient::with_default_connector(
                    Duration::from_secs(10),
                    None,
                ),
            ),
            runtime,
        });
    if let Some(base) = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter.build()?;
    let service = settings
        .service_name
        .clone()
        .or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| default_service.to_string());
    let mut provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build());
    // Without a ratio in the settings the SDK reads OTEL_TRACES_SAMPLER itself.
    if let Some(ratio) = settings.sample_ratio {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(TraceError::SampleRatio(ratio));
        }
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    let tracer = provider.tracer("postbay");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|meta| meta.target() == TARGET));
    Ok((
        Some(layer),
        TracesGuard {
            provider: Some(provider),
        },
    ))
}

/// The W3C `traceparent` of `span`, to hand to the next hop; `None` when traces are off or
/// the span is not recorded.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote span in `traceparent` (ignored when malformed: a bad
/// value from a peer starts a new trace rather than failing the work).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if !valid_traceparent(traceparent) {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// `version-traceid-parentid-flags` in lowercase hex (W3C Trace Context §3.2); what may
/// be stored in a queue entry or passed on as an SMTP parameter.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
}

/// Runs each export request on the process's Tokio runtime.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_http::hyper::HyperClient>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_syntax() {
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 X=1",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
    }

    #[test]
    fn without_a_subscriber_there_is_no_traceparent() {
        assert_eq!(traceparent(&tracing::info_span!(target: TARGET, "x")), None);
    }
}
