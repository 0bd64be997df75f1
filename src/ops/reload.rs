//! Hot reload: validate every rule file, then swap atomically (arc-swap).
//! On any error the old set stays, and the error is logged and counted.
//! In-flight requests keep the rule set they started with.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::watch;

use crate::policy;
use crate::proxy::State;
use crate::proxy::routes::RuleSet;
use crate::selftest;

/// Validates and swaps in the rules directory. Returns the number of
/// recipients loaded.
pub fn reload(state: &State) -> Result<usize, Vec<String>> {
    let dir = std::slice::from_ref(&state.config.rules_dir);
    let result = selftest::load_verified(dir)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())
        .and_then(|policies| {
            log_lint_warnings(&policies);
            // Lists the new rules name are loaded (and checked against
            // them) before the rules go live.
            if policies.iter().any(|p| p.suppress.is_some()) {
                let mut errors = state.suppression.refresh(&policies, &state.keys);
                if state.config.suppress.store.is_some() {
                    errors.clear();
                }
                errors.extend(state.suppression.check(&policies, &state.keys));
                if !errors.is_empty() {
                    return Err(errors);
                }
            }
            let current = state.rules.load();
            RuleSet::build(
                &policies,
                &state.keys,
                &state.config.upstream,
                &state.metrics,
                Some(&current),
            )
        });
    match result {
        Ok(set) => {
            let n = set.routes.len();
            state.rules.store(Arc::new(set));
            state.metrics.reload(true, n);
            tracing::info!(recipients = n, "rules reloaded");
            Ok(n)
        }
        Err(errors) => {
            state.metrics.reload(false, 0);
            for e in &errors {
                tracing::error!(error = %e, "rules reload refused; keeping the previous rules");
            }
            Err(errors)
        }
    }
}

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

/// Reloads on SIGHUP and on changes in the rules directory (debounced).
pub fn spawn_watchers(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
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
    let watcher = if state.config.watch_rules {
        let tx = tx.clone();
        let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.try_send(());
            }
        });
        match w {
            Ok(mut w) => match w.watch(&state.config.rules_dir, RecursiveMode::NonRecursive) {
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
                    let st = state.clone();
                    if tokio::task::spawn_blocking(move || reload(&st)).await.is_err() {
                        // A bug in rule loading (a panic) must not end the
                        // watcher or pass unnoticed: the old rules stay.
                        state.metrics.reload(false, 0);
                        tracing::error!("rules reload failed internally; keeping the previous rules");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}
