//! The embedded store: one redb file, `scrim.redb`, under `[aggregate] dir`.
//!
//! redb commits are durable when `commit` returns (it writes with
//! `fsync`, copy-on-write, so a crash leaves the last committed state),
//! which is what the caller's 202 waits for. Bodies are folded by one
//! writer thread, which commits every body waiting in one transaction
//! (group commit), so concurrent requests share an `fsync`. Tables:
//!
//! | table | key | value |
//! |---|---|---|
//! | `windows` | recipient, start | [`WindowMeta`] (JSON) |
//! | `groups` | recipient, start, group key | [`GroupState`] (JSON) |
//! | `subjects` | recipient, start, group key, subject | events |
//! | `contrib` | recipient, start, subject | events (noise caps only) |
//! | `late` | recipient | late events not yet reported whose arrival window was closed too (rare) |
//! | `horizon` | recipient | windows ending at or before it are closed |
//! | `reports` | report id | [`Report`] (JSON) |
//! | `store` | `id` | this store's name, random, made when the file is |

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use redb::{Database, ReadableTable, TableDefinition};

use super::{FoldOutcome, Store, StoreError, WindowLimits};
use crate::aggregate::{Folded, GroupState, Report, ReportBuilder, WindowMeta};
use crate::policy::aggregate::AggregateRules;

const WINDOWS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("windows");
const GROUPS: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("groups");
const SUBJECTS: TableDefinition<(&str, u64, &str, &str), u64> = TableDefinition::new("subjects");
const CONTRIB: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("contrib");
const LATE: TableDefinition<&str, u64> = TableDefinition::new("late");
const HORIZON: TableDefinition<&str, u64> = TableDefinition::new("horizon");
const REPORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("reports");
const STORE: TableDefinition<&str, &str> = TableDefinition::new("store");

/// The file name under `[aggregate] dir`.
pub const FILE_NAME: &str = "scrim.redb";

/// Windows and reports in a redb file.
pub struct Embedded {
    db: Arc<Database>,
    /// Bodies to fold, for the writer thread (`None` once dropping).
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// The writer thread, joined on drop so the file is closed when the
    /// store is.
    writer: Option<std::thread::JoinHandle<()>>,
    /// The store's name, part of its report ids (see
    /// [`crate::aggregate::report_id`]).
    id: String,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: serde::de::DeserializeOwned + Default>(b: &[u8]) -> T {
    serde_json::from_slice(b).unwrap_or_default()
}

impl Embedded {
    /// Opens (or creates) `dir/scrim.redb`, creating `dir`. A file left by
    /// a crash is recovered to its last commit.
    pub fn open(dir: &Path) -> Result<Embedded, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::create(dir.join(FILE_NAME)).map_err(|e| {
            StoreError(format!(
                "cannot open {}: {e}",
                dir.join(FILE_NAME).display()
            ))
        })?;
        // Every table exists from here on, so readers need not care.
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(WINDOWS).map_err(err)?;
            tx.open_table(GROUPS).map_err(err)?;
            tx.open_table(SUBJECTS).map_err(err)?;
            tx.open_table(CONTRIB).map_err(err)?;
            tx.open_table(LATE).map_err(err)?;
            tx.open_table(HORIZON).map_err(err)?;
            tx.open_table(REPORTS).map_err(err)?;
        }
        let id = {
            let mut store = tx.open_table(STORE).map_err(err)?;
            let existing = store.get("id").map_err(err)?.map(|v| v.value().to_string());
            match existing {
                Some(id) => id,
                None => {
                    let mut b = [0u8; 8];
                    getrandom::fill(&mut b)
                        .map_err(|e| StoreError(format!("no randomness: {e}")))?;
                    let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    store.insert("id", id.as_str()).map_err(err)?;
                    id
                }
            }
        };
        tx.commit().map_err(err)?;
        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel();
        let for_writer = db.clone();
        let thread = std::thread::Builder::new()
            .name("scrim-store-writer".into())
            .spawn(move || writer(for_writer, queue))
            .map_err(|e| StoreError(format!("cannot start the store's writer: {e}")))?;
        Ok(Embedded {
            db,
            jobs: Mutex::new(Some(jobs)),
            writer: Some(thread),
            id,
        })
    }
}

/// One body's events, waiting for the writer.
struct Job {
    recipient: String,
    rules: AggregateRules,
    events: Vec<Folded>,
    limits: WindowLimits,
    done: mpsc::SyncSender<Result<FoldOutcome, StoreError>>,
}

