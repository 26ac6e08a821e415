//! The production store: offsets and state in Redis, committed by one Lua script.
//!
//! Key layout (see DESIGN.md):
//! * `streamhost:<group>:offsets:<topic>`: HASH, field = partition, value = next offset.
//! * `streamhost:<job>:state`: HASH of the job's state; integers as decimal strings.
//! * `streamhost:<group>:member:<id>`: a running host's heartbeat (expires on its own),
//!   so that `host offsets set` can refuse to move offsets under a live job.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, Connection, Script, Value};

use super::{Commit, CommitOutcome, PendingWrite, StateStore, StoreError};

/// The commit, atomically: fence on the stored offset, validate increments, apply the
/// state writes, move the offset. Returns {1} on success, {0, stored?} when fenced, and
/// {2, key, value} when an increment targets a value that is not an integer (in which
/// case nothing was written: a Redis script error would not roll back earlier writes,
/// so every check happens before the first write).
const COMMIT_SCRIPT: &str = include_str!("commit.lua");

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `url` as it may be shown: the password, if any, replaced by `***`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Opens a client for `url`; a URL that does not parse is an error of its own, not an
/// outage to wait out.
pub fn client(url: &str) -> Result<Client, StoreError> {
    Client::open(url).map_err(|e| StoreError::BadUrl {
        url: shown_url(url),
        detail: e.to_string(),
    })
}

/// How often the start-up wait repeats its warning.
const WAIT_WARN_EVERY: Duration = Duration::from_secs(5);

