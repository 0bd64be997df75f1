//! The shared store: aggregate windows in Redis (`[aggregate] store =
//! "redis://host:port"`), shared by every replica, so a window covers the
//! events of all of them and one replica sends its report.
//!
//! Every key of a recipient starts with `scrim:agg:{RECIPIENT}` (a hash
//! tag: one slot per recipient, so the scripts below also run on a
//! cluster):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:horizon` | string | windows ending at or before it are closed |
//! | `P:late` | string | late events not yet reported whose arrival window was closed too (rare) |
//! | `P:windows` | sorted set | open window starts |
//! | `P:W:meta` | hash | `window_secs`, `groups`, `events`, `cut_events`, `capped_events`, `late` (events that arrived in it for a window reported already) |
//! | `P:W:groups` | set | the window's group keys |
//! | `P:W:g:GROUP` | hash | `events`, and `NAME:sum`, `NAME:n`, `NAME:min`, `NAME:max` per numeric measure |
//! | `P:W:s:GROUP` | set | the group's subjects (pseudonyms): exact distinct counts |
//! | `P:W:c` | hash | events per subject (noise caps only) |
//! | `P:done:W` | string | the window was reported (kept 7 days), so it is never reported twice |
//! | `P:reports` | hash | report id to report, until a partner takes it |
//! | `P:lease:ID` | string | the replica sending that report now (expires) |
//!
//! A body is folded by one Lua script, so its events land all or none and
//! never interleave with another replica's closing. Closing is seal (move
//! the horizon: no event lands in the window from then on), read, build the
//! report here, and commit (one script: store the report unless the window
//! was reported already, delete the window). Replicas may close the same
//! window at once; only the first commit counts. Redis acknowledges a
//! write once it has applied it; how durable that is depends on its
//! persistence settings (see docs/operations.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use redis::{Connection, Script};

use super::{FoldOutcome, Store, StoreError, WindowLimits};
use crate::aggregate::{Folded, GroupState, Num, Report, ReportBuilder, WindowMeta};
use crate::policy::aggregate::AggregateRules;

/// A report window's `done` marker lives this long (seconds).
const DONE_TTL_SECS: u64 = 7 * 86_400;

const FOLD: &str = r#"
local p = KEYS[1]
local wsecs = tonumber(ARGV[1])
local maxg = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local nm = tonumber(ARGV[4])
local names = {}
for j = 1, nm do names[j] = ARGV[4 + j] end
local horizon = tonumber(redis.call('GET', p .. ':horizon') or '0')
local folded, late, cut, capped, elsewhere = 0, 0, 0, 0, 0
local i = 5 + nm
while i <= #ARGV do
  local w = ARGV[i]
  local aw = ARGV[i + 1]
  local g = ARGV[i + 2]
  local s = ARGV[i + 3]
  local base = i + 3
  i = i + 4 + nm
  if tonumber(w) + wsecs <= horizon then
    late = late + 1
    if tonumber(aw) + wsecs <= horizon then
      elsewhere = elsewhere + 1
    else
      local ameta = p .. ':' .. aw .. ':meta'
      if redis.call('HSETNX', ameta, 'window_secs', wsecs) == 1 then
        redis.call('ZADD', p .. ':windows', aw, aw)
      end
      redis.call('HINCRBY', ameta, 'late', 1)
    end
  else
    local wk = p .. ':' .. w
    local meta = wk .. ':meta'
    if redis.call('HSETNX', meta, 'window_secs', wsecs) == 1 then
      redis.call('ZADD', p .. ':windows', w, w)
    end
    local ok = true
    if cap > 0 then
      local c = redis.call('HINCRBY', wk .. ':c', s, 1)
      if c > cap then
        redis.call('HINCRBY', wk .. ':c', s, -1)
        redis.call('HINCRBY', meta, 'capped_events', 1)
        capped = capped + 1
        ok = false
      end
    end
    if ok and redis.call('SISMEMBER', wk .. ':groups', g) == 0 then
      if redis.call('SCARD', wk .. ':groups') >= maxg then
        redis.call('HINCRBY', meta, 'cut_events', 1)
        cut = cut + 1
        ok = false
      else
        redis.call('SADD', wk .. ':groups', g)
        redis.call('HINCRBY', meta, 'groups', 1)
      end
    end
    if ok then
      local gk = wk .. ':g:' .. g
      redis.call('HINCRBY', gk, 'events', 1)
      for j = 1, nm do
        local v = ARGV[base + j]
        if v ~= '' then
          local n = names[j]
          local x = tonumber(v)
          redis.call('HINCRBYFLOAT', gk, n .. ':sum', v)
          redis.call('HINCRBY', gk, n .. ':n', 1)
          local mn = redis.call('HGET', gk, n .. ':min')
          if (not mn) or x < tonumber(mn) then redis.call('HSET', gk, n .. ':min', v) end
          local mx = redis.call('HGET', gk, n .. ':max')
          if (not mx) or x > tonumber(mx) then redis.call('HSET', gk, n .. ':max', v) end
        end
      end
      redis.call('SADD', wk .. ':s:' .. g, s)
      redis.call('HINCRBY', meta, 'events', 1)
      folded = folded + 1
    end
  end