/// Bodies committed together at most (one `fsync` for all of them).
const MAX_GROUP_COMMIT: usize = 256;

/// The writer: takes the bodies waiting, folds them in one transaction
/// and commits it (group commit: one `fsync` for every body that came in
/// meanwhile), then answers each. The transaction commits all of them or
/// none, so each body is still all or none. Ends when the store is gone.
fn writer(db: Arc<Database>, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP_COMMIT {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let committed = (|| {
            let tx = db.begin_write().map_err(err)?;
            let outs = batch
                .iter()
                .map(|j| fold_in(&tx, j))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(err)?;
            Ok::<_, StoreError>(outs)
        })();
        match committed {
            Ok(outs) => {
                for (job, out) in batch.iter().zip(outs) {
                    let _ = job.done.send(Ok(out));
                }
            }
            Err(e) => {
                for job in &batch {
                    let _ = job.done.send(Err(StoreError(e.0.clone())));
                }
            }
        }
    }
}

/// Folds one body's events inside `tx`.
fn fold_in(tx: &redb::WriteTransaction, job: &Job) -> Result<FoldOutcome, StoreError> {
    let (recipient, rules, events, limits) =
        (job.recipient.as_str(), &job.rules, &job.events, job.limits);
    let mut out = FoldOutcome::default();
    let mut late_elsewhere = 0u64;
    {
        let mut windows = tx.open_table(WINDOWS).map_err(err)?;
        let mut groups = tx.open_table(GROUPS).map_err(err)?;
        let mut subjects = tx.open_table(SUBJECTS).map_err(err)?;
        let mut contrib = tx.open_table(CONTRIB).map_err(err)?;
        let horizon = tx
            .open_table(HORIZON)
            .map_err(err)?
            .get(recipient)
            .map_err(err)?
            .map_or(0, |v| v.value());
        for f in events {
            if f.window + rules.window_secs <= horizon {
                out.late += 1;
                // Counted in the report of the window it arrived in, or,
                // should that be closed too, in the next report made.
                if f.arrival_window + rules.window_secs <= horizon {
                    late_elsewhere += 1;
                    continue;
                }
                let key = (recipient, f.arrival_window);
                let mut meta: WindowMeta = match windows.get(key).map_err(err)? {
                    Some(v) => parse(v.value()),
                    None => WindowMeta {
                        window_secs: rules.window_secs,
                        ..WindowMeta::default()
                    },
                };
                meta.late += 1;
                windows.insert(key, json(&meta).as_slice()).map_err(err)?;
                continue;
            }
            let key = (recipient, f.window);
            let mut meta: WindowMeta = match windows.get(key).map_err(err)? {
                Some(v) => parse(v.value()),
                None => WindowMeta {
                    window_secs: rules.window_secs,
                    ..WindowMeta::default()
                },
            };
            let folded = fold_one(
                &mut groups,
                &mut subjects,
                &mut contrib,
                (recipient, rules, f, limits),
                &mut meta,
            )?;
            match folded {
                Folding::Folded => out.folded += 1,
                Folding::Cut => out.cut += 1,
                Folding::Capped => out.capped += 1,
            }
            windows.insert(key, json(&meta).as_slice()).map_err(err)?;
        }
        if late_elsewhere > 0 {
            let mut late = tx.open_table(LATE).map_err(err)?;
            let before = late.get(recipient).map_err(err)?.map_or(0, |v| v.value());
            late.insert(recipient, before + late_elsewhere)
                .map_err(err)?;
        }
    }
    Ok(out)
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // The writer ends when its queue closes, and with it the file.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
    }
}

impl Store for Embedded {
    /// Hands the body to the writer thread and waits for its commit.
    fn fold(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        events: &[Folded],
        limits: WindowLimits,
    ) -> Result<FoldOutcome, StoreError> {
        let (done, result) = mpsc::sync_channel(1);
        let job = Job {
            recipient: recipient.to_string(),
            rules: rules.clone(),
            events: events.to_vec(),
            limits,
            done,
        };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(|| StoreError("the store is closing".into()))?
            .send(job)
            .map_err(|_| StoreError("the store's writer has stopped".into()))?;
        result
            .recv()
            .map_err(|_| StoreError("the store's writer has stopped".into()))?
    }