/// Waits until Redis at `url` answers PING, as long as a commit would wait for it
/// (`give_up`): a host started while Redis restarts rides it out. Warns every few
/// seconds with the attempt count and the last error; returns early (Ok) when `stop`
/// is raised, so a signal is not held up.
pub fn wait_until_reachable(
    url: &str,
    give_up: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(), StoreError> {
    let client = client(url)?;
    let started = std::time::Instant::now();
    let mut last_warning: Option<std::time::Instant> = None;
    let mut attempts: u32 = 0;
    loop {
        let attempt = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        let error = match attempt {
            Ok(_) => {
                if attempts > 0 {
                    tracing::info!(redis = %shown_url(url), attempts, "Redis is reachable");
                }
                return Ok(());
            }
            Err(e) if !is_connection_error(&e) => {
                // Reachable but refusing (e.g. NOAUTH, WRONGPASS): waiting will not help.
                return Err(StoreError::Command {
                    key: "PING".into(),
                    detail: format!("Redis at {}: {e}", shown_url(url)),
                });
            }
            Err(e) => e,
        };
        attempts += 1;
        if started.elapsed() >= give_up {
            return Err(StoreError::GaveUp {
                url: shown_url(url),
                waited_s: started.elapsed().as_secs(),
                attempts,
                last: error.to_string(),
            });
        }
        if last_warning.is_none_or(|t| t.elapsed() >= WAIT_WARN_EVERY) {
            let left = give_up.saturating_sub(started.elapsed()).as_secs();
            tracing::warn!(redis = %shown_url(url), attempts, error = %error, "waiting for Redis; giving up in {left} s");
            last_warning = Some(std::time::Instant::now());
        }
        let pause = Duration::from_millis(200 * u64::from(attempts.min(10)));
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn offsets_key(group: &str, topic: &str) -> String {
    format!("streamhost:{group}:offsets:{topic}")
}

pub fn state_key(job: &str) -> String {
    format!("streamhost:{job}:state")
}

pub fn member_key(group: &str, member: &str) -> String {
    format!("streamhost:{group}:member:{member}")
}

pub struct RedisStore {
    url: String,
    client: Client,
    group: String,
    state_key: String,
    script: Script,
    pool: Mutex<Vec<Connection>>,
}

impl RedisStore {
    /// Connects (and pings) Redis at `url`.
    pub fn connect(url: &str, group: &str, job: &str) -> Result<Self, StoreError> {
        let client = client(url)?;
        let store = Self {
            url: shown_url(url),
            client,
            group: group.to_owned(),
            state_key: state_key(job),
            script: Script::new(COMMIT_SCRIPT),
            pool: Mutex::new(Vec::new()),
        };
        store.with_conn("PING", |c| redis::cmd("PING").query::<String>(c))?;
        Ok(store)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `f` on a pooled connection; a connection that saw an error is dropped.
    fn with_conn<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        match f(&mut conn) {
            Ok(v) => {
                self.pool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
                Ok(v)
            }
            Err(e) if is_connection_error(&e) => Err(StoreError::Unavailable {
                url: self.url.clone(),
                detail: e.to_string(),
            }),
            Err(e) => Err(StoreError::Command {
                key: key.to_owned(),
                detail: e.to_string(),
            }),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let unavailable = |e: redis::RedisError| StoreError::Unavailable {
            url: self.url.clone(),
            detail: e.to_string(),
        };
        let conn = self
            .client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .map_err(unavailable)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(unavailable)?;
        conn.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(unavailable)?;
        Ok(conn)
    }

    /// Every stored offset of `topic` for this group.
    pub fn offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, StoreError> {
        let key = offsets_key(&self.group, topic);
        let raw: Vec<(String, String)> =
            self.with_conn(&key, |c| redis::cmd("HGETALL").arg(&key).query(c))?;
        Ok(raw
            .into_iter()
            .filter_map(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
            .collect())
    }

    /// Overwrites stored offsets (the operator's `host offsets set`).
    pub fn set_offsets(&self, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<(), StoreError> {
        let key = offsets_key(&self.group, topic);
        if offsets.is_empty() {
            return Ok(());
        }
        self.with_conn(&key, |c| {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (p, o) in offsets {
                cmd.arg(p.to_string()).arg(o.to_string());
            }
            cmd.query::<i64>(c)
        })?;
        Ok(())
    }

    /// Topics this group has offsets for.
    pub fn topics(&self) -> Result<Vec<String>, StoreError> {
        let prefix = offsets_key(&self.group, "");
        let keys = self.scan(&format!("{prefix}*"))?;
        let mut topics: Vec<String> = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        topics.sort();
        Ok(topics)
    }

    /// Announces a live member of the group for `ttl`.
    pub fn heartbeat(&self, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = member_key(&self.group, member);
        self.with_conn(&key, |c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(std::process::id())
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query::<()>(c)
        })
    }

    pub fn leave(&self, member: &str) -> Result<(), StoreError> {
        let key = member_key(&self.group, member);
        self.with_conn(&key, |c| redis::cmd("DEL").arg(&key).query::<i64>(c))?;
        Ok(())
    }

    /// Members whose heartbeat has not expired.
    pub fn live_members(&self) -> Result<Vec<String>, StoreError> {
        let prefix = member_key(&self.group, "");
        Ok(self
            .scan(&format!("{prefix}*"))?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect())
    }

    fn scan(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        self.with_conn(pattern, |c| {
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query(c)?;
                out.extend(keys);
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
    }
}

/// Errors that go away by waiting: the connection is gone, or the server is not ready
/// (LOADING after a restart, TRYAGAIN, MASTERDOWN, READONLY during a failover).
fn is_connection_error(e: &redis::RedisError) -> bool {
    use redis::RetryMethod;
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || !matches!(e.retry_method(), RetryMethod::NoRetry)
}

impl StateStore for RedisStore {
    fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.with_conn(&self.state_key, |c| {
            redis::cmd("HMGET")
                .arg(&self.state_key)
                .arg(keys)
                .query::<Vec<Option<Vec<u8>>>>(c)
        })
    }

    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let key = offsets_key(&self.group, topic);
        let v: Option<String> = self.with_conn(&key, |c| {
            redis::cmd("HGET").arg(&key).arg(partition).query(c)
        })?;
        Ok(v.and_then(|s| s.parse().ok()))
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, StoreError> {
        let offsets = offsets_key(&self.group, commit.topic);
        let (mut sets, mut dels, mut incrs) = (Vec::new(), Vec::new(), Vec::new());
        for (key, write) in commit.writes.iter() {
            match write {
                PendingWrite::Set(v) => sets.push((key, v)),
                PendingWrite::Delete => dels.push(key),
                PendingWrite::Add(d) => incrs.push((key, d)),
            }
        }
        let mut inv = self.script.key(&offsets);
        inv.key(&self.state_key)
            .arg(commit.partition)
            .arg(commit.expected.map(|o| o.to_string()).unwrap_or_default())
            .arg(commit.until_offset)
            .arg(sets.len())
            .arg(dels.len())
            .arg(incrs.len());
        for (k, v) in &sets {
            inv.arg(k.as_bytes()).arg(v.as_slice());
        }
        for k in &dels {
            inv.arg(k.as_bytes());
        }
        for (k, d) in &incrs {
            inv.arg(k.as_bytes()).arg(**d);
        }
        let reply: Vec<Value> = self.with_conn(&offsets, |c| inv.invoke(c))?;
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::Int(i)) => i.to_string(),
            _ => String::new(),
        };
        match reply.first() {
            Some(Value::Int(1)) => Ok(CommitOutcome::Committed),
            Some(Value::Int(0)) => Ok(CommitOutcome::Fenced {
                stored: text(reply.get(1)).parse().ok(),
            }),
            Some(Value::Int(2)) => {
                let key = text(reply.get(1));
                let delta = incrs
                    .iter()
                    .find(|(k, _)| **k == key)
                    .map_or(0, |(_, d)| **d);
                Err(StoreError::NotAnInteger {
                    key,
                    value: text(reply.get(2)),
                    delta,
                })
            }
            Some(Value::Int(3)) => {
                let key = text(reply.get(1));
                let delta = incrs
                    .iter()
                    .find(|(k, _)| **k == key)
                    .map_or(0, |(_, d)| **d);
                Err(StoreError::Overflow { key, delta })
            }
            other => Err(StoreError::Command {
                key: offsets,
                detail: format!("unexpected reply from the commit script: {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            shown_url("redis://app:s3cret@redis.example:6379/2"),
            "redis://app:***@redis.example:6379/2"
        );
        assert_eq!(shown_url("rediss://:s3cret@h:6380"), "rediss://:***@h:6380");
        assert_eq!(
            shown_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(shown_url("localhost:6379"), "localhost:6379");
    }
}
