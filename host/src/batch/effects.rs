//! The effects of one batch, buffered in the host until the batch succeeds.
//!
//! A plugin's emits and state writes land here, never directly in Kafka or the store, so
//! a failed or retried batch leaves no trace. State writes are collapsed per key and keep
//! increments symbolic (`Add`) so that counters from several partitions of one job add up
//! at commit time instead of overwriting each other.

use std::collections::hash_map::Entry;

use crate::contract::streamhost::plugin::types::{
    Expiry, Header, OutputRecord, StateOp, TimeDomain as WitDomain, Timer, TimerId,
};
use crate::store::time::{TimeDomain, TimeKey, TimeWrites};
use crate::store::{PendingWrite, StateStore, StateWrites, StoreError, parse_counter};

/// Why buffering an effect failed. Each fails the batch.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error(
        "the batch buffered more than {limit} bytes of emits and state writes; emit or write \
         less per batch, or lower --batch-max-records"
    )]
    TooLarge { limit: usize },
    #[error(
        "state key {key:?}: cannot add {delta}: the batch set it to {value:?}, which is not a \
         decimal integer"
    )]
    NotAnInteger {
        key: String,
        value: String,
        delta: i64,
    },
    #[error("state key {key:?}: adding {delta} overflows a 64-bit integer")]
    Overflow { key: String, delta: i64 },
    #[error(
        "the plugin set a timer but does not export `timer-handler`; build it against the \
         world `timer-plugin` and implement `on-timers`"
    )]
    NoTimerHandler,
    #[error("state.incr-packed: {0}")]
    Packed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<WitDomain> for TimeDomain {
    fn from(d: WitDomain) -> Self {
        match d {
            WitDomain::EventTime => TimeDomain::Event,
            WitDomain::ProcessingTime => TimeDomain::Processing,
        }
    }
}

impl From<TimeDomain> for WitDomain {
    fn from(d: TimeDomain) -> Self {
        match d {
            TimeDomain::Event => WitDomain::EventTime,
            TimeDomain::Processing => WitDomain::ProcessingTime,
        }
    }
}

/// Everything one batch produced, ready for the sink and the commit.
#[derive(Debug, Default)]
pub struct Effects {
    pub emits: Vec<OutputRecord>,
    pub state: StateWrites,
    /// Timers set, moved, cancelled or fired, expiries given or removed.
    pub time: TimeWrites,
    /// The batch's processing time (ms), which `after-ms` expiries count from.
    pub processing_time: i64,
    /// Whether a delete also removes the key's expiry (plugins of contract 0.2, the
    /// only ones that can give keys one).
    pub track_expiries: bool,
    /// Approximate bytes buffered; checked against the cap on every addition.
    bytes: usize,
    limit: usize,
}

impl Effects {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    fn account(&mut self, bytes: usize) -> Result<(), EffectError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limit {
            return Err(EffectError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    pub fn emit(&mut self, records: Vec<OutputRecord>) -> Result<(), EffectError> {
        let size: usize = records.iter().map(output_record_size).sum();
        self.account(size)?;
        self.emits.extend(records);
        Ok(())
    }

    pub fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), EffectError> {
        self.account(key.len() + value.len() + 32)?;
        self.state.insert(key, PendingWrite::Set(value));
        Ok(())
    }

    pub fn delete(&mut self, key: String) -> Result<(), EffectError> {
        self.account(key.len() + 32)?;
        if self.track_expiries {
            self.persist(&key)?;
        }
        self.state.insert(key, PendingWrite::Delete);
        Ok(())
    }

