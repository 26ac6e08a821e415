//! An in-memory store: the state of `host test`, and a reference for the Redis store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{
    Commit, CommitOutcome, PendingWrite, StateScope, StateStore, StoreError, parse_counter,
};

#[derive(Default)]
pub struct MemoryStore {
    scope: StateScope,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// By namespace: `None` for the job's state, `Some(p)` for partition p's.
    state: HashMap<Option<i32>, HashMap<String, Vec<u8>>>,
    offsets: HashMap<(String, i32), i64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_scope(scope: StateScope) -> Self {
        Self {
            scope,
            inner: Mutex::default(),
        }
    }

    fn namespace(&self, partition: Option<i32>) -> Result<Option<i32>, StoreError> {
        match self.scope {
            StateScope::Job => Ok(None),
            StateScope::Partition => partition.map(Some).ok_or(StoreError::NoPartition),
        }
    }

    /// All state, sorted by key (under `StateScope::Partition`, every partition's).
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
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
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let state = inner.state.get(&namespace);
        Ok(keys
            .iter()
            .map(|k| state.and_then(|s| s.get(*k)).cloned())
            .collect())
    }

    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(inner.offsets.get(&(topic.to_owned(), partition)).copied())
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, StoreError> {
        let namespace = self.namespace(Some(commit.partition))?;
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let slot = (commit.topic.to_owned(), commit.partition);
        let stored = inner.offsets.get(&slot).copied();
        if stored != commit.expected {
            return Ok(CommitOutcome::Fenced { stored });
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
        inner.offsets.insert(slot, commit.until_offset);
        Ok(CommitOutcome::Committed)
    }
}
