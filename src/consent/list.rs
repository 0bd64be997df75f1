//! Suppression lists: keyed hashes of identifiers, never identifiers.
//!
//! An entry is `HMAC-SHA256(list key, normalised identifier)` truncated to
//! 128 bits, the list key derived from the key ring for lists only
//! ([`KeyRing::list_key`]). A list records the key id and the
//! normalisation its entries were made with. In memory a list is a sorted
//! `Vec<u128>` (16 bytes an entry, no per-entry allocation) searched by
//! bisection.
//!
//! The file `<dir>/<name>.list`: one header line,
//! `scrim-suppress v1 key=<id> normalise=<name>`, then the entries as raw
//! 16-byte big-endian values, sorted, without duplicates. It is replaced
//! whole (written aside, then renamed), so a reader never sees half a
//! write.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pseudonym::{KeyRing, LIST_ENTRY_BYTES, ListKey, Normalise, normalise};

const MAGIC: &str = "scrim-suppress v1";

/// A list problem. Messages name the list and the file, never an entry.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a list.
    #[error("{0}: not a suppression list (bad header or length)")]
    Corrupt(String),
    /// The list's key id is not in the key ring.
    #[error("list \"{list}\" was made with key id \"{key_id}\", which is not in the key ring")]
    UnknownKey {
        /// The list.
        list: String,
        /// Its key id.
        key_id: String,
    },
    /// Entries asked with another normalisation than the list's.
    #[error(
        "list \"{list}\" holds entries normalised as {list_normalise}, not {asked}; add with --normalise {list_normalise}"
    )]
    Normalisation {
        /// The list.
        list: String,
        /// The list's normalisation.
        list_normalise: Normalise,
        /// What was asked.
        asked: Normalise,
    },
    /// Another `scrim suppress add` holds the list.
    #[error(
        "{0} exists: another `scrim suppress add` is writing this list (remove the file if none is running)"
    )]
    Locked(String),
    /// The store did not answer.
    #[error("suppression store: {0}")]
    Store(String),
}

/// A list's entries and what they were made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListData {
    /// The key id entries were made with.
    pub key_id: String,
    /// The normalisation identifiers had before hashing.
    pub normalise: Normalise,
    /// Sorted, without duplicates.
    pub entries: Vec<u128>,
}

impl ListData {
    /// Whether `entry` is on the list (bisection).
    #[inline]
    pub fn contains(&self, entry: u128) -> bool {
        self.entries.binary_search(&entry).is_ok()
    }

    /// Adds entries; returns how many were new. Sorted and deduplicated
    /// after.
    pub fn merge(&mut self, mut more: Vec<u128>) -> usize {
        let before = self.entries.len();
        more.sort_unstable();
        more.dedup();
        if more.is_empty() {
            return 0;
        }
        let old = std::mem::take(&mut self.entries);
        let mut out = Vec::with_capacity(old.len() + more.len());
        let (mut a, mut b) = (old.into_iter().peekable(), more.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(x), Some(y)) if x > y => b.next(),
                (Some(_), Some(_)) => {
                    b.next();
                    a.next()
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next);
        }
        self.entries = out;
        self.entries.len() - before
    }

    /// The header line of the file.
    pub fn header(&self) -> String {
        format!(
            "{MAGIC} key={} normalise={}\n",
            self.key_id,
            self.normalise.name()
        )
    }

    /// Parses a list file's bytes.
    pub fn parse(bytes: &[u8], path: &str) -> Result<ListData, ListError> {
        let corrupt = || ListError::Corrupt(path.to_string());
        let nl = bytes.iter().position(|b| *b == b'\n').ok_or_else(corrupt)?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| corrupt())?;
        let mut parts = header.strip_prefix(MAGIC).ok_or_else(corrupt)?.split(' ');
        let mut key_id = None;
        let mut norm = None;
        for p in parts.by_ref().filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some(("key", v)) if crate::pseudonym::is_valid_key_id(v) => {
                    key_id = Some(v.to_string());
                }
                Some(("normalise", "none")) => norm = Some(Normalise::None),
                Some(("normalise", v)) => norm = Some(Normalise::parse(v).ok_or_else(corrupt)?),
                _ => return Err(corrupt()),
            }
        }
        let body = &bytes[nl + 1..];
        if !body.len().is_multiple_of(LIST_ENTRY_BYTES) {
            return Err(corrupt());
        }
        let mut entries: Vec<u128> = body
            .chunks_exact(LIST_ENTRY_BYTES)
            .map(|c| {
                let mut a = [0u8; LIST_ENTRY_BYTES];
                a.copy_from_slice(c);
                u128::from_be_bytes(a)
            })
            .collect();
        // Written sorted; a file put together by other means still works.
        if !entries.is_sorted_by(|a, b| a < b) {
            entries.sort_unstable();
            entries.dedup();
        }
        Ok(ListData {
            key_id: key_id.ok_or_else(corrupt)?,
            normalise: norm.ok_or_else(corrupt)?,
            entries,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = self.header();
        let mut out = Vec::with_capacity(header.len() + self.entries.len() * LIST_ENTRY_BYTES);
        out.extend_from_slice(header.as_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.to_be_bytes());
        }
        out
    }
}

/// The file of list `name` in `dir`.
pub fn list_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.list"))
}