    /// Gives `key` an expiry, replacing the one it had (in either domain).
    pub fn expire(&mut self, key: &str, expiry: Expiry) -> Result<(), EffectError> {
        self.account(2 * key.len() + 64)?;
        let (domain, at) = match expiry {
            Expiry::AfterMs(ms) => (
                TimeDomain::Processing,
                self.processing_time
                    .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)),
            ),
            Expiry::AtWatermark(t) => (TimeDomain::Event, t),
        };
        for d in TimeDomain::ALL {
            let k = TimeKey::expiry(d, key);
            if d == domain {
                self.time.set(k, at);
            } else {
                self.time.remove(k);
            }
        }
        Ok(())
    }

    /// Removes `key`'s expiry.
    pub fn persist(&mut self, key: &str) -> Result<(), EffectError> {
        self.account(2 * key.len() + 64)?;
        for d in TimeDomain::ALL {
            self.time.remove(TimeKey::expiry(d, key));
        }
        Ok(())
    }

    pub fn set_timers(&mut self, timers: Vec<Timer>) -> Result<(), EffectError> {
        for t in timers {
            self.account(t.key.len() + 48)?;
            self.time.set(TimeKey::timer(t.domain.into(), t.key), t.at);
        }
        Ok(())
    }

    pub fn cancel_timers(&mut self, ids: Vec<TimerId>) -> Result<(), EffectError> {
        for t in ids {
            self.account(t.key.len() + 48)?;
            self.time.remove(TimeKey::timer(t.domain.into(), t.key));
        }
        Ok(())
    }

    pub fn add(&mut self, key: String, delta: i64) -> Result<(), EffectError> {
        match self.state.entry(key) {
            Entry::Vacant(slot) => {
                let size = slot.key().len() + 32;
                slot.insert(PendingWrite::Add(delta));
                self.account(size)
            }
            Entry::Occupied(mut slot) => {
                let next = match slot.get() {
                    PendingWrite::Add(sum) => PendingWrite::Add(checked(slot.key(), *sum, delta)?),
                    PendingWrite::Delete => PendingWrite::Set(delta.to_string().into_bytes()),
                    PendingWrite::Set(value) => {
                        let base =
                            parse_counter(value).ok_or_else(|| EffectError::NotAnInteger {
                                key: slot.key().clone(),
                                value: String::from_utf8_lossy(value).into_owned(),
                                delta,
                            })?;
                        PendingWrite::Set(
                            checked(slot.key(), base, delta)?.to_string().into_bytes(),
                        )
                    }
                };
                slot.insert(next);
                Ok(())
            }
        }
    }

    pub fn apply(&mut self, ops: Vec<StateOp>) -> Result<(), EffectError> {
        for op in ops {
            match op {
                StateOp::Set(kv) => self.set(kv.key, kv.value)?,
                StateOp::Delete(key) => self.delete(key)?,
                StateOp::Incr(kd) => self.add(kd.key, kd.delta)?,
                StateOp::SetExpiring(ev) => {
                    self.expire(&ev.key, ev.expiry)?;
                    self.set(ev.key, ev.value)?;
                }
                StateOp::Expire(ke) => self.expire(&ke.key, ke.expiry)?,
                StateOp::Persist(key) => self.persist(&key)?,
            }
        }
        Ok(())
    }

    /// `state.incr-packed`: the keys' bytes back to back, their lengths (u32) and the
    /// deltas (s64), little-endian. Checked whole before any increment is applied.
    pub fn incr_packed(
        &mut self,
        keys: &[u8],
        lens: &[u8],
        deltas: &[u8],
    ) -> Result<(), EffectError> {
        let bad = |why: String| EffectError::Packed(why);
        if !lens.len().is_multiple_of(4) || !deltas.len().is_multiple_of(8) {
            return Err(bad(format!(
                "key-lens ({} bytes) must be u32s and deltas ({} bytes) s64s",
                lens.len(),
                deltas.len()
            )));
        }
        let lens: Vec<usize> = lens
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if lens.len() != deltas.len() / 8 {
            return Err(bad(format!(
                "{} key lengths but {} deltas",
                lens.len(),
                deltas.len() / 8
            )));
        }
        let total: usize = lens.iter().sum();
        if total != keys.len() {
            return Err(bad(format!(
                "the key lengths add up to {total} bytes, but keys holds {}",
                keys.len()
            )));
        }
        let mut parsed = Vec::with_capacity(lens.len());
        let mut at = 0;
        for (i, (len, delta)) in lens.iter().zip(deltas.chunks_exact(8)).enumerate() {
            let key = std::str::from_utf8(&keys[at..at + len])
                .map_err(|_| bad(format!("key {i} is not UTF-8")))?;
            let mut d = [0; 8];
            d.copy_from_slice(delta);
            parsed.push((key.to_owned(), i64::from_le_bytes(d)));
            at += len;
        }
        for (key, delta) in parsed {
            self.add(key, delta)?;
        }
        Ok(())
    }

    /// Read-your-writes: the value a key has for this batch, given the store underneath.
    pub fn get_many(
        &self,
        store: &dyn StateStore,
        partition: Option<i32>,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, EffectError> {
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
        let mut from_store = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.state.get(key) {
                Some(PendingWrite::Set(v)) => out.push(Some(v.clone())),
                Some(PendingWrite::Delete) => out.push(None),
                Some(PendingWrite::Add(_)) | None => {
                    out.push(None);
                    from_store.push(i);
                }
            }
        }
        if from_store.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<&str> = from_store.iter().map(|&i| keys[i]).collect();
        let stored = store.get_many(partition, &wanted)?;
        for (i, value) in from_store.into_iter().zip(stored) {
            let key = keys[i];
            out[i] = match self.state.get(key) {
                Some(PendingWrite::Add(delta)) => {
                    let base = match &value {
                        None => 0,
                        Some(v) => parse_counter(v).ok_or_else(|| EffectError::NotAnInteger {
                            key: key.to_owned(),
                            value: String::from_utf8_lossy(v).into_owned(),
                            delta: *delta,
                        })?,
                    };
                    Some(checked(key, base, *delta)?.to_string().into_bytes())
                }
                _ => value,
            };
        }
        Ok(out)
    }
}

