//! Where aggregate windows and unsent reports live: behind one trait, the
//! embedded store ([`embedded`], a redb file under `[aggregate] dir`, one
//! per replica) and the shared store ([`redis`], `[aggregate] store =
//! "redis://..."`, one for all replicas).
//!
//! A store keeps, per recipient and window, each group's [`GroupState`],
//! the set of the group's subjects (pseudonyms, for exact distinct counts
//! and the `k` threshold), the window's [`WindowMeta`], and the reports of
//! closed windows until a partner has taken them. Every method is one
//! transaction: a body's events are folded all or none, and a window is
//! turned into its report and deleted in one step, so a crash at any point
//! loses neither an accepted event nor an unsent report.
//!
//! Methods block (disk or network): the request path and the flusher call
//! them on tokio's blocking pool.
//!
//! [`GroupState`]: crate::aggregate::GroupState
//! [`WindowMeta`]: crate::aggregate::WindowMeta

pub mod embedded;
pub mod redis;

use std::collections::BTreeMap;

use crate::aggregate::{Folded, Report};
use crate::policy::aggregate::AggregateRules;

/// Why a store could not do what was asked. The message never holds a
/// stored value (only the backend's own error text: I/O, corruption).
#[derive(Debug, thiserror::Error)]
#[error("aggregate store: {0}")]
pub struct StoreError(pub String);

/// What folding a body's events did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldOutcome {
    /// Events folded into their window.
    pub folded: u64,
    /// Events for a window already reported: counted as `late` in the next
    /// report, not folded.
    pub late: u64,
    /// Events refused because their window had reached its group cap.
    pub cut: u64,
    /// Events not folded because their subject had reached
    /// `max_events_per_subject` in their window (noise only).
    pub capped: u64,
}

/// Limits of what one window may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Groups per window; events of a further group are cut (counted in the
    /// report as `cut`), never folded.
    pub max_groups: u64,
}

/// A store of aggregate windows and unsent reports.
pub trait Store: Send + Sync + 'static {
    /// Folds one body's events for `recipient`, all or none, and returns
    /// once they are durable (the caller's 202 waits for it). An event for a
    /// window already closed is counted as late instead.
    fn fold(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        events: &[Folded],
        limits: WindowLimits,
    ) -> Result<FoldOutcome, StoreError>;

    /// Closes every window of `recipient` that ends at or before `horizon`
    /// (unix seconds): builds each report, stores it, deletes the window,
    /// and from then on counts events for those windows as late. Returns
    /// the reports made.
    fn close(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        horizon: u64,
    ) -> Result<Vec<Report>, StoreError>;

    /// Reports of `recipients` stored and not yet taken by their partner,
    /// oldest window first.
    fn pending(&self, recipients: &[String]) -> Result<Vec<Report>, StoreError>;

    /// A partner took the report: forget it.
    fn delete_report(&self, recipient: &str, id: &str) -> Result<(), StoreError>;

    /// Open windows of `recipients`, per recipient.
    fn open_windows(&self, recipients: &[String]) -> Result<BTreeMap<String, u64>, StoreError>;

    /// Whether this replica may send report `id` now. A shared store hands
    /// each report to one replica at a time for `lease_ms` (a lease), so
    /// only one sends it; a replica that dies leaves it to another when the
    /// lease runs out. Default: always (the store is this replica's own).
    fn claim(&self, recipient: &str, id: &str, lease_ms: u64) -> Result<bool, StoreError> {
        let _ = (recipient, id, lease_ms);
        Ok(true)
    }
}
