//! Logs and traces of the command line: the `RUST_LOG` log on stderr, and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, this crate's spans exported over OTLP/HTTP (protobuf)
//! in the OpenTelemetry GenAI conventions (`gen_ai.*` attributes on the turn, model-call and
//! tool spans). Without the variable nothing is exported and the spans cost what a disabled
//! `tracing` span costs.
//!
//! What goes into span attributes is chosen field by field where the spans are made: ids,
//! names, counts and statuses, never tokens, API keys, request bodies or query strings (a
//! customer list can be filtered by e-mail).

use opentelemetry::trace::TracerProvider as _;
#[cfg(feature = "otlp")]
use opentelemetry_otlp::{Protocol, WithExportConfig};
#[cfg(feature = "otlp")]
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The environment variable that turns the export on (the OTLP base URL, e.g.
/// `http://127.0.0.1:4318`; spans go to `<it>/v1/traces`).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("altan-pay: exporting the last spans failed: {e}");
        }
    }
}

/// Installs the global subscriber: the log filtered by `RUST_LOG` (default `warn`), and the
/// OTLP exporter of this crate's info-level spans when [`OTLP_ENDPOINT_ENV`] is set. A bad
/// exporter setup is reported and the log still works.
pub fn init() -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let log = fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let provider = std::env::var(OTLP_ENDPOINT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|endpoint| match provider() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("altan-pay: {OTLP_ENDPOINT_ENV}={endpoint}: no traces exported: {e}");
                None
            }
        });
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("altan-pay"))
            .with_filter(
                Targets::new()
                    .with_target("altan_pay", LevelFilter::INFO)
                    .with_default(LevelFilter::OFF),
            )
    });
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init();
    Telemetry { provider }
}

/// The OTLP/HTTP exporter behind a batch processor (its own thread; `OTEL_BSP_*` tune it).
#[cfg(feature = "otlp")]
fn provider() -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("altan-pay").build())
        .build())
}

/// Built without the `otlp` feature: nothing to export with.
#[cfg(not(feature = "otlp"))]
fn provider() -> Result<SdkTracerProvider, String> {
    Err("this build has no OTLP exporter (cargo feature `otlp`)".into())
}
