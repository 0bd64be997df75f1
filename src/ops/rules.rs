//! The rule store: the rules in force, swapped whole on reload, and the
//! builder that makes them ready to serve.
//!
//! The store is generic over what the rules are compiled into (`S`, the
//! proxy's route table), so `ops` names no type of the proxy: the proxy
//! hands a store its builder at start and reads the current set on every
//! request; reload and the admin listener use the store and nothing else.
//! Imports run one way, `proxy` -> `ops`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use super::metrics::Metrics;
use crate::policy::{CompiledPolicy, PolicyError};
use crate::selftest;

/// What a store holds: compiled rules, ready to serve.
pub trait Loaded: Send + Sync + 'static {
    /// The recipients' policies, one each, in no particular order.
    fn policies(&self) -> Vec<Arc<CompiledPolicy>>;
}

/// A rule file that compiled and passed its tests but could not be made
/// ready to serve (its upstream URI, a header, its CA file).
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", .file.display())]
pub struct SetupError {
    /// The rule file.
    pub file: PathBuf,
    /// What went wrong (the proxy's route error).
    #[source]
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

/// Why rules did not load (at start or on reload). Every problem is a
/// located one-liner: file, line, message; never a value.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Rule files that are invalid or fail their own `[[tests]]`.
    #[error("{}", lines(.0))]
    Invalid(Vec<PolicyError>),
    /// Rule files that could not be made ready to serve.
    #[error("{}", lines(.0))]
    Setup(Vec<SetupError>),
    /// Suppression lists the rules name that cannot be used with them (not
    /// loaded from their files, another normalisation than the subjects,
    /// a key not in the ring).
    #[error("{}", .0.join("\n"))]
    Lists(Vec<String>),
    /// Loading failed inside scrim (a panic in a loader).
    #[error("rule loading failed internally")]
    Internal,
}

fn lines<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem of a refused load, as `/rules` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The rule file (empty when the problem is not one file's).
    pub file: String,
    /// 1-based line, 0 when the problem is the whole file.
    pub line: usize,
    /// What is wrong, in one line (with its code for rule-file errors).
    pub message: String,
}

impl RulesError {
    /// Every problem, located.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            RulesError::Invalid(errors) => errors
                .iter()
                .map(|e| Problem {
                    file: e.file.clone(),
                    line: e.line,
                    message: match &e.help {
                        Some(help) => format!("error[{}]: {} ({help})", e.code, e.message),
                        None => format!("error[{}]: {}", e.code, e.message),
                    },
                })
                .collect(),
            RulesError::Setup(errors) => errors
                .iter()
                .map(|e| Problem {
                    file: e.file.display().to_string(),
                    line: 0,
                    message: e.error.to_string(),
                })
                .collect(),
            RulesError::Lists(errors) => errors
                .iter()
                .map(|e| Problem {
                    file: String::new(),
                    line: 0,
                    message: e.clone(),
                })
                .collect(),
            RulesError::Internal => vec![Problem {
                file: String::new(),
                line: 0,
                message: self.to_string(),
            }],
        }
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        match self {
            RulesError::Invalid(e) => e.len(),
            RulesError::Setup(e) => e.len(),
            RulesError::Lists(e) => e.len(),
            RulesError::Internal => 1,
        }
    }

    /// Never true: a refused load has at least one problem.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A refused reload, as `/rules` shows it until a load succeeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadFailure {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// Its problems.
    pub problems: Vec<Problem>,
}

/// Builds the served form of compiled policies; `previous` is the set in
/// force (a builder may carry state over, such as rate limiters).
pub type Builder<S> =
    Box<dyn Fn(&[Arc<CompiledPolicy>], Option<&S>) -> Result<S, RulesError> + Send + Sync>;

/// The rules in force and how to load them again. Reload is validate, then
/// swap: every file is loaded and tested and the whole set built off the
/// request path; on any problem the old set stays.
pub struct RuleStore<S: Loaded> {
    dir: PathBuf,
    current: ArcSwap<S>,
    build: Builder<S>,
    metrics: Arc<Metrics>,
    last_error: Mutex<Option<ReloadFailure>>,
}

impl<S: Loaded> std::fmt::Debug for RuleStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl<S: Loaded> RuleStore<S> {
    /// Loads the rules in `dir` (all valid and passing their tests, or an
    /// error) and builds them with `build`.
    pub fn open(dir: &Path, build: Builder<S>, metrics: Arc<Metrics>) -> Result<Self, RulesError> {
        let set = load(dir, &build, None)?;
        let store = RuleStore {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(set),
            build,
            metrics,
            last_error: Mutex::new(None),
        };
        store.loaded();
        Ok(store)
    }

    /// The rules directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The set in force, for a short look.
    pub fn load(&self) -> Guard<Arc<S>> {
        self.current.load()
    }

    /// The set in force, held: a request keeps the rules it started with.
    pub fn load_full(&self) -> Arc<S> {
        self.current.load_full()
    }

    /// The policies in force.
    pub fn policies(&self) -> Vec<Arc<CompiledPolicy>> {
        self.current.load().policies()
    }

    /// The last refused reload, until a load succeeds.
    pub fn last_error(&self) -> Option<ReloadFailure> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Validates and swaps in the rules directory. Returns the number of
    /// recipients loaded; on error the old set stays, and the error is
    /// logged, counted, and kept for `/rules`.
    pub fn reload(&self) -> Result<usize, RulesError> {
        let current = self.current.load_full();
        match load(&self.dir, &self.build, Some(&current)) {
            Ok(set) => {
                self.current.store(Arc::new(set));
                let n = self.loaded();
                tracing::info!(recipients = n, "rules reloaded");
                Ok(n)
            }
            Err(e) => {
                self.refused(&e);
                Err(e)
            }
        }
    }

    /// A reload that did not finish (the loader panicked): counted and
    /// kept like any refused reload.
    pub fn failed_internally(&self) {
        self.refused(&RulesError::Internal);
    }

    fn refused(&self, e: &RulesError) {
        self.metrics.reload(false, 0);
        for line in e.to_string().lines() {
            tracing::error!(error = %line, "rules reload refused; keeping the previous rules");
        }
        let failure = ReloadFailure {
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            problems: e.problems(),
        };
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
    }

    /// A set was swapped in: metrics, and no reload error to show.
    fn loaded(&self) -> usize {
        let policies = self.policies();
        self.metrics.reload(true, policies.len());
        self.metrics.rule_versions(
            policies
                .iter()
                .map(|p| (p.recipient.as_str(), p.version.as_str())),
        );
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        policies.len()
    }
}

fn load<S>(dir: &Path, build: &Builder<S>, previous: Option<&S>) -> Result<S, RulesError> {
    let policies = selftest::load_verified(std::slice::from_ref(&dir.to_path_buf()))
        .map_err(RulesError::Invalid)?;
    super::reload::log_lint_warnings(&policies);
    build(&policies, previous)
}