end
if elsewhere > 0 then redis.call('INCRBY', p .. ':late', elsewhere) end
return {folded, late, cut, capped}
"#;

/// Moves the horizon forward and returns the due windows: start and
/// length, flattened.
const SEAL: &str = r#"
local p = KEYS[1]
local h = tonumber(ARGV[1])
local before = tonumber(redis.call('GET', p .. ':horizon') or '0')
if h > before then redis.call('SET', p .. ':horizon', h) end
local due = {}
for _, w in ipairs(redis.call('ZRANGE', p .. ':windows', 0, -1)) do
  local ws = tonumber(redis.call('HGET', p .. ':' .. w .. ':meta', 'window_secs') or '1')
  if tonumber(w) + ws <= math.max(h, before) then
    table.insert(due, w)
    table.insert(due, ws)
  end
end
return due
"#;

/// Stores a window's report unless the window was reported already,
/// takes the late events it reports, and deletes the window.
const COMMIT: &str = r#"
local p = KEYS[1]
local w = ARGV[1]
local id = ARGV[2]
local report = ARGV[3]
local late = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local made = 0
if redis.call('EXISTS', p .. ':done:' .. w) == 0 then
  redis.call('HSET', p .. ':reports', id, report)
  redis.call('SET', p .. ':done:' .. w, id, 'EX', ttl)
  if late > 0 then redis.call('DECRBY', p .. ':late', late) end
  made = 1
end
local wk = p .. ':' .. w
for _, g in ipairs(redis.call('SMEMBERS', wk .. ':groups')) do
  redis.call('DEL', wk .. ':g:' .. g, wk .. ':s:' .. g)
end
redis.call('DEL', wk .. ':groups', wk .. ':meta', wk .. ':c')
redis.call('ZREM', p .. ':windows', w)
return made
"#;

/// Takes or extends the lease of a report for this replica.
const CLAIM: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Windows and reports in Redis.
pub struct Redis {
    client: redis::Client,
    /// This replica's name in leases (random, per process).
    replica: String,
    claim: Script,
    /// Idle connections, reused (each call takes one, or opens one).
    idle: Mutex<Vec<Connection>>,
    fold: Script,
    seal: Script,
    commit: Script,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> StoreError {
    StoreError(format!("redis: {e}"))
}

fn prefix(recipient: &str) -> String {
    format!("scrim:agg:{{{recipient}}}")
}

impl Redis {
    /// A store on `url` (`redis://host:port[/db]`). Nothing connects yet:
    /// the first call does (on the blocking pool, never on a request's
    /// thread), and a Redis that is down fails that call, not this one.
    pub fn open(url: &str) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|_| StoreError("aggregate.store is not a valid redis:// URL".to_string()))?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| StoreError(format!("no randomness: {e}")))?;
        let store = Redis {
            client,
            replica: id.iter().map(|b| format!("{b:02x}")).collect(),
            claim: Script::new(CLAIM),
            idle: Mutex::new(Vec::new()),
            fold: Script::new(FOLD),
            seal: Script::new(SEAL),
            commit: Script::new(COMMIT),
        };
        Ok(store)
    }

    /// Checks that Redis answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| redis::cmd("PING").query::<String>(c))
            .map(|_| ())
    }

    /// Runs `f` on a connection (an idle one, or a new one); a connection
    /// that failed is dropped, not reused.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match idle {
            Some(c) => c,
            None => {
                let c = self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                    .map_err(err)?;
                c.set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(err)?;
                c.set_write_timeout(Some(Duration::from_secs(10)))
                    .map_err(err)?;
                c
            }
        };
        let out = f(&mut conn).map_err(err)?;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        Ok(out)
    }

    /// A sealed window's report (`None` when another replica reported it
    /// already and deleted it).
    fn build(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        start: u64,
        window_secs: u64,
    ) -> Result<(Report, u64), StoreError> {
        let p = prefix(recipient);
        let wk = format!("{p}:{start}");
        let (meta, groups, late): (HashMap<String, u64>, Vec<String>, Option<u64>) =
            self.with(|c| {
                redis::pipe()
                    .hgetall(format!("{wk}:meta"))
                    .smembers(format!("{wk}:groups"))
                    .get(format!("{p}:late"))
                    .query(c)
            })?;
        let meta = WindowMeta {
            window_secs,
            groups: meta.get("groups").copied().unwrap_or(0),
            events: meta.get("events").copied().unwrap_or(0),
            cut_events: meta.get("cut_events").copied().unwrap_or(0),
            capped_events: meta.get("capped_events").copied().unwrap_or(0),
            late: meta.get("late").copied().unwrap_or(0),
        };
        let mut builder = ReportBuilder::new(rules, recipient, start, window_secs, "");
        let mut groups = groups;
        groups.sort();
        for g in &groups {
            let (fields, distinct): (HashMap<String, String>, u64) = self.with(|c| {
                redis::pipe()
                    .hgetall(format!("{wk}:g:{g}"))
                    .scard(format!("{wk}:s:{g}"))
                    .query(c)
            })?;
            builder.group(g, &group_state(&fields), distinct);
        }
        // Late events of closed windows whose own arrival window was
        // closed too go to the next report made.
        let late = late.unwrap_or(0);
        Ok((builder.finish(late + meta.late, &meta), late))
    }
}

