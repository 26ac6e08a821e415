//! An in-memory store: the state of `host test`, and a reference for the Redis store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::time::{Clock, Due, TimeDomain, TimeKey};
use super::{
    Commit, CommitBarrier, CommitOutcome, Committed, PendingWrite, StateScope, StateStore,
    StoreError, parse_counter,
};
use crate::sync::Locked;

#[derive(Default)]
pub struct MemoryStore {
    scope: StateScope,
    inner: Mutex<Inner>,
    barrier: CommitBarrier,
}

#[derive(Default)]
struct Inner {
    /// By namespace: `None` for the job's state, `Some(p)` for partition p's.
    state: HashMap<Option<i32>, HashMap<String, Vec<u8>>>,
    offsets: HashMap<(String, i32), i64>,
    clocks: HashMap<(String, i32), Clock>,
    /// Per topic and partition: pending timers and expiries by when they are due.
    timers: HashMap<(String, i32), Timers>,
    /// Per topic and partition: committed outbox entries and their sequence numbers.
    outbox: HashMap<(String, i32), Vec<OutboxEntry>>,
}

/// An outbox entry as committed: its sequence number and its encoded emits.
type OutboxEntry = (u64, Vec<u8>);

#[derive(Default)]
struct Timers {
    at: HashMap<TimeKey, i64>,
    by_time: std::collections::BTreeSet<(i64, TimeKey)>,
}

impl Timers {
    fn put(&mut self, key: &TimeKey, at: Option<i64>) {
        if let Some(old) = self.at.remove(key) {
            self.by_time.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.at.insert(key.clone(), at);
            self.by_time.insert((at, key.clone()));
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_scope(scope: StateScope) -> Self {
        Self {
            scope,
            ..Self::default()
        }
    }

    fn namespace(&self, partition: Option<i32>) -> Result<Option<i32>, StoreError> {
        match self.scope {
            StateScope::Job => Ok(None),
            StateScope::Partition => partition.map(Some).ok_or(StoreError::NoPartition),
        }
    }

    /// One batch's fenced, all-or-nothing commit.
    fn commit_one(&self, commit: &Commit<'_>) -> Result<Committed, StoreError> {
        let namespace = self.namespace(Some(commit.partition))?;
        let mut guard = self.inner.locked();
        let inner = &mut *guard;
        let slot = (commit.topic.to_owned(), commit.partition);
        let stored = inner.offsets.get(&slot).copied();
        if stored != commit.expected {
            return Ok((CommitOutcome::Fenced { stored }, 0));
        }
        let state = inner.state.entry(namespace).or_default();
        // Validate every increment before writing anything: the commit is all or nothing.
        let mut new_counters = Vec::new();
        for (key, write) in commit.writes.iter() {
            if let PendingWrite::Add(delta) = write {
                let base = match state.get(key) {
                    None => 0,
                    Some(v) => parse_counter(v).ok_or_else(|| StoreError::NotAnInteger {
                        key: key.clone(),
                        value: String::from_utf8_lossy(v).into_owned(),
                        delta: *delta,
                    })?,
                };
                let sum = base
                    .checked_add(*delta)
                    .ok_or_else(|| StoreError::Overflow {
                        key: key.clone(),
                        delta: *delta,
                    })?;
                new_counters.push((key.clone(), sum));
            }
        }
        for (key, write) in commit.writes.iter() {
            match write {
                PendingWrite::Set(v) => {
                    state.insert(key.clone(), v.clone());
                }
                PendingWrite::Delete => {
                    state.remove(key);
                }
                PendingWrite::Add(_) => {}
            }
        }
        for (key, sum) in new_counters {
            state.insert(key, sum.to_string().into_bytes());
        }
        if let Some(clock) = commit.time.clock {
            inner.clocks.insert(slot.clone(), clock);
        }
        if !commit.time.entries.is_empty() {
            let timers = inner.timers.entry(slot.clone()).or_default();
            for (key, at) in &commit.time.entries {
                timers.put(key, *at);
            }
        }
        let mut seq = 0;
        if let Some(entry) = commit.outbox {
            let entries = inner.outbox.entry(slot.clone()).or_default();
            seq = entries.last().map_or(1, |(s, _)| s + 1);
            entries.push((seq, entry.to_vec()));
        }
        inner.offsets.insert(slot, commit.until_offset);
        Ok((CommitOutcome::Committed, seq))
    }

    /// Pending timers and expiries of a partition, earliest first.
    pub fn pending(&self, topic: &str, partition: i32) -> Vec<(TimeKey, i64)> {
        let inner = self.inner.locked();
        inner
            .timers
            .get(&(topic.to_owned(), partition))
            .map(|t| t.by_time.iter().map(|(at, k)| (k.clone(), *at)).collect())
            .unwrap_or_default()
    }

    /// A partition's committed outbox entries, oldest first, with their sequence numbers.
    pub fn outbox(&self, topic: &str, partition: i32) -> Vec<OutboxEntry> {
        let inner = self.inner.locked();
        inner
            .outbox
            .get(&(topic.to_owned(), partition))
            .cloned()
            .unwrap_or_default()
    }

    /// All state, sorted by key (under `StateScope::Partition`, every partition's).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let inner = self.inner.locked();
        inner
            .state
            .values()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateStore for MemoryStore {
    fn get_many(
        &self,
        partition: Option<i32>,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let namespace = self.namespace(partition)?;
        if let Some(p) = partition {
            self.barrier.wait_for(p);
        }
        let inner = self.inner.locked();
        let state = inner.state.get(&namespace);
        Ok(keys
            .iter()
            .map(|k| state.and_then(|s| s.get(*k)).cloned())
            .collect())
    }

    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let inner = self.inner.locked();
        Ok(inner.offsets.get(&(topic.to_owned(), partition)).copied())
    }

    fn scope(&self) -> StateScope {
        self.scope
    }

    fn commit_all(&self, commits: &[Commit<'_>]) -> Vec<Result<Committed, StoreError>> {
        commits.iter().map(|c| self.commit_one(c)).collect()
    }

    fn barrier(&self) -> &CommitBarrier {
        &self.barrier
    }

    fn clock(&self, topic: &str, partition: i32) -> Result<Option<Clock>, StoreError> {
        let inner = self.inner.locked();
        Ok(inner.clocks.get(&(topic.to_owned(), partition)).copied())
    }

    fn due(
        &self,
        topic: &str,
        partition: i32,
        upto: [Option<i64>; 2],
        limit: usize,
    ) -> Result<Due, StoreError> {
        self.barrier.wait_for(partition);
        let inner = self.inner.locked();
        let mut due = Due::default();
        let Some(timers) = inner.timers.get(&(topic.to_owned(), partition)) else {
            return Ok(due);
        };
        for domain in TimeDomain::ALL {
            let mut pending = timers
                .by_time
                .iter()
                .filter(|(_, k)| k.domain == domain)
                .peekable();
            let mut taken = 0;
            while let Some((at, key)) = pending.peek() {
                if taken >= limit || upto[domain.index()].is_none_or(|u| *at > u) {
                    break;
                }
                due.entries.push((key.clone(), *at));
                taken += 1;
                pending.next();
            }
            due.next[domain.index()] = pending.peek().map(|(at, _)| *at);
        }
        due.entries.sort_by_key(|(_, at)| *at);
        Ok(due)
    }
}
