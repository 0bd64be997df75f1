//! Operations: metrics, audit events, the admin listener, rule reloads.

pub mod admin;
pub mod audit;
pub mod logbuf;
pub mod metrics;
pub mod reload;

/// The log filter scrim installs: `RUST_LOG` if set, else `level`.
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
}