/// A group's hash as a [`GroupState`].
fn group_state(fields: &HashMap<String, String>) -> GroupState {
    let mut state = GroupState {
        events: fields
            .get("events")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        ..GroupState::default()
    };
    for (k, v) in fields {
        let Some(name) = k.strip_suffix(":sum") else {
            continue;
        };
        let num = |suffix: &str| -> f64 {
            fields
                .get(&format!("{name}:{suffix}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        state.nums.insert(
            name.to_string(),
            Num {
                sum: v.parse().unwrap_or(0.0),
                n: num("n") as u64,
                min: num("min"),
                max: num("max"),
            },
        );
    }
    state
}

impl Store for Redis {
    fn fold(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        events: &[Folded],
        limits: WindowLimits,
    ) -> Result<FoldOutcome, StoreError> {
        let mut inv = self.fold.prepare_invoke();
        inv.key(prefix(recipient))
            .arg(rules.window_secs)
            .arg(limits.max_groups)
            .arg(rules.noise.map_or(0, |n| n.max_events_per_subject))
            .arg(rules.measures.len());
        for m in &rules.measures {
            inv.arg(&m.name);
        }
        for f in events {
            inv.arg(f.window)
                .arg(f.arrival_window)
                .arg(&f.group)
                .arg(&f.subject);
            for v in &f.values {
                match v {
                    // Shortest text that reads back as the same number.
                    Some(x) => inv.arg(x.to_string()),
                    None => inv.arg(""),
                };
            }
        }
        let (folded, late, cut, capped): (u64, u64, u64, u64) = self.with(|c| inv.invoke(c))?;
        Ok(FoldOutcome {
            folded,
            late,
            cut,
            capped,
        })
    }

    fn close(
        &self,
        recipient: &str,
        rules: &AggregateRules,
        horizon: u64,
    ) -> Result<Vec<Report>, StoreError> {
        let p = prefix(recipient);
        let due: Vec<u64> = self.with(|c| self.seal.key(&p).arg(horizon).invoke(c))?;
        let mut made = Vec::new();
        for pair in due.chunks(2) {
            let [start, window_secs] = pair else { continue };
            let (report, late) = self.build(recipient, rules, *start, *window_secs)?;
            let body = serde_json::to_string(&report).unwrap_or_default();
            let stored: u64 = self.with(|c| {
                self.commit
                    .key(&p)
                    .arg(*start)
                    .arg(&report.id)
                    .arg(&body)
                    .arg(late)
                    .arg(DONE_TTL_SECS)
                    .invoke(c)
            })?;
            if stored == 1 {
                made.push(report);
            }
        }
        Ok(made)
    }

    fn pending(&self, recipients: &[String]) -> Result<Vec<Report>, StoreError> {
        let mut out = Vec::new();
        for r in recipients {
            let all: HashMap<String, String> = self.with(|c| {
                redis::cmd("HGETALL")
                    .arg(format!("{}:reports", prefix(r)))
                    .query(c)
            })?;
            out.extend(
                all.values()
                    .filter_map(|v| serde_json::from_str::<Report>(v).ok()),
            );
        }
        out.sort_by_key(|r| r.start);
        Ok(out)
    }

    fn delete_report(&self, recipient: &str, id: &str) -> Result<(), StoreError> {
        self.with(|c| {
            redis::cmd("HDEL")
                .arg(format!("{}:reports", prefix(recipient)))
                .arg(id)
                .query::<u64>(c)
        })
        .map(|_| ())
    }

    fn open_windows(&self, recipients: &[String]) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for r in recipients {
            let n: u64 = self.with(|c| {
                redis::cmd("ZCARD")
                    .arg(format!("{}:windows", prefix(r)))
                    .query(c)
            })?;
            if n > 0 {
                out.insert(r.clone(), n);
            }
        }
        Ok(out)
    }

    /// A lease in Redis: the replica that holds it sends the report (and
    /// keeps it while it retries); if it dies, the lease expires and
    /// another replica takes the report over.
    fn claim(&self, recipient: &str, id: &str, lease_ms: u64) -> Result<bool, StoreError> {
        let got: u64 = self.with(|c| {
            self.claim
                .key(format!("{}:lease:{id}", prefix(recipient)))
                .arg(&self.replica)
                .arg(lease_ms)
                .invoke(c)
        })?;
        Ok(got == 1)
    }
}
