//! The production store: offsets and state in Redis, committed by one Lua script.
//!
//! The key layout is in `keys`; how the host reaches Redis (one server, Cluster,
//! Sentinel, TLS, ACL users) in `connect`; the commit (its Rust encoder beside
//! `commit.lua`, the format described once) in `commit`; the move from the layout of
//! older releases in `migrate`.

mod commit;
pub mod connect;
pub mod keys;
mod migrate;
pub mod outbox;
pub mod query;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::Script;

pub use connect::{Conn, Redis, RedisArgs, RedisConfig, Topology, shown_url};
pub use keys::Keys;

use super::time::{Clock, Due, TimeDomain, TimeKey};
use super::{Commit, Committed, StateScope, StateStore, StoreError};
use crate::retry::{Backoff, Halt, Limit, Retry};
use crate::sync::Locked;

/// What of a partition's timers and expiries is due, and the earliest entry after them.
const DUE_SCRIPT: &str = include_str!("due.lua");

/// How often the start-up wait repeats its warning.
const WAIT_WARN_EVERY: Duration = Duration::from_secs(5);

/// Waits until Redis answers PING, as long as a commit would wait for it (`give_up`): a
/// host started while Redis restarts rides it out. Warns every few seconds with the
/// attempt count and the last error; returns early (Ok) when `stop` is raised, so a
/// signal is not held up. A refusal (password, ACL) or a TLS failure returns at once:
/// waiting does not fix configuration.
pub fn wait_until_reachable(
    redis: &Redis,
    give_up: Duration,
    stop: &AtomicBool,
    waiting: &dyn Fn(Option<String>),
) -> Result<(), StoreError> {
    let stopping = || stop.load(Ordering::Relaxed);
    let mut retry = Retry::new(START_BACKOFF, Limit::For(give_up), &stopping);
    let started = Instant::now();
    let mut last_warning: Option<Instant> = None;
    loop {
        let attempt = redis
            .connect()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        let error = match attempt {
            Ok(_) => {
                if retry.failures() > 0 {
                    tracing::info!(redis = %redis.shown(), attempts = retry.failures() + 1, "Redis is reachable");
                    waiting(None);
                }
                return Ok(());
            }
            Err(e) => match redis.error("PING", e) {
                StoreError::Unavailable { detail, .. } => detail,
                other => return Err(other),
            },
        };
        let attempts = retry.failures() + 1;
        waiting(Some(format!(
            "Redis at {} does not answer ({error}); the job gives up in {} s",
            redis.shown(),
            give_up.saturating_sub(started.elapsed()).as_secs()
        )));
        let announce = |_| {
            if last_warning.is_none_or(|t| t.elapsed() >= WAIT_WARN_EVERY) {
                let left = give_up.saturating_sub(started.elapsed()).as_secs();
                tracing::warn!(redis = %redis.shown(), attempts, error = %error, "waiting for Redis; giving up in {left} s");
                last_warning = Some(Instant::now());
            }
        };
        match retry.again(announce) {
            Ok(()) => {}
            Err(Halt::Stopped) => return Ok(()),
            Err(Halt::GaveUp { failures, waited }) => {
                return Err(StoreError::GaveUp {
                    url: redis.shown().to_owned(),
                    waited_s: waited.as_secs(),
                    attempts: failures,
                    last: error,
                });
            }
        }
    }
}

/// Pauses between start-up attempts to reach Redis.
const START_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));

fn now_ms() -> u64 {
    crate::clock::unix_ms() as u64
}

pub struct RedisStore {
    redis: std::sync::Arc<Redis>,
    keys: Keys,
    script: Script,
    due_script: Script,
    pool: Mutex<Vec<Conn>>,
    /// Commits that fewer replicas than `--redis-wait-replicas` acknowledged in time.
    unreplicated: AtomicU64,
    last_unreplicated_warning: Mutex<Option<Instant>>,
    inflight: super::CommitBarrier,
}