    fn close(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        horizon: u64,
    ) -> Result<Vec<Report>, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let mut made = Vec::new();
        {
            let mut windows = tx.open_table(WINDOWS).map_err(err)?;
            let mut groups = tx.open_table(GROUPS).map_err(err)?;
            let mut subjects = tx.open_table(SUBJECTS).map_err(err)?;
            let mut contrib = tx.open_table(CONTRIB).map_err(err)?;
            let mut late_t = tx.open_table(LATE).map_err(err)?;
            let mut horizon_t = tx.open_table(HORIZON).map_err(err)?;
            let mut reports = tx.open_table(REPORTS).map_err(err)?;
            let mut due = Vec::new();
            for entry in windows
                .range((recipient, 0)..=(recipient, u64::MAX))
                .map_err(err)?
            {
                let (k, v) = entry.map_err(err)?;
                let start = k.value().1;
                let meta: WindowMeta = parse(v.value());
                if start + meta.window_secs.max(1) <= horizon {
                    due.push((start, meta));
                }
            }
            let mut late = late_t.get(recipient).map_err(err)?.map_or(0, |v| v.value());
            for (start, meta) in due {
                let mut builder =
                    ReportBuilder::new(rules, recipient, start, meta.window_secs, &self.id);
                let next = start + 1;
                for entry in groups
                    .range((recipient, start, "")..(recipient, next, ""))
                    .map_err(err)?
                {
                    let (k, v) = entry.map_err(err)?;
                    let group = k.value().2;
                    let state: GroupState = parse(v.value());
                    let mut distinct = 0u64;
                    for s in subjects
                        .range((recipient, start, group, "")..)
                        .map_err(err)?
                    {
                        let (sk, _) = s.map_err(err)?;
                        let sk = sk.value();
                        if sk.0 != recipient || sk.1 != start || sk.2 != group {
                            break;
                        }
                        distinct += 1;
                    }
                    builder.group(group, &state, distinct);
                }
                let report = builder.finish(late + meta.late, &meta);
                late = 0;
                reports
                    .insert(report.id.as_str(), json(&report).as_slice())
                    .map_err(err)?;
                groups
                    .retain_in((recipient, start, "")..(recipient, next, ""), |_, _| false)
                    .map_err(err)?;
                subjects
                    .retain_in(
                        (recipient, start, "", "")..(recipient, next, "", ""),
                        |_, _| false,
                    )
                    .map_err(err)?;
                contrib
                    .retain_in((recipient, start, "")..(recipient, next, ""), |_, _| false)
                    .map_err(err)?;
                windows.remove((recipient, start)).map_err(err)?;
                made.push(report);
            }
            late_t.insert(recipient, late).map_err(err)?;
            let before = horizon_t
                .get(recipient)
                .map_err(err)?
                .map_or(0, |v| v.value());
            horizon_t
                .insert(recipient, before.max(horizon))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(made)
    }

    fn pending(&self, recipients: &[String]) -> Result<Vec<Report>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let reports = tx.open_table(REPORTS).map_err(err)?;
        let mut out = Vec::new();
        for entry in reports.iter().map_err(err)? {
            let (_, v) = entry.map_err(err)?;
            if let Ok(r) = serde_json::from_slice::<Report>(v.value())
                && recipients.contains(&r.recipient)
            {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.start);
        Ok(out)
    }

    fn delete_report(&self, _recipient: &str, id: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(REPORTS)
            .map_err(err)?
            .remove(id)
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn open_windows(&self, recipients: &[String]) -> Result<BTreeMap<String, u64>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let windows = tx.open_table(WINDOWS).map_err(err)?;
        let mut out = BTreeMap::new();
        for entry in windows.iter().map_err(err)? {
            let (k, _) = entry.map_err(err)?;
            let recipient = k.value().0;
            if recipients.iter().any(|r| r == recipient) {
                *out.entry(recipient.to_string()).or_insert(0) += 1;
            }
        }
        Ok(out)
    }
}

enum Folding {
    Folded,
    Cut,
    Capped,
}