fn checked(key: &str, base: i64, delta: i64) -> Result<i64, EffectError> {
    base.checked_add(delta)
        .ok_or_else(|| EffectError::Overflow {
            key: key.to_owned(),
            delta,
        })
}

fn output_record_size(r: &OutputRecord) -> usize {
    let headers: usize = r.headers.iter().map(header_size).sum();
    64 + r.topic.as_ref().map_or(0, String::len)
        + r.key.as_ref().map_or(0, Vec::len)
        + r.value.as_ref().map_or(0, Vec::len)
        + headers
}

fn header_size(h: &Header) -> usize {
    16 + h.name.len() + h.value.as_ref().map_or(0, Vec::len)
}

/// Names of the headers the host adds to every emitted record, so downstream consumers
/// can tell where a record came from and drop the duplicates a retried batch produces:
/// (source topic, partition, from offset, emit index) is the same on every replay of a
/// deterministic plugin.
pub mod source_headers {
    pub const TOPIC: &str = "streamhost-source-topic";
    pub const PARTITION: &str = "streamhost-source-partition";
    pub const FROM_OFFSET: &str = "streamhost-source-from-offset";
    pub const UNTIL_OFFSET: &str = "streamhost-source-until-offset";
    pub const EMIT_INDEX: &str = "streamhost-emit-index";
}

