//! Where a running gateway's suppression lists come from, and how an
//! addition reaches it: list files in `[suppress] dir` (checked every
//! poll interval, default 500 ms, whatever `rules.watch` says), or a Redis
//! store shared by every replica (`[suppress] store`).
//!
//! In Redis, list `NAME` is two keys (one hash tag, so one cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `scrim:suppress:{NAME}:meta` | hash | `key` (key id) and `normalise` |
//! | `scrim:suppress:{NAME}:entries` | list | 16-byte entries, in the order added (duplicates allowed) |
//!
//! The length of the entries list is the list's version: a replica polls
//! it and reads only what was appended since its last read, so an
//! addition of any size costs each replica what was added, not the whole
//! list. A replica that cannot reach Redis keeps serving its last good
//! copy and says so (`/readyz` text, `scrim_suppress_store_up`); one that
//! never loaded the lists refuses the traffic of recipients that use them
//! (503 `suppression_unavailable`) and is not ready.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::list::{self, Added, ListData, ListError};
use super::{ListSet, LoadedList, load_list, unusable_lists};
use crate::policy::CompiledPolicy;
use crate::pseudonym::{KeyRing, LIST_ENTRY_BYTES, Normalise};

/// `[suppress]` of scrim.toml, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressConfig {
    /// Directory of list files (default `suppress`).
    pub dir: PathBuf,
    /// `redis://...`: lists in Redis; `None`: files in `dir`.
    pub store: Option<String>,
    /// How often lists are checked for additions (default 500 ms).
    pub poll_interval: Duration,
}

impl Default for SuppressConfig {
    fn default() -> Self {
        SuppressConfig {
            dir: PathBuf::from("suppress"),
            store: None,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Entries read from Redis in one LRANGE.
const CHUNK: i64 = 65_536;

/// The lists of a running gateway.
pub struct Suppression {
    config: SuppressConfig,
    lists: ArcSwap<ListSet>,
    /// Every list the rules name was loaded at least once.
    loaded: AtomicBool,
    /// The last poll reached the store (always true for files).
    store_up: AtomicBool,
    /// Per list: what its last good copy came from.
    seen: Mutex<HashMap<String, Seen>>,
    redis: Option<redis::Client>,
    conn: Mutex<Option<redis::Connection>>,
}

impl std::fmt::Debug for Suppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppression")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What a loaded list was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A file with this length and modification time (or none).
    File(Option<(u64, SystemTime)>),
    /// Redis entries up to this count.
    Store(u64),
}

/// The state `/readyz` and the metrics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Every list was loaded at least once.
    pub loaded: bool,
    /// The last poll reached the store.
    pub store_up: bool,
}

impl Suppression {
    /// Nothing loaded yet. A store URL that does not parse is an error.
    pub fn new(config: SuppressConfig) -> Result<Suppression, ListError> {
        let redis = match &config.store {
            Some(url) => Some(redis::Client::open(url.as_str()).map_err(|_| {
                ListError::Store("suppress.store is not a valid redis:// URL".into())
            })?),
            None => None,
        };
        Ok(Suppression {
            config,
            lists: ArcSwap::from_pointee(ListSet::default()),
            loaded: AtomicBool::new(false),
            store_up: AtomicBool::new(true),
            seen: Mutex::new(HashMap::new()),
            redis,
            conn: Mutex::new(None),
        })
    }

    /// `[suppress]` of scrim.toml.
    pub fn config(&self) -> &SuppressConfig {
        &self.config
    }

    /// The lists in force.
    pub fn lists(&self) -> arc_swap::Guard<Arc<ListSet>> {
        self.lists.load()
    }

    /// Loaded and store state.
    pub fn health(&self) -> Health {
        Health {
            loaded: self.loaded.load(Ordering::SeqCst),
            store_up: self.store_up.load(Ordering::SeqCst),
        }
    }

    /// The lists in force that a rule of `policies` cannot use (another
    /// normalisation than all its subjects, a key not in the ring).
    pub fn check(&self, policies: &[Arc<CompiledPolicy>], keys: &KeyRing) -> Vec<String> {
        let lists = self.lists.load();
        let meta: HashMap<String, (String, Normalise)> = lists
            .lists
            .iter()
            .map(|(k, l)| (k.clone(), (l.data.key_id.clone(), l.data.normalise)))
            .collect();
        policies
            .iter()
            .flat_map(|p| {
                unusable_lists(p, &meta, keys)
                    .into_iter()
                    .map(move |(_, why)| format!("{}: error[E013]: {why}", p.source.display()))
            })
            .collect()
    }