impl RedisStore {
    /// Opens the store of `job` (offsets under `group`) and settles its layout: the scope
    /// the job's data was stored with wins, a different `wanted` scope is refused, data of
    /// an older release is migrated first. With `wanted` = None (the offsets tool) the
    /// stored scope is used, and nothing is recorded for a job that never ran.
    pub fn open(
        redis: std::sync::Arc<Redis>,
        group: &str,
        job: &str,
        wanted: Option<StateScope>,
    ) -> Result<Self, StoreError> {
        let mut store = Self {
            redis,
            keys: Keys::new(job, group, StateScope::Job),
            script: Script::new(commit::COMMIT_SCRIPT),
            due_script: Script::new(DUE_SCRIPT),
            pool: Mutex::new(Vec::new()),
            unreplicated: AtomicU64::new(0),
            last_unreplicated_warning: Mutex::new(None),
            inflight: Default::default(),
        };
        let meta = store.keys.meta();
        let stored: Option<String> = store.with_conn(&meta, |c| {
            redis::cmd("HGET").arg(&meta).arg("scope").query(c)
        })?;
        let stored = match stored {
            Some(s) => Some(s.parse::<StateScope>().map_err(|e| StoreError::Command {
                key: meta.clone(),
                detail: format!("field scope: {e}"),
            })?),
            None if !store.redis.is_cluster() => {
                migrate::from_layout_1(&store, group, job, wanted)?
            }
            None => None,
        };
        let scope = match (stored, wanted) {
            (Some(s), Some(w)) if s != w => {
                return Err(StoreError::ScopeMismatch {
                    job: job.to_owned(),
                    stored: s,
                    wanted: w,
                });
            }
            (Some(s), _) => s,
            (None, Some(w)) => {
                // Two hosts starting at once with different scopes: the first one wins.
                let won: bool = store.with_conn(&meta, |c| {
                    redis::cmd("HSETNX")
                        .arg(&meta)
                        .arg("scope")
                        .arg(w.as_str())
                        .query(c)
                })?;
                if !won {
                    return Self::open(store.redis, group, job, wanted);
                }
                store.with_conn(&meta, |c| {
                    redis::cmd("HSET")
                        .arg(&meta)
                        .arg("layout")
                        .arg(2)
                        .query::<()>(c)
                })?;
                w
            }
            (None, None) => StateScope::Job,
        };
        store.keys.scope = scope;
        Ok(store)
    }

    /// The store of a job on the single server at `url`, state scope job (tests, tools).
    pub fn connect(url: &str, group: &str, job: &str) -> Result<Self, StoreError> {
        let redis = Redis::new(&RedisConfig::single(url))?;
        Self::open(
            std::sync::Arc::new(redis),
            group,
            job,
            Some(StateScope::Job),
        )
    }

