//! Step 5 of the worker's protocol in Redis: the Rust that encodes a commit, beside
//! `commit.lua`, which decodes and applies it. The format is described here, once.
//!
//! One script call commits one or more batches atomically. Several batches go in one
//! call only when they share the state hash (the committer's rounds); their state writes
//! arrive merged, one per key ([`merge_writes`]).
//!
//! **KEYS**: `[1]` the state hash; then per batch its offsets hash and, only when the
//! batch writes them, its clock hash, its event-time and processing-time timer sets, and
//! its outbox sequence hash and outbox stream. Only written keys are declared: a key
//! declared but absent makes a Cluster script wait out a slot migration.
//!
//! **ARGV**: `[1]` the number of batches `n`; then per batch a head of nine
//! values: partition, expected stored offset (`''`: none stored yet), until, clock
//! (`''`: leave it), for each timer set (event, processing) the number of entries to add
//! and to remove, and the outbox entry (`''`: none); then the numbers of sets, deletes
//! and increments, then the `(key, value)` pairs of the sets, the keys of the deletes, the
//! `(key, delta)` pairs of the increments; then per batch and timer set the
//! `(score, member)` pairs to add and the members to remove.
//!
//! **Reply**: `{1, seq...}` committed (per batch its outbox entry's sequence number, 0 for
//! none); `{0, batch, stored}` the `batch`-th head (1-based) was fenced; `{2, key, value}`
//! an increment of a value that is not an integer; `{3, key, value}` an increment that
//! would overflow; `{4, stream, error}` an outbox entry was refused. In the last four
//! cases nothing was written: every check happens before the first write, because a
//! script error would not roll back earlier writes.

use std::borrow::Cow;
use std::collections::HashMap;

use redis::Value;

use super::RedisStore;
use crate::store::time::{TimeDomain, TimeWrites};
use crate::store::{
    Commit, CommitOutcome, Committed, PendingWrite, StateScope, StateWrites, StoreError,
};

/// The script; it reads the format above.
pub(super) const COMMIT_SCRIPT: &str = include_str!("commit.lua");

/// One key's write as the script applies it; borrowed from the batches' buffers where it
/// can be, computed where several batches' writes of one key were combined.
#[derive(Debug, Clone)]
enum Write<'a> {
    Set(Cow<'a, [u8]>),
    Delete,
    Add(i64),
}

impl<'a> From<&'a PendingWrite> for Write<'a> {
    fn from(w: &'a PendingWrite) -> Self {
        match w {
            PendingWrite::Set(v) => Write::Set(Cow::Borrowed(v)),
            PendingWrite::Delete => Write::Delete,
            PendingWrite::Add(d) => Write::Add(*d),
        }
    }
}

/// The writes of several batches folded into one per key, as if applied in order. `None`
/// when some key's writes do not combine (an increment of a value that is not an integer,
/// an overflow): those batches then commit one by one, which names the failing one.
fn merge_writes<'a>(
    batches: impl IntoIterator<Item = &'a StateWrites>,
) -> Option<Vec<(&'a str, Write<'a>)>> {
    let mut merged: HashMap<&'a str, Write<'a>> = HashMap::new();
    for writes in batches {
        for (key, write) in writes.iter() {
            let next = match (merged.remove(key.as_str()), write) {
                (Some(Write::Add(a)), PendingWrite::Add(d)) => Write::Add(a.checked_add(*d)?),
                (Some(Write::Delete), PendingWrite::Add(d)) => {
                    Write::Set(Cow::Owned(d.to_string().into_bytes()))
                }
                (Some(Write::Set(v)), PendingWrite::Add(d)) => {
                    let sum = crate::store::parse_counter(&v)?.checked_add(*d)?;
                    Write::Set(Cow::Owned(sum.to_string().into_bytes()))
                }
                (_, w) => Write::from(w),
            };
            merged.insert(key.as_str(), next);
        }
    }
    Some(merged.into_iter().collect())
}

/// What the commit script answered.
#[derive(Debug, PartialEq, Eq)]
enum ScriptReply {
    /// Per batch, the sequence number of its outbox entry (0: none).
    Committed { seqs: Vec<u64> },
    /// The `batch`-th head (0-based) did not match; nothing was written.
    Fenced { batch: usize, stored: Option<i64> },
}

