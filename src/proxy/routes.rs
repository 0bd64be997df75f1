//! The loaded rule set as routes: recipient name and Host to a compiled
//! engine, upstream, header rules, rate limiter and client.

use std::collections::HashMap;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};

use super::upstream::{HttpClient, TlsError, build_client};
use crate::config::UpstreamConfig;
use crate::ops::metrics::{Metrics, RecipientMetrics};
use crate::ops::rules::{Loaded, RulesError, SetupError};
use crate::policy::{CompiledPolicy, HeaderValueSource, RateLimit};
use crate::pseudonym::KeyRing;
use crate::rewrite::Engine;

/// Where a recipient's traffic goes (the request path sends it through the
/// `Upstream` implementation for it).
#[derive(Debug, Clone)]
pub enum Destination {
    /// The built-in capture upstream: records, answers 202, sends nothing.
    Capture,
    /// A partner base URL.
    Http {
        /// `https` or `http`.
        scheme: Scheme,
        /// Host and port.
        authority: Authority,
        /// Base path without trailing slash (may be empty).
        base_path: String,
    },
}

/// One recipient, ready to serve.
pub struct Route {
    /// Recipient name.
    pub name: String,
    /// Policy with its keys.
    pub engine: Engine,
    /// Where requests go.
    pub upstream: Destination,
    /// Request headers that may pass.
    pub allow: Vec<HeaderName>,
    /// Headers set on every upstream request (values may be credentials).
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Rate limiter and its settings.
    pub limiter: Option<(RateLimit, Arc<DefaultDirectRateLimiter>)>,
    /// A client of its own when the rule file names a CA file.
    pub client: Option<HttpClient>,
    /// Its metric series.
    pub metrics: Arc<RecipientMetrics>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("upstream", &self.upstream)
            .field("allow", &self.allow)
            .field("set", &self.set.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a compiled rule file could not be made a route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// `upstream` does not parse as a URI.
    #[error("upstream is not a valid URI")]
    UpstreamUri,
    /// `upstream` has no scheme.
    #[error("upstream has no scheme")]
    NoScheme,
    /// `upstream` has no host.
    #[error("upstream has no host")]
    NoHost,
    /// A header name that HTTP does not allow.
    #[error("invalid header name {0}")]
    HeaderName(String),
    /// A `[headers] set` value that is not a valid header value (the
    /// value, a credential maybe, is not shown).
    #[error("header {0}: value is not a valid header value")]
    HeaderValue(String),
    /// The rule file's `ca_file`.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Every route, by recipient and by Host.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// By recipient name.
    pub routes: HashMap<String, Arc<Route>>,
    /// By claimed Host (lower case, without port).
    pub hosts: HashMap<String, Arc<Route>>,
}

impl Loaded for RuleSet {
    fn policies(&self) -> Vec<Arc<CompiledPolicy>> {
        self.routes
            .values()
            .map(|r| r.engine.policy().clone())
            .collect()
    }
}

impl RuleSet {
    /// The compiled policy of every route.
    pub fn policies(&self) -> Vec<Arc<CompiledPolicy>> {
        self.routes
            .values()
            .map(|r| r.engine.policy().clone())
            .collect()
    }

    /// Builds routes for compiled policies. Rate limiters whose settings did
    /// not change are carried over from `previous`, so a reload does not
    /// reset them.
    pub fn build(
        policies: &[Arc<CompiledPolicy>],
        keys: &KeyRing,
        upstream_cfg: &UpstreamConfig,
        metrics: &Metrics,
        previous: Option<&RuleSet>,
    ) -> Result<RuleSet, RulesError> {
        let mut set = RuleSet::default();
        let mut errors = Vec::new();
        for p in policies {
            match build_route(p, keys, upstream_cfg, metrics, previous) {
                Ok(route) => {
                    let route = Arc::new(route);
                    for h in &p.hosts {
                        set.hosts.insert(h.clone(), route.clone());
                    }
                    set.routes.insert(p.recipient.clone(), route);
                }
                Err(e) => errors.push(SetupError {
                    file: p.source.clone(),
                    error: Box::new(e),
                }),
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(RulesError::Setup(errors))
        }
    }

    /// Finds the route for a request: a claimed Host first (transparent
    /// egress: the whole path goes upstream), else `/{recipient}/{rest}`.
    /// Returns the route and the path to append to its upstream base.
    pub fn resolve<'a>(
        &'a self,
        host: Option<&str>,
        path: &'a str,
    ) -> Option<(&'a Arc<Route>, &'a str)> {
        if let Some(h) = host {
            let h = match h.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(""),
                None => h.split(':').next().unwrap_or(""),
            }
            .to_ascii_lowercase();
            if let Some(r) = self.hosts.get(&h) {
                return Some((r, path));
            }
        }
        let rest = path.strip_prefix('/')?;
        let (name, rest) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        self.routes.get(name).map(|r| (r, rest))
    }
}

fn build_route(
    p: &Arc<CompiledPolicy>,
    keys: &KeyRing,
    upstream_cfg: &UpstreamConfig,
    metrics: &Metrics,
    previous: Option<&RuleSet>,
) -> Result<Route, RouteError> {
    let upstream = if p.upstream == "capture:" {
        Destination::Capture
    } else {
        let uri: http::Uri = p.upstream.parse().map_err(|_| RouteError::UpstreamUri)?;
        let scheme = uri.scheme().cloned().ok_or(RouteError::NoScheme)?;
        let authority = uri.authority().cloned().ok_or(RouteError::NoHost)?;
        Destination::Http {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
        }
    };
    let allow = p
        .headers
        .allow
        .iter()
        .map(|h| {
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| RouteError::HeaderName(h.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut set = Vec::new();
    for (name, source) in &p.headers.set {
        let hn = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RouteError::HeaderName(name.clone()))?;
        let value = match source {
            HeaderValueSource::Literal(v) => v.clone(),
            HeaderValueSource::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(_) => {
                    // The partner will refuse the request; nothing personal
                    // leaks, so serving continues, loudly.
                    tracing::warn!(
                        recipient = %p.recipient,
                        header = %name,
                        variable = %var,
                        "credential environment variable is not set; header not sent"
                    );
                    metrics.missing_credential(&p.recipient);
                    continue;
                }
            },
        };
        let mut hv =
            HeaderValue::from_str(&value).map_err(|_| RouteError::HeaderValue(name.clone()))?;
        hv.set_sensitive(true);
        set.push((hn, hv));
    }
    let limiter = p.rate_limit.map(|rl| {
        let reused = previous
            .and_then(|prev| prev.routes.get(&p.recipient))
            .and_then(|r| r.limiter.as_ref())
            .filter(|(old, _)| *old == rl)
            .map(|(_, l)| l.clone());
        let l = reused.unwrap_or_else(|| {
            let quota = Quota::per_second(rl.per_second).allow_burst(rl.burst);
            Arc::new(RateLimiter::direct(quota))
        });
        (rl, l)
    });
    let client = match &p.ca_file {
        Some(ca) => Some(build_client(upstream_cfg, &[ca.as_path()])?),
        None => None,
    };
    Ok(Route {
        name: p.recipient.clone(),
        engine: Engine::new(p.clone(), keys),
        upstream,
        allow,
        set,
        limiter,
        client,
        metrics: Arc::new(metrics.recipient(&p.recipient)),
    })
}