    /// The deployment as it may be shown.
    pub fn url(&self) -> &str {
        self.redis.shown()
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn scope(&self) -> StateScope {
        self.keys.scope
    }

    /// Commits that fewer replicas than asked acknowledged within the wait timeout.
    pub fn unreplicated_commits(&self) -> u64 {
        self.unreplicated.load(Ordering::Relaxed)
    }

    /// Runs `f` on a pooled connection; a connection that saw an error is dropped.
    fn with_conn<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.locked().pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.redis.connect().map_err(|e| self.redis.error(key, e))?,
        };
        match f(&mut conn) {
            Ok(v) => {
                self.pool.locked().push(conn);
                Ok(v)
            }
            Err(e) => Err(self.redis.error(key, e)),
        }
    }

    /// Records the topics this job reads, so the offsets tool can list them.
    pub fn register_topics(&self, topics: &[String]) -> Result<(), StoreError> {
        if topics.is_empty() {
            return Ok(());
        }
        let key = self.keys.topics();
        self.with_conn(&key, |c| {
            redis::cmd("SADD").arg(&key).arg(topics).query::<i64>(c)
        })?;
        Ok(())
    }

    /// Stored offsets of `topic` for this group: every partition's under the job scope;
    /// `partitions`' under the partition scope (each lives in a hash of its own).
    pub fn offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, StoreError> {
        let parse = |raw: Vec<(String, String)>| -> BTreeMap<i32, i64> {
            raw.into_iter()
                .filter_map(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                .collect()
        };
        match self.keys.scope {
            StateScope::Job => {
                let key = self.keys.offsets(topic, 0);
                let raw = self.with_conn(&key, |c| redis::cmd("HGETALL").arg(&key).query(c))?;
                Ok(parse(raw))
            }
            StateScope::Partition => {
                let mut out = BTreeMap::new();
                for &p in partitions {
                    if let Some(o) = self.committed_offset(topic, p)? {
                        out.insert(p, o);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Overwrites stored offsets (the operator's `host offsets set`).
    pub fn set_offsets(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<(), StoreError> {
        for (p, o) in offsets {
            let key = self.keys.offsets(topic, *p);
            self.with_conn(&key, |c| {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg(p.to_string())
                    .arg(o.to_string())
                    .query::<i64>(c)
            })?;
        }
        self.register_topics(&[topic.to_owned()])
    }

    /// Forgets partitions' clocks (their watermarks start again from the records they
    /// read next): after their offsets moved back, the replayed records would all be late.
    pub fn forget_clocks(&self, topic: &str, partitions: &[i32]) -> Result<(), StoreError> {
        for p in partitions {
            let key = self.keys.clock(topic, *p);
            self.with_conn(&key, |c| {
                redis::cmd("HDEL").arg(&key).arg(p).query::<i64>(c)
            })?;
        }
        Ok(())
    }

    /// Topics this group has offsets for.
    pub fn topics(&self) -> Result<Vec<String>, StoreError> {
        let key = self.keys.topics();
        let mut topics: Vec<String> =
            self.with_conn(&key, |c| redis::cmd("SMEMBERS").arg(&key).query(c))?;
        topics.sort();
        Ok(topics)
    }

    /// Announces a live member of the group for `ttl`.
    pub fn heartbeat(&self, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = self.keys.members();
        let expires = now_ms() + ttl.as_millis() as u64;
        self.with_conn(&key, |c| {
            redis::cmd("ZADD")
                .arg(&key)
                .arg(expires)
                .arg(member)
                .query::<i64>(c)?;
            redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(4 * ttl.as_millis() as u64)
                .query::<i64>(c)
        })?;
        Ok(())
    }

    pub fn leave(&self, member: &str) -> Result<(), StoreError> {
        let key = self.keys.members();
        self.with_conn(&key, |c| {
            redis::cmd("ZREM").arg(&key).arg(member).query::<i64>(c)
        })?;
        Ok(())
    }

    /// Members whose heartbeat has not expired.
    pub fn live_members(&self) -> Result<Vec<String>, StoreError> {
        let key = self.keys.members();
        self.with_conn(&key, |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(now_ms())
                .arg("+inf")
                .query(c)
        })
    }

    /// `--redis-wait-replicas`: the commit is applied on the master either way; a commit
    /// the replicas did not confirm may be lost in a failover, and is then replayed.
    fn report_unreplicated(
        &self,
        acked: redis::RedisResult<u32>,
        topic: &str,
        partition: i32,
        until: i64,
    ) {
        let (wanted, timeout) = (self.redis.wait_replicas, self.redis.wait_timeout);
        let problem = match acked {
            Ok(n) if n >= wanted => return,
            Ok(n) => format!("{n} of {wanted} replicas acknowledged it within {timeout:?}"),
            Err(e) => format!("WAIT failed: {e}"),
        };
        let count = self.unreplicated.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_unreplicated_warning.locked();
        if last.is_none_or(|t| t.elapsed() >= WAIT_WARN_EVERY) {
            tracing::warn!(
                redis = %self.redis.shown(), topic, partition, until, unreplicated_commits = count,
                "commit applied but not confirmed by replicas ({problem}); a failover now may lose it, and the batch would be replayed"
            );
            *last = Some(Instant::now());
        }
    }
}

impl StateStore for RedisStore {
    fn get_many(
        &self,
        partition: Option<i32>,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(p) = partition {
            self.inflight.wait_for(p);
        }
        let state = self.keys.state(partition)?;
        self.with_conn(&state, |c| {
            redis::cmd("HMGET")
                .arg(&state)
                .arg(keys)
                .query::<Vec<Option<Vec<u8>>>>(c)
        })
    }

    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let key = self.keys.offsets(topic, partition);
        let v: Option<String> = self.with_conn(&key, |c| {
            redis::cmd("HGET").arg(&key).arg(partition).query(c)
        })?;
        Ok(v.and_then(|s| s.parse().ok()))
    }

    fn scope(&self) -> StateScope {
        self.keys.scope
    }

    fn commit_all(&self, commits: &[Commit<'_>]) -> Vec<Result<Committed, StoreError>> {
        self.commit_batches(commits)
    }

    fn barrier(&self) -> &super::CommitBarrier {
        &self.inflight
    }

    fn clock(&self, topic: &str, partition: i32) -> Result<Option<Clock>, StoreError> {
        let key = self.keys.clock(topic, partition);
        let v: Option<String> = self.with_conn(&key, |c| {
            redis::cmd("HGET").arg(&key).arg(partition).query(c)
        })?;
        match v {
            None => Ok(None),
            Some(text) => Clock::decode(&text)
                .map(Some)
                .ok_or_else(|| StoreError::Command {
                    key: key.clone(),
                    detail: format!(
                        "field {partition} holds {text:?}, not `max-event-time,watermark`; \
                         delete the field to start the partition's clock afresh"
                    ),
                }),
        }
    }

    /// One call per domain whatever the number pending (`due.lua`): a range read of what
    /// is due and of the earliest entry after it. (One key a call: a script over two keys,
    /// one of them absent, would wait out a Cluster slot migration.)
    fn due(
        &self,
        topic: &str,
        partition: i32,
        upto: [Option<i64>; 2],
        limit: usize,
    ) -> Result<Due, StoreError> {
        self.inflight.wait_for(partition);
        let score = |b: &[u8]| -> Option<i64> {
            std::str::from_utf8(b)
                .ok()?
                .parse::<f64>()
                .ok()
                .map(|f| f as i64)
        };
        let mut due = Due::default();
        for (d, domain) in TimeDomain::ALL.into_iter().enumerate() {
            let key = self.keys.timers(topic, partition, domain);
            let mut inv = self.due_script.key(&key);
            inv.arg(upto[d].map(|u| u.to_string()).unwrap_or_default())
                .arg(limit.max(1));
            let (found, after): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
                self.with_conn(&key, |c| inv.invoke(c))?;
            for pair in found.chunks_exact(2) {
                if let (Some(key), Some(at)) =
                    (TimeKey::from_member(domain, &pair[0]), score(&pair[1]))
                {
                    due.entries.push((key, at));
                }
            }
            due.next[d] = after.get(1).and_then(|s| score(s));
        }
        due.entries.sort_by_key(|(_, at)| *at);
        Ok(due)
    }
}
