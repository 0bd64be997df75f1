//! Operations: metrics, audit events, the admin listener, rule reloads.
//!
//! `ops` imports no module of the proxy: the proxy depends on `ops`, never
//! the reverse. Reload works on a [`rules::RuleStore`], generic over what
//! the proxy compiles rules into; the admin listener sees an
//! [`admin::AdminView`] of read-only handles. So a change to the request
//! path never reaches here, and nothing here can reach a request, the
//! upstream client or the key ring.

pub mod admin;
pub mod audit;
pub mod logbuf;
pub mod metrics;
pub mod reload;
pub mod rules;

/// The log filter scrim installs: `RUST_LOG` if set, else `level`.
pub fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
}