    /// Checks every list the `policies` name, and loads what changed. A
    /// list that cannot be read (or that a rule cannot use) keeps its last
    /// good copy; the error is returned, one message per list. Blocking.
    pub fn refresh(&self, policies: &[Arc<CompiledPolicy>], keys: &KeyRing) -> Vec<String> {
        let wanted: BTreeSet<&str> = policies
            .iter()
            .filter_map(|p| p.suppress.as_ref())
            .flat_map(|s| s.lists.iter().map(String::as_str))
            .collect();
        let mut errors = Vec::new();
        let mut next: Option<ListSet> = None;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = true;
        let mut store_failed = false;
        for name in wanted {
            let before = seen.get(name).cloned();
            let got = match &self.redis {
                None => self.poll_file(name, before.as_ref()),
                Some(_) => self.poll_store(name, before.as_ref()),
            };
            match got {
                Ok(None) => {}
                Ok(Some((Delta::Empty, stamp))) => {
                    let current = self.lists.load();
                    let mut set = next.take().unwrap_or_else(|| (**current).clone());
                    set.remove(name);
                    next = Some(set);
                    seen.insert(name.to_string(), stamp);
                }
                Ok(Some((data, stamp))) => {
                    let current = self.lists.load();
                    match self.accept(name, data, policies, keys, &current) {
                        Ok(list) => {
                            next.get_or_insert_with(|| (**current).clone())
                                .insert(name.to_string(), Arc::new(list));
                            seen.insert(name.to_string(), stamp);
                        }
                        Err(e) => {
                            errors.push(e);
                            all &= before.is_some();
                        }
                    }
                }
                Err(e) => {
                    store_failed |= matches!(e, ListError::Store(_));
                    errors.push(e.to_string());
                    all &= before.is_some();
                }
            }
        }
        drop(seen);
        if let Some(set) = next {
            self.lists.store(Arc::new(set));
        }
        self.store_up.store(!store_failed, Ordering::SeqCst);
        if store_failed {
            // A new connection on the next poll.
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        if all {
            self.loaded.store(true, Ordering::SeqCst);
        }
        errors
    }

    /// A list read whole (`data`, or the appended entries merged into the
    /// copy in force), checked against the rules that name it.
    fn accept(
        &self,
        name: &str,
        data: Delta,
        policies: &[Arc<CompiledPolicy>],
        keys: &KeyRing,
        current: &ListSet,
    ) -> Result<LoadedList, String> {
        let data = match data {
            Delta::Whole(d) => d,
            Delta::Empty => return Err("an empty list is not loaded".into()),
            Delta::Appended {
                key_id,
                normalise,
                entries,
            } => {
                let mut d = match current.get(name) {
                    Some(l) if l.data.key_id == key_id && l.data.normalise == normalise => {
                        l.data.clone()
                    }
                    _ => ListData {
                        key_id,
                        normalise,
                        entries: Vec::new(),
                    },
                };
                d.merge(entries);
                d
            }
        };
        let meta = HashMap::from([(name.to_string(), (data.key_id.clone(), data.normalise))]);
        for p in policies {
            if let Some((_, why)) = unusable_lists(p, &meta, keys).into_iter().next() {
                return Err(format!("{}: {why}", p.source.display()));
            }
        }
        load_list(name, data, keys).map_err(|e| e.to_string())
    }

    fn poll_file(
        &self,
        name: &str,
        before: Option<&Seen>,
    ) -> Result<Option<(Delta, Seen)>, ListError> {
        let path = list::list_path(&self.config.dir, name);
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => Some((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ListError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let seen = Seen::File(stamp);
        if before == Some(&seen) {
            return Ok(None);
        }
        Ok(Some(match list::read_file(&path)? {
            Some(d) => (Delta::Whole(d), seen),
            // Not made yet (or removed): empty.
            None => (Delta::Empty, seen),
        }))
    }

    fn poll_store(
        &self,
        name: &str,
        before: Option<&Seen>,
    ) -> Result<Option<(Delta, Seen)>, ListError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let client = self
                .redis
                .as_ref()
                .ok_or(ListError::Store("no store".into()))?;
            *guard = Some(connect(client)?);
        }
        let c = guard
            .as_mut()
            .ok_or(ListError::Store("no connection".into()))?;
        let (meta, len): (HashMap<String, String>, u64) = redis::pipe()
            .hgetall(meta_key(name))
            .llen(entries_key(name))
            .query(c)
            .map_err(store_err)?;
        let from = match before {
            Some(Seen::Store(n)) if *n == len => return Ok(None),
            Some(Seen::Store(n)) if *n < len => *n,
            _ => 0,
        };
        let (key_id, normalise) = match (meta.get("key"), meta.get("normalise")) {
            (Some(k), Some(n)) => (
                k.clone(),
                if n == "none" {
                    Normalise::None
                } else {
                    Normalise::parse(n).ok_or_else(|| ListError::Corrupt(meta_key(name)))?
                },
            ),
            _ if len == 0 => return Ok(Some((Delta::Empty, Seen::Store(0)))),
            _ => return Err(ListError::Corrupt(meta_key(name))),
        };
        let mut entries = Vec::with_capacity((len - from) as usize);
        let mut at = from as i64;
        while (at as u64) < len {
            let chunk: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(entries_key(name))
                .arg(at)
                .arg((at + CHUNK - 1).min(len as i64 - 1))
                .query(c)
                .map_err(store_err)?;
            if chunk.is_empty() {
                break;
            }
            at += chunk.len() as i64;
            for e in chunk {
                let a: [u8; LIST_ENTRY_BYTES] = e
                    .as_slice()
                    .try_into()
                    .map_err(|_| ListError::Corrupt(entries_key(name)))?;
                entries.push(u128::from_be_bytes(a));
            }
        }
        let delta = if from == 0 {
            let mut d = ListData {
                key_id,
                normalise,
                entries: Vec::new(),
            };
            d.merge(entries);
            Delta::Whole(d)
        } else {
            Delta::Appended {
                key_id,
                normalise,
                entries,
            }
        };
        Ok(Some((delta, Seen::Store(at as u64))))
    }
}

/// What a poll read.
enum Delta {
    /// The list does not exist (yet): empty.
    Empty,
    /// The whole list.
    Whole(ListData),
    /// Entries appended since the last read.
    Appended {
        key_id: String,
        normalise: Normalise,
        entries: Vec<u128>,
    },
}

fn meta_key(name: &str) -> String {
    format!("scrim:suppress:{{{name}}}:meta")
}

fn entries_key(name: &str) -> String {
    format!("scrim:suppress:{{{name}}}:entries")
}

fn store_err(e: redis::RedisError) -> ListError {
    // The error's text is Redis's (kind and message), never an entry.
    ListError::Store(format!("{:?}: {}", e.kind(), e.category()))
}

fn connect(client: &redis::Client) -> Result<redis::Connection, ListError> {
    let c = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(store_err)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(store_err)?;
    c.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(store_err)?;
    Ok(c)
}

/// Adds identifiers to list `name` in the Redis store at `url`: the list's
/// key id and normalisation are set by the first add (and checked by every
/// later one), then the entries are appended in chunks.
pub fn add_to_store(
    url: &str,
    name: &str,
    keys: &KeyRing,
    asked: Option<Normalise>,
    ids: &mut dyn Iterator<Item = String>,
    progress: &mut dyn FnMut(u64),
) -> Result<Added, ListError> {
    let client = redis::Client::open(url)
        .map_err(|_| ListError::Store("suppress.store is not a valid redis:// URL".into()))?;
    let mut c = connect(&client)?;
    let meta: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(meta_key(name))
        .query(&mut c)
        .map_err(store_err)?;
    let existing = match (meta.get("key"), meta.get("normalise")) {
        (Some(k), Some(n)) => Some((
            k.clone(),
            if n == "none" {
                Normalise::None
            } else {
                Normalise::parse(n).ok_or_else(|| ListError::Corrupt(meta_key(name)))?
            },
        )),
        _ => None,
    };
    let (key, n) = list::key_for(
        keys,
        name,
        existing.as_ref().map(|(k, n)| (k.as_str(), *n)),
        asked,
    )?;
    let entries = list::hash_all(&key, n, ids, progress);
    if existing.is_none() {
        // Two first adds at once: the first to set the meta wins, and the
        // other is checked against it.
        let _: () = redis::pipe()
            .atomic()
            .hset_nx(meta_key(name), "key", key.key_id())
            .hset_nx(meta_key(name), "normalise", n.name())
            .query(&mut c)
            .map_err(store_err)?;
        let meta: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(meta_key(name))
            .query(&mut c)
            .map_err(store_err)?;
        if meta.get("key").map(String::as_str) != Some(key.key_id())
            || meta.get("normalise").map(String::as_str) != Some(n.name())
        {
            return Err(ListError::Store(format!(
                "list \"{name}\" was created at the same time with another key or normalisation; add again"
            )));
        }
    }
    let new = entries.len();
    let mut total = 0u64;
    for chunk in entries.chunks(10_000) {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(entries_key(name));
        for e in chunk {
            cmd.arg(&e.to_be_bytes()[..]);
        }
        total = cmd.query(&mut c).map_err(store_err)?;
    }
    if entries.is_empty() {
        total = redis::cmd("LLEN")
            .arg(entries_key(name))
            .query(&mut c)
            .map_err(store_err)?;
    }
    Ok(Added {
        new,
        total: total as usize,
    })
}
