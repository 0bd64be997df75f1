//! Operations: metrics, audit events, the admin listener, rule reloads.

pub mod admin;
pub mod audit;
pub mod metrics;
pub mod reload;