/// The batch's emits with the source headers added (see [`source_headers`]).
pub fn stamped_emits(
    emits: Vec<OutputRecord>,
    topic: &str,
    partition: i32,
    from_offset: i64,
    until_offset: i64,
) -> Vec<OutputRecord> {
    emits
        .into_iter()
        .enumerate()
        .map(|(index, mut record)| {
            let header = |name: &str, value: String| Header {
                name: name.to_owned(),
                value: Some(value.into_bytes()),
            };
            record.headers.extend([
                header(source_headers::TOPIC, topic.to_owned()),
                header(source_headers::PARTITION, partition.to_string()),
                header(source_headers::FROM_OFFSET, from_offset.to_string()),
                header(source_headers::UNTIL_OFFSET, until_offset.to_string()),
                header(source_headers::EMIT_INDEX, index.to_string()),
            ]);
            record
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Commit, CommitOutcome};

    fn commit(store: &MemoryStore, effects: &Effects, from: i64, until: i64) -> CommitOutcome {
        store
            .commit(&Commit {
                topic: "t",
                partition: 0,
                expected: (from > 0).then_some(from),
                from_offset: from,
                until_offset: until,
                writes: &effects.state,
                time: &effects.time,
                outbox: None,
            })
            .expect("commit")
    }

    fn packed(keys: &[&str], deltas: &[i64]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let lens = keys
            .iter()
            .flat_map(|k| (k.len() as u32).to_le_bytes())
            .collect();
        let d = deltas.iter().flat_map(|d| d.to_le_bytes()).collect();
        (keys.concat().into_bytes(), lens, d)
    }

    #[test]
    fn packed_increments_add_like_incr_ops_and_bad_packing_changes_nothing() {
        let store = MemoryStore::new();
        let mut e = Effects::new(1 << 20);
        let (k, l, d) = packed(&["a", "ωx", "a"], &[2, -5, 1]);
        e.incr_packed(&k, &l, &d).unwrap();
        let seen = e.get_many(&store, Some(0), &["a", "ωx"]).unwrap();
        assert_eq!(seen, [Some(b"3".to_vec()), Some(b"-5".to_vec())]);

        let (k, l, d) = packed(&["b", "c"], &[1, 1]);
        for (keys, lens, deltas, says) in [
            (&k[..1], &l[..], &d[..], "add up to 2 bytes"),
            (&k[..], &l[..4], &d[..], "1 key lengths but 2 deltas"),
            (&k[..], &l[..], &d[..7], "s64s"),
            (&[0xff, b'c'][..], &l[..], &d[..], "key 0 is not UTF-8"),
        ] {
            let err = e.incr_packed(keys, lens, deltas).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let seen = e.get_many(&store, Some(0), &["b", "c"]).unwrap();
        assert_eq!(seen, [None, None], "a rejected call applies nothing");
    }

    #[test]
    fn increments_read_your_writes_over_the_store() {
        let store = MemoryStore::new();
        let mut first = Effects::new(1 << 20);
        first.add("a".into(), 5).unwrap();
        assert_eq!(commit(&store, &first, 0, 1), CommitOutcome::Committed);

        let mut second = Effects::new(1 << 20);
        second.add("a".into(), 2).unwrap();
        second.add("a".into(), 3).unwrap();
        let seen = second.get_many(&store, Some(0), &["a", "b"]).unwrap();
        assert_eq!(seen, vec![Some(b"10".to_vec()), None]);
        assert_eq!(commit(&store, &second, 1, 2), CommitOutcome::Committed);
        assert_eq!(store.snapshot().get("a"), Some(&b"10".to_vec()));
    }

    #[test]
    fn set_then_add_and_delete_then_add() {
        let store = MemoryStore::new();
        let mut e = Effects::new(1 << 20);
        e.set("x".into(), b"7".to_vec()).unwrap();
        e.add("x".into(), 1).unwrap();
        e.delete("y".into()).unwrap();
        e.add("y".into(), 4).unwrap();
        let seen = e.get_many(&store, Some(0), &["x", "y"]).unwrap();
        assert_eq!(seen, vec![Some(b"8".to_vec()), Some(b"4".to_vec())]);
        e.set("s".into(), b"text".to_vec()).unwrap();
        assert!(matches!(
            e.add("s".into(), 1),
            Err(EffectError::NotAnInteger { .. })
        ));
    }

    #[test]
    fn fenced_commit_applies_nothing() {
        let store = MemoryStore::new();
        let mut e = Effects::new(1 << 20);
        e.add("a".into(), 1).unwrap();
        assert_eq!(commit(&store, &e, 0, 10), CommitOutcome::Committed);
        assert_eq!(
            commit(&store, &e, 5, 12),
            CommitOutcome::Fenced { stored: Some(10) }
        );
        assert_eq!(store.snapshot().get("a"), Some(&b"1".to_vec()));
        assert_eq!(store.committed_offset("t", 0).unwrap(), Some(10));
    }

    #[test]
    fn a_bad_increment_fails_the_whole_commit() {
        let store = MemoryStore::new();
        let mut e = Effects::new(1 << 20);
        e.set("word".into(), b"not a number".to_vec()).unwrap();
        commit(&store, &e, 0, 1);
        let mut e = Effects::new(1 << 20);
        e.set("other".into(), b"v".to_vec()).unwrap();
        e.add("word".into(), 1).unwrap();
        let err = store
            .commit(&Commit {
                topic: "t",
                partition: 0,
                expected: Some(1),
                from_offset: 1,
                until_offset: 2,
                writes: &e.state,
                time: &e.time,
                outbox: None,
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::NotAnInteger { .. }), "{err}");
        assert!(!store.snapshot().contains_key("other"));
        assert_eq!(store.committed_offset("t", 0).unwrap(), Some(1));
    }

    #[test]
    fn the_cap_on_buffered_effects_holds() {
        let mut e = Effects::new(1000);
        let err = e.set("k".into(), vec![0; 2000]).unwrap_err();
        assert!(err.to_string().contains("1000 bytes"), "{err}");
    }
}