/// Reads a list file; `None` when it does not exist (an empty list).
pub fn read_file(path: &Path) -> Result<Option<ListData>, ListError> {
    match std::fs::read(path) {
        Ok(bytes) => ListData::parse(&bytes, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ListError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes a list file whole: aside, synced, then renamed over the old one.
pub fn write_file(path: &Path, data: &ListData) -> Result<(), ListError> {
    let io = |source| ListError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("list.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&data.to_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The entry of one identifier under `key` with normalisation `n`.
#[inline]
pub fn entry_of(key: &ListKey, n: Normalise, id: &str) -> u128 {
    u128::from_be_bytes(key.entry(normalise(n, id).as_bytes()))
}

/// What an addition came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// Entries that were not on the list yet.
    pub new: usize,
    /// Entries on the list now.
    pub total: usize,
}

/// The key and normalisation for entries of a list that holds `existing`
/// (or none yet), asked with `asked` (`None`: the list's own).
pub fn key_for(
    keys: &KeyRing,
    list: &str,
    existing: Option<(&str, Normalise)>,
    asked: Option<Normalise>,
) -> Result<(ListKey, Normalise), ListError> {
    let (key_id, n) = match existing {
        Some((id, n)) => {
            if let Some(a) = asked
                && a != n
            {
                return Err(ListError::Normalisation {
                    list: list.to_string(),
                    list_normalise: n,
                    asked: a,
                });
            }
            (id.to_string(), n)
        }
        None => (keys.active_id().to_string(), asked.unwrap_or_default()),
    };
    let key = keys
        .list_key(&key_id)
        .ok_or_else(|| ListError::UnknownKey {
            list: list.to_string(),
            key_id,
        })?;
    Ok((key, n))
}

/// Adds identifiers to list `name` in `dir` (created by the first add),
/// under a lock file so two adds do not lose each other's entries.
pub fn add_to_file(
    dir: &Path,
    name: &str,
    keys: &KeyRing,
    asked: Option<Normalise>,
    ids: &mut dyn Iterator<Item = String>,
    progress: &mut dyn FnMut(u64),
) -> Result<Added, ListError> {
    std::fs::create_dir_all(dir).map_err(|source| ListError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let _lock = Lock::take(&dir.join(format!(".{name}.lock")))?;
    let path = list_path(dir, name);
    let existing = read_file(&path)?;
    let (key, n) = key_for(
        keys,
        name,
        existing.as_ref().map(|d| (d.key_id.as_str(), d.normalise)),
        asked,
    )?;
    let mut data = existing.unwrap_or(ListData {
        key_id: key.key_id().to_string(),
        normalise: n,
        entries: Vec::new(),
    });
    let fresh = hash_all(&key, n, ids, progress);
    let new = data.merge(fresh);
    write_file(&path, &data)?;
    Ok(Added {
        new,
        total: data.entries.len(),
    })
}

/// Entries of every identifier (empty lines skipped), with a progress
/// call every 65536.
pub fn hash_all(
    key: &ListKey,
    n: Normalise,
    ids: &mut dyn Iterator<Item = String>,
    progress: &mut dyn FnMut(u64),
) -> Vec<u128> {
    let mut out = Vec::new();
    let mut seen = 0u64;
    for id in ids {
        let id = id.trim_end_matches(['\r', '\n']);
        if id.is_empty() {
            continue;
        }
        out.push(entry_of(key, n, id));
        seen += 1;
        if seen.is_multiple_of(65_536) {
            progress(seen);
        }
    }
    progress(seen);
    out
}

/// A lock file, removed on drop.
struct Lock(PathBuf);

impl Lock {
    fn take(path: &Path) -> Result<Lock, ListError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(_) => return Ok(Lock(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Instant::now() > deadline {
                        return Err(ListError::Locked(path.display().to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(ListError::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_entries_sorted_and_unique() {
        let mut d = ListData {
            key_id: "k".into(),
            normalise: Normalise::None,
            entries: vec![2, 5, 9],
        };
        assert_eq!(d.merge(vec![9, 1, 5, 7, 7]), 2);
        assert_eq!(d.entries, [1, 2, 5, 7, 9]);
        assert!(d.contains(7) && !d.contains(3));
    }

    #[test]
    fn files_round_trip_and_hold_no_identifier() {
        let dir = std::env::temp_dir().join(format!("scrim-list-{}", std::process::id()));
        let keys = KeyRing::test_ring();
        let ids = ["Alice@Example.com ", "bob@example.com"];
        let mut it = ids.iter().map(|s| s.to_string());
        let added = add_to_file(
            &dir,
            "optout",
            &keys,
            Some(Normalise::Email),
            &mut it,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(added, Added { new: 2, total: 2 });
        let mut again = std::iter::once("alice@example.com".to_string());
        let added = add_to_file(&dir, "optout", &keys, None, &mut again, &mut |_| {}).unwrap();
        assert_eq!(added, Added { new: 0, total: 2 });
        let bytes = std::fs::read(list_path(&dir, "optout")).unwrap();
        let text = String::from_utf8_lossy(&bytes).to_lowercase();
        assert!(!text.contains("alice") && !text.contains("example"));
        let data = read_file(&list_path(&dir, "optout")).unwrap().unwrap();
        assert_eq!(data.normalise, Normalise::Email);
        let key = keys.list_key(&data.key_id).unwrap();
        assert!(data.contains(entry_of(&key, Normalise::Email, "ALICE@example.com")));
        // The list key is not a pseudonym key of any scope.
        let scoped = keys.scoped("");
        assert_ne!(
            scoped.pseudonymise(b"alice@example.com", 128),
            entry_of(&key, Normalise::None, "alice@example.com").to_string()
        );
        let mut other = std::iter::once("x".to_string());
        let e = add_to_file(
            &dir,
            "optout",
            &keys,
            Some(Normalise::Phone),
            &mut other,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("--normalise email"), "{e}");
        assert!(read_file(&list_path(&dir, "nothing")).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
