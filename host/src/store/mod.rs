//! Where a job's offsets and state live, and the commit step that makes a batch durable.
//!
//! One trait, one module per backend: `memory` (for `host test` and unit tests) and `redis`
//! (production). Both implement the same fenced commit: the stored offset of the
//! partition must equal the batch's `from` offset, otherwise another worker owns the
//! partition (or the store lost its newest commits) and nothing is applied.

pub mod committer;
pub mod memory;
pub mod redis;
pub mod time;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Condvar, Mutex};

use crate::sync::Locked;

/// Where a job's state lives: one namespace for the whole job, or one per input partition.
///
/// `Job` lets every partition read every key (a global count); its state and offsets share
/// one Redis hash slot, so one shard holds them. `Partition` gives each partition number
/// its own state (and keeps its offsets beside it): a key is visible only to the
/// partition that wrote it, which is right for keyed, co-partitioned input (Kafka
/// Streams' model), and spreads a job over a Redis Cluster's shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateScope {
    #[default]
    Job,
    Partition,
}

impl StateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StateScope::Job => "job",
            StateScope::Partition => "partition",
        }
    }
}

impl std::fmt::Display for StateScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StateScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "job" => Ok(StateScope::Job),
            "partition" => Ok(StateScope::Partition),
            _ => Err(format!("expected job or partition, got {s:?}")),
        }
    }
}

/// The buffered write of one state key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingWrite {
    Set(Vec<u8>),
    Delete,
    /// Add to whatever the store holds at commit time (absent = 0).
    Add(i64),
}

/// A batch's state writes, one per key: what a commit applies besides the offset.
#[derive(Debug, Default)]
pub struct StateWrites {
    writes: HashMap<String, PendingWrite>,
}

impl StateWrites {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &PendingWrite)> {
        self.writes.iter()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&PendingWrite> {
        self.writes.get(key)
    }

    pub fn insert(&mut self, key: String, write: PendingWrite) {
        self.writes.insert(key, write);
    }

    pub fn entry(&mut self, key: String) -> Entry<'_, String, PendingWrite> {
        self.writes.entry(key)
    }
}

/// A batch ready to become durable: its offset range and its state writes.
#[derive(Debug)]
pub struct Commit<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The stored offset this commit expects (`None`: no offset stored yet). Normally the
    /// batch's first offset; differs only when the broker reset an out-of-range position.
    pub expected: Option<i64>,
    /// The batch's first offset (for messages).
    pub from_offset: i64,
    /// The exclusive end: the partition's stored offset after the commit.
    pub until_offset: i64,
    pub writes: &'a StateWrites,
    /// The partition's clock, timers and expiries after the batch.
    pub time: &'a time::TimeWrites,
    /// Its emits, encoded for the outbox (`--delivery exactly-once`; `None`: none).
    pub outbox: Option<&'a [u8]>,
}

/// What a commit of [`StateStore::commit_all`] did, and the sequence number its outbox
/// entry got (0: none).
pub type Committed = (CommitOutcome, u64);

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Offsets and state writes were applied atomically.
    Committed,
    /// The stored offset was not the batch's `from`: another worker moved the partition,
    /// an operator moved it, or (behind an asynchronous replica) a failover lost the
    /// newest commits, state and offsets together. Nothing was applied; the worker must
    /// re-seek to `stored` and go on from there.
    Fenced { stored: Option<i64> },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state key {key:?}: cannot add {delta} because its stored value {value:?} is not a \
         decimal integer; fix the plugin (use `set` for non-counters) or delete the key"
    )]
    NotAnInteger {
        key: String,
        value: String,
        delta: i64,
    },
    #[error("state key {key:?}: adding {delta} overflows a 64-bit integer")]
    Overflow { key: String, delta: i64 },
    #[error(
        "Redis at {url} is unavailable ({detail}); check that it is running and reachable, \
         or pass --redis"
    )]
    Unavailable { url: String, detail: String },
    #[error(
        "Redis URL {url:?} is malformed ({detail}); expected \
         redis://[USER:PASSWORD@]HOST:PORT[/DB], e.g. redis://127.0.0.1:6379"
    )]
    BadUrl { url: String, detail: String },
    #[error(
        "Redis at {url} could not be reached for {waited_s} s ({attempts} attempts; last error: \
         {last}); check that it is running and reachable from this host and that --redis \
         (STREAMHOST_REDIS) names it, or wait longer with --redis-give-up-ms"
    )]
    GaveUp {
        url: String,
        waited_s: u64,
        attempts: u32,
        last: String,
    },
    #[error(
        "Redis at {url} refused the host ({detail}); check the user and password (in the URL, \
         or --redis-password-file) and that its ACL allows the commands and keys in \
         docs/operating.md"
    )]
    Refused { url: String, detail: String },
    #[error(
        "Redis at {url}: the TLS handshake failed ({detail}); check that --redis-ca-file \
         names the CA that signed the server's certificate, that the certificate is valid \
         for the host name in the URL, and, if the server asks for client certificates, \
         --redis-cert-file and --redis-key-file"
    )]
    Tls { url: String, detail: String },
    #[error("Redis setting {what}: {detail}")]
    Config { what: String, detail: String },
    #[error(
        "job {job}: its state is stored per {stored} (--state-scope {stored}) in Redis, but \
         this host was started with --state-scope {wanted}; start it with --state-scope \
         {stored}, or give the new layout its own job name (--job)"
    )]
    ScopeMismatch {
        job: String,
        stored: StateScope,
        wanted: StateScope,
    },
    #[error(
        "state is kept per partition (--state-scope partition), so it cannot be read outside \
         a partition's batch (e.g. in init)"
    )]
    NoPartition,
    #[error("Redis command failed on key {key}: {detail}")]
    Command { key: String, detail: String },
}

