//! `[aggregate]` of `scrim.toml`: where aggregate windows are kept and how
//! reports are retried.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// `[aggregate]`: the store of aggregate windows and unsent reports (used
/// only when a rule file has `mode = "aggregate"`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AggregateStore")]
pub struct RawAggregateConfig {
    /// Directory of the embedded store (`scrim.redb`), created if missing
    /// (default `spool`). One replica per directory.
    pub dir: Option<PathBuf>,
    /// A shared store for every replica, `redis://host:port[/db]`
    /// (default: none, the embedded store in `dir`). Windows then cover
    /// the events of all replicas, and one replica sends each report.
    pub store: Option<String>,
    /// Groups one window may hold (default 100000); events of further
    /// groups are not folded and are reported as `cut`.
    #[schemars(range(min = 1))]
    pub max_groups_per_window: Option<u64>,
    /// How often windows are checked for closing and reports for sending,
    /// in milliseconds (default 500).
    #[schemars(range(min = 10))]
    pub flush_interval_ms: Option<u64>,
    /// First retry of a report the partner did not take, in milliseconds
    /// (default 1000); doubled on every failure, with jitter.
    #[schemars(range(min = 1))]
    pub retry_initial_ms: Option<u64>,
    /// Longest wait between retries, in milliseconds (default 300000).
    #[schemars(range(min = 1))]
    pub retry_max_ms: Option<u64>,
}

/// `[aggregate]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Directory of the embedded store (default `spool`).
    pub dir: PathBuf,
    /// `redis://...`: the shared store; `None`: the embedded one.
    pub store: Option<String>,
    /// Groups per window (default 100000).
    pub max_groups_per_window: u64,
    /// Flusher tick (default 500 ms).
    pub flush_interval: Duration,
    /// First retry delay (default 1 s).
    pub retry_initial: Duration,
    /// Longest retry delay (default 300 s).
    pub retry_max: Duration,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig::from_raw(RawAggregateConfig::default()).unwrap_or_else(|_| unreachable!())
    }
}

impl AggregateConfig {
    /// Validates `[aggregate]`; the message names the option.
    pub fn from_raw(raw: RawAggregateConfig) -> Result<AggregateConfig, String> {
        let positive = |v: Option<u64>, default: u64, what: &str| match v {
            Some(0) => Err(format!("aggregate.{what} must be greater than 0")),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let flush = positive(raw.flush_interval_ms, 500, "flush_interval_ms")?;
        if flush < 10 {
            return Err("aggregate.flush_interval_ms must be at least 10".into());
        }
        let retry_initial = positive(raw.retry_initial_ms, 1000, "retry_initial_ms")?;
        let retry_max = positive(raw.retry_max_ms, 300_000, "retry_max_ms")?;
        if retry_max < retry_initial {
            return Err("aggregate.retry_max_ms must not be below retry_initial_ms".into());
        }
        if let Some(url) = &raw.store
            && !url.starts_with("redis://")
        {
            return Err("aggregate.store must be a redis:// URL".into());
        }
        Ok(AggregateConfig {
            store: raw.store,
            dir: raw.dir.unwrap_or_else(|| PathBuf::from("spool")),
            max_groups_per_window: positive(
                raw.max_groups_per_window,
                100_000,
                "max_groups_per_window",
            )?,
            flush_interval: Duration::from_millis(flush),
            retry_initial: Duration::from_millis(retry_initial),
            retry_max: Duration::from_millis(retry_max),
        })
    }
}