type Groups<'t> = redb::Table<'t, (&'static str, u64, &'static str), &'static [u8]>;
type Subjects<'t> = redb::Table<'t, (&'static str, u64, &'static str, &'static str), u64>;
type Contrib<'t> = redb::Table<'t, (&'static str, u64, &'static str), u64>;

/// One event into its window: the contribution cap, the group cap, the
/// group's state and its subject set.
fn fold_one(
    groups: &mut Groups<'_>,
    subjects: &mut Subjects<'_>,
    contrib: &mut Contrib<'_>,
    (recipient, rules, f, limits): (&str, &AggregateRules, &Folded, WindowLimits),
    meta: &mut WindowMeta,
) -> Result<Folding, StoreError> {
    if let Some(noise) = rules.noise {
        let key = (recipient, f.window, f.subject.as_str());
        let seen = contrib.get(key).map_err(err)?.map_or(0, |v| v.value());
        if seen >= u64::from(noise.max_events_per_subject) {
            meta.capped_events += 1;
            return Ok(Folding::Capped);
        }
        contrib.insert(key, seen + 1).map_err(err)?;
    }
    let gkey = (recipient, f.window, f.group.as_str());
    let existing = groups
        .get(gkey)
        .map_err(err)?
        .map(|v| parse::<GroupState>(v.value()));
    let mut state = match existing {
        Some(s) => s,
        None if meta.groups >= limits.max_groups => {
            meta.cut_events += 1;
            return Ok(Folding::Cut);
        }
        None => {
            meta.groups += 1;
            GroupState::default()
        }
    };
    state.add(rules, f);
    groups.insert(gkey, json(&state).as_slice()).map_err(err)?;
    let skey = (recipient, f.window, f.group.as_str(), f.subject.as_str());
    let seen = subjects.get(skey).map_err(err)?.map_or(0, |v| v.value());
    subjects.insert(skey, seen + 1).map_err(err)?;
    meta.events += 1;
    Ok(Folding::Folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::compile_str;

    fn rules() -> std::sync::Arc<AggregateRules> {
        let text = r#"upstream = "http://127.0.0.1:9/in"
mode = "aggregate"
[fields]
"u" = "pseudonymise"
"e" = "keep"
[aggregate]
window = "10s"
subject = "u"
k = 2
group_by = ["e"]
[aggregate.measures]
events = "count"
users = "distinct_subjects"
"#;
        compile_str(text, "x.toml", "x").unwrap().aggregate.unwrap()
    }

    fn ev(window: u64, group: &str, subject: &str) -> Folded {
        Folded {
            window,
            arrival_window: window,
            group: format!("[\"{group}\"]"),
            subject: subject.into(),
            values: vec![None, None],
        }
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("scrim-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const LIMITS: WindowLimits = WindowLimits { max_groups: 2 };

    #[test]
    fn fold_close_report_and_late() {
        let d = dir("fold");
        let r = rules();
        let store = Embedded::open(&d).unwrap();
        let events = [
            ev(10, "a", "s1"),
            ev(10, "a", "s2"),
            ev(10, "a", "s1"),
            ev(10, "b", "s1"),
        ];
        let out = store.fold("x", &r, &events, LIMITS).unwrap();
        assert_eq!(out.folded, 4);
        // A third group is over the cap of 2: cut.
        let out = store.fold("x", &r, &[ev(10, "c", "s3")], LIMITS).unwrap();
        assert_eq!(out.cut, 1);
        let x = ["x".to_string()];
        assert_eq!(store.open_windows(&x).unwrap().get("x"), Some(&1));
        // Not yet due.
        assert!(store.close("x", &r, 19).unwrap().is_empty());
        drop(store);
        // Reopened: still there.
        let store = Embedded::open(&d).unwrap();
        let made = store.close("x", &r, 20).unwrap();
        assert_eq!(made.len(), 1);
        let body: serde_json::Value = serde_json::from_str(&made[0].body).unwrap();
        assert_eq!(
            body["groups"],
            serde_json::json!([{"key": {"e": "a"}, "events": 3, "users": 2}])
        );
        assert_eq!(
            body["suppressed"],
            serde_json::json!({"groups": 1, "events": 1})
        );
        assert_eq!(body["cut"], serde_json::json!({"events": 1}));
        assert!(store.open_windows(&x).unwrap().is_empty());
        // The window is closed: a new event for it is late, and shows in
        // the next report.
        let late_one = Folded {
            arrival_window: 20,
            ..ev(10, "a", "s1")
        };
        let out = store
            .fold("x", &r, &[late_one, ev(20, "a", "s1")], LIMITS)
            .unwrap();
        assert_eq!((out.late, out.folded), (1, 1));
        assert_eq!(store.pending(&x).unwrap().len(), 1);
        assert!(store.pending(&["y".to_string()]).unwrap().is_empty());
        store.delete_report("x", &made[0].id).unwrap();
        assert!(store.pending(&x).unwrap().is_empty());
        let made = store.close("x", &r, 30).unwrap();
        let body: serde_json::Value = serde_json::from_str(&made[0].body).unwrap();
        assert_eq!(body["late"], 1);
        assert_eq!(body["window"]["start"], "1970-01-01T00:00:20Z");
        let _ = std::fs::remove_dir_all(&d);
    }
}