/// A job's offsets and state. Reads are synchronous because plugins read state from inside
/// a (synchronous) WebAssembly call; pipelines run plugins on blocking threads.
pub trait StateStore: Send + Sync {
    /// Current values of `keys` as `partition` sees them (its own namespace under
    /// `StateScope::Partition`), in order; `None` where absent.
    fn get_many(
        &self,
        partition: Option<i32>,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// The next offset to read for a partition, if one was ever committed.
    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError>;

    /// Where the job's state lives (decides whether commits can share a step).
    fn scope(&self) -> StateScope;

    /// The fenced, atomic commit described at the top of this module, of each batch of
    /// `commits`, each fenced on its own stored offset; an answer per batch, in order. A
    /// store may apply several in one step (Redis merges the writes of batches that share
    /// a state hash); a fenced or failing batch must not keep the others from applying.
    fn commit_all(&self, commits: &[Commit<'_>]) -> Vec<Result<Committed, StoreError>>;

    /// One batch's commit.
    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, StoreError> {
        self.commit_all(std::slice::from_ref(commit))
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Command {
                    key: format!("{}/{}", commit.topic, commit.partition),
                    detail: "the store answered no commit".into(),
                })
            })
            .map(|(outcome, _)| outcome)
    }

    /// The partitions with a commit on its way: reads of a partition's state and timers
    /// wait for them (see [`CommitBarrier`]).
    fn barrier(&self) -> &CommitBarrier;

    /// A partition's committed clock, if it ever committed one.
    fn clock(&self, topic: &str, partition: i32) -> Result<Option<time::Clock>, StoreError>;

    /// A partition's timers and expiries due by `upto` (per domain, `[event, processing]`;
    /// `None`: nothing is due in that domain), at most `limit` per domain, as committed,
    /// after its commits in flight.
    fn due(
        &self,
        topic: &str,
        partition: i32,
        upto: [Option<i64>; 2],
        limit: usize,
    ) -> Result<time::Due, StoreError>;
}

/// Partitions with a commit on its way to the store: a batch reading state waits for its
/// partition's previous commit, so it reads what that batch wrote (the worker processes
/// batch N+1 while N commits).
#[derive(Default)]
pub struct CommitBarrier {
    partitions: Mutex<HashMap<i32, u32>>,
    settled: Condvar,
}

impl CommitBarrier {
    /// A commit of `partition` is on its way.
    pub fn started(&self, partition: i32) {
        let mut p = self.partitions.locked();
        *p.entry(partition).or_default() += 1;
    }

    /// ...and has been answered (or failed).
    pub fn settled(&self, partition: i32) {
        let mut p = self.partitions.locked();
        if let Some(n) = p.get_mut(&partition) {
            *n -= 1;
            if *n == 0 {
                p.remove(&partition);
            }
        }
        self.settled.notify_all();
    }

    /// Waits until no commit of `partition` is on its way.
    pub fn wait_for(&self, partition: i32) {
        let mut p = self.partitions.locked();
        while p.contains_key(&partition) {
            p = self.settled.wait(p).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Parses a stored counter: integers are kept as decimal strings so `redis-cli` shows them.
pub fn parse_counter(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}