impl RedisStore {
    /// Commits batches of one state hash in one script run, their writes merged; a run
    /// that finds any batch fenced or any write invalid writes nothing, and its batches
    /// then commit one by one, which applies the good ones and names the bad one.
    pub(super) fn commit_batches(
        &self,
        commits: &[Commit<'_>],
    ) -> Vec<Result<Committed, StoreError>> {
        if commits.len() > 1
            && self.scope() == StateScope::Job
            && let Some(writes) = merge_writes(commits.iter().map(|c| c.writes))
        {
            let heads: Vec<&Commit<'_>> = commits.iter().collect();
            match self.run_commit(&heads, &writes) {
                Ok(ScriptReply::Committed { seqs }) => {
                    return (0..commits.len())
                        .map(|i| Ok((CommitOutcome::Committed, seqs.get(i).copied().unwrap_or(0))))
                        .collect();
                }
                // Redis is away: every batch of the run gets the same answer, and retries.
                Err(StoreError::Unavailable { url, detail }) => {
                    return commits
                        .iter()
                        .map(|_| {
                            Err(StoreError::Unavailable {
                                url: url.clone(),
                                detail: detail.clone(),
                            })
                        })
                        .collect();
                }
                // Fenced or invalid: nothing was written; one by one finds which batch.
                Ok(ScriptReply::Fenced { .. }) | Err(_) => {}
            }
        }
        commits.iter().map(|c| self.commit_one(c)).collect()
    }

    fn commit_one(&self, commit: &Commit<'_>) -> Result<Committed, StoreError> {
        let writes: Vec<(&str, Write<'_>)> = commit
            .writes
            .iter()
            .map(|(k, w)| (k.as_str(), Write::from(w)))
            .collect();
        match self.run_commit(&[commit], &writes)? {
            ScriptReply::Committed { seqs } => {
                Ok((CommitOutcome::Committed, seqs.first().copied().unwrap_or(0)))
            }
            ScriptReply::Fenced { stored, .. } => Ok((CommitOutcome::Fenced { stored }, 0)),
        }
    }

    /// Runs the commit script: every head fenced, then `writes` (of the state hash of the
    /// heads' partition, or of the job) and the heads' offsets, atomically. With
    /// `--redis-wait-replicas`, waits for the replicas on the connection that ran it.
    fn run_commit(
        &self,
        heads: &[&Commit<'_>],
        writes: &[(&str, Write<'_>)],
    ) -> Result<ScriptReply, StoreError> {
        let first = heads.first().ok_or_else(|| StoreError::Command {
            key: self.keys.meta(),
            detail: "a commit without a batch".to_owned(),
        })?;
        let offsets: Vec<String> = heads
            .iter()
            .map(|h| self.keys.offsets(h.topic, h.partition))
            .collect();
        let changes: Vec<[Changes; 2]> = heads.iter().map(|h| timer_changes(h.time)).collect();
        let state = self.keys.state(Some(first.partition))?;
        let (mut sets, mut dels, mut incrs) = (Vec::new(), Vec::new(), Vec::new());
        for (key, write) in writes {
            match write {
                Write::Set(v) => sets.push((*key, v)),
                Write::Delete => dels.push(*key),
                Write::Add(d) => incrs.push((*key, *d)),
            }
        }
        // Only the keys a batch writes are declared (see the format above).
        let mut inv = self.script.key(&state);
        for ((h, key), per) in heads.iter().zip(&offsets).zip(&changes) {
            inv.key(key);
            if h.time.clock.is_some() {
                inv.key(self.keys.clock(h.topic, h.partition));
            }
            for (domain, (adds, removes)) in TimeDomain::ALL.iter().zip(per) {
                if !adds.is_empty() || !removes.is_empty() {
                    inv.key(self.keys.timers(h.topic, h.partition, *domain));
                }
            }
            if h.outbox.is_some() {
                inv.key(self.keys.outbox_seq(h.topic, h.partition));
                inv.key(self.keys.outbox(h.topic, h.partition));
            }
        }
        inv.arg(heads.len());
        for (h, per) in heads.iter().zip(&changes) {
            inv.arg(h.partition)
                .arg(h.expected.map(|o| o.to_string()).unwrap_or_default())
                .arg(h.until_offset)
                .arg(h.time.clock.map(|c| c.encode()).unwrap_or_default());
            for (adds, removes) in per {
                inv.arg(adds.len()).arg(removes.len());
            }
            inv.arg(h.outbox.unwrap_or_default());
        }
        inv.arg(sets.len()).arg(dels.len()).arg(incrs.len());
        for (k, v) in &sets {
            inv.arg(k.as_bytes()).arg(v.as_ref());
        }
        for k in &dels {
            inv.arg(k.as_bytes());
        }
        for (k, d) in &incrs {
            inv.arg(k.as_bytes()).arg(*d);
        }
        for per in &changes {
            for (adds, removes) in per {
                for (at, member) in adds {
                    inv.arg(*at).arg(member.as_slice());
                }
                for member in removes {
                    inv.arg(member.as_slice());
                }
            }
        }
        // WAIT counts the writes of its own connection: it must follow the script on the
        // connection that ran it.
        let (wanted, timeout) = (self.redis.wait_replicas, self.redis.wait_timeout);
        let (reply, acked) = self.with_conn(&state, |c| {
            let reply: Vec<Value> = inv.invoke(c)?;
            let committed = matches!(reply.first(), Some(Value::Int(1)));
            let acked = (wanted > 0 && committed).then(|| c.wait_replicas(&state, wanted, timeout));
            Ok((reply, acked))
        })?;
        let text = |v: Option<&Value>| match v {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::Int(i)) => i.to_string(),
            _ => String::new(),
        };
        let delta_of = |key: &str| incrs.iter().find(|(k, _)| *k == key).map_or(0, |(_, d)| *d);
        match reply.first() {
            Some(Value::Int(1)) => {
                if let Some(acked) = acked {
                    self.report_unreplicated(
                        acked,
                        first.topic,
                        first.partition,
                        first.until_offset,
                    );
                }
                let seqs = (1..=heads.len())
                    .map(|i| match reply.get(i) {
                        Some(Value::Int(s)) => *s as u64,
                        _ => 0,
                    })
                    .collect();
                Ok(ScriptReply::Committed { seqs })
            }
            Some(Value::Int(0)) => Ok(ScriptReply::Fenced {
                batch: text(reply.get(1))
                    .parse::<usize>()
                    .unwrap_or(1)
                    .saturating_sub(1),
                stored: text(reply.get(2)).parse().ok(),
            }),
            Some(Value::Int(2)) => {
                let key = text(reply.get(1));
                Err(StoreError::NotAnInteger {
                    delta: delta_of(&key),
                    key,
                    value: text(reply.get(2)),
                })
            }
            Some(Value::Int(3)) => {
                let key = text(reply.get(1));
                Err(StoreError::Overflow {
                    delta: delta_of(&key),
                    key,
                })
            }
            Some(Value::Int(4)) => Err(StoreError::Command {
                key: text(reply.get(1)),
                detail: format!(
                    "the outbox refused the batch's entry ({}): its sequence counter was \
                     reset behind its entries; set the counter's field in {} to the stream's \
                     last id (XINFO STREAM) and start the job again",
                    text(reply.get(2)),
                    self.keys.outbox_seq(first.topic, first.partition)
                ),
            }),
            other => Err(StoreError::Command {
                key: offsets.join(" "),
                detail: format!("unexpected reply from the commit script: {other:?}"),
            }),
        }
    }
}

/// Per batch and timer set: the (score, member) pairs to add, the members to remove.
type Changes = (Vec<(i64, Vec<u8>)>, Vec<Vec<u8>>);

fn timer_changes(time: &TimeWrites) -> [Changes; 2] {
    let mut per: [Changes; 2] = Default::default();
    for (key, at) in &time.entries {
        let (adds, removes) = &mut per[key.domain.index()];
        match at {
            Some(at) => adds.push((*at, key.member())),
            None => removes.push(key.member()),
        }
    }
    per
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(list: &[(&str, PendingWrite)]) -> StateWrites {
        let mut w = StateWrites::default();
        for (k, v) in list {
            w.insert((*k).to_owned(), v.clone());
        }
        w
    }

    fn merged(batches: &[StateWrites]) -> Option<HashMap<String, String>> {
        let m = merge_writes(batches.iter())?;
        Some(
            m.into_iter()
                .map(|(k, w)| {
                    let shown = match w {
                        Write::Set(v) => format!("set {}", String::from_utf8_lossy(&v)),
                        Write::Delete => "del".to_owned(),
                        Write::Add(d) => format!("add {d}"),
                    };
                    (k.to_owned(), shown)
                })
                .collect(),
        )
    }

    #[test]
    fn later_batches_win_and_increments_fold_as_if_applied_in_order() {
        use PendingWrite::*;
        let m = merged(&[
            writes(&[
                ("a", Add(2)),
                ("b", Set(b"7".to_vec())),
                ("c", Set(b"x".to_vec())),
                ("d", Add(1)),
            ]),
            writes(&[("a", Add(3)), ("b", Add(5)), ("c", Delete), ("e", Delete)]),
            writes(&[("d", Set(b"y".to_vec())), ("e", Add(4))]),
        ])
        .expect("combines");
        let want: HashMap<String, String> = [
            ("a", "add 5"),
            ("b", "set 12"),
            ("c", "del"),
            ("d", "set y"),
            ("e", "set 4"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(m, want);
    }

    #[test]
    fn writes_that_do_not_combine_are_left_to_single_commits() {
        use PendingWrite::*;
        // An increment of a value that is not an integer: the single commit names it.
        assert_eq!(
            merged(&[
                writes(&[("k", Set(b"abc".to_vec()))]),
                writes(&[("k", Add(1))])
            ]),
            None
        );
        // Increments whose sum overflows.
        assert_eq!(
            merged(&[writes(&[("k", Add(i64::MAX))]), writes(&[("k", Add(1))])]),
            None
        );
        assert_eq!(
            merged(&[
                writes(&[("k", Set(i64::MAX.to_string().into_bytes()))]),
                writes(&[("k", Add(1))])
            ]),
            None
        );
    }

    #[test]
    fn a_single_batch_passes_through_unchanged() {
        use PendingWrite::*;
        let m = merged(&[writes(&[("k", Add(-3)), ("s", Set(b"v".to_vec()))])]).expect("ok");
        assert_eq!(m["k"], "add -3");
        assert_eq!(m["s"], "set v");
    }

    #[test]
    fn the_script_reads_heads_of_the_documented_width() {
        // partition, expected, until, clock, 2 x (adds, removes), outbox entry.
        assert!(COMMIT_SCRIPT.contains("local HEAD = 9\n"));
    }
}
