//! Hot reload: on SIGHUP and on changes in the rules directory, the
//! [`RuleStore`] validates every rule file, then swaps atomically
//! (arc-swap). On any error the old set stays, and the error is logged,
//! counted and shown on `/rules`. In-flight requests keep the rule set they
//! started with.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use super::rules::{Loaded, RuleStore};
use crate::policy;

/// Logs the privacy lint's warnings for freshly loaded rules, one line each
/// (`file:line:col: warning[CODE]: message`): selectors and codes, never a
/// value. Lint runs here, when rules load, never on the request path.
pub fn log_lint_warnings(policies: &[Arc<policy::CompiledPolicy>]) {
    for p in policies {
        let Ok(text) = std::fs::read_to_string(&p.source) else {
            continue;
        };
        for w in policy::lint::lint(p, &text) {
            tracing::warn!(recipient = %p.recipient, warning = %w, "rule lint");
        }
    }
}

/// Reloads `store` on SIGHUP and, with `watch_dir`, on changes in its
/// directory (debounced), until `shutdown`.
pub fn spawn_watchers<S: Loaded>(
    store: Arc<RuleStore<S>>,
    watch_dir: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    #[cfg(unix)]
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading rules");
                let _ = tx.send(()).await;
            }
        });
    }
    let watcher = if watch_dir {
        let tx = tx.clone();
        let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.try_send(());
            }
        });
        match w {
            Ok(mut w) => match w.watch(store.dir(), RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the rules directory; reload with SIGHUP");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the rules directory; reload with SIGHUP");
                None
            }
        }
    } else {
        None
    };
    tokio::spawn(async move {
        let _keep = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { break; }
                    // Editors write files in several steps: let them settle.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                    let st = store.clone();
                    if tokio::task::spawn_blocking(move || st.reload()).await.is_err() {
                        // A bug in rule loading (a panic) must not end the
                        // watcher or pass unnoticed: the old rules stay.
                        store.failed_internally();
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}
