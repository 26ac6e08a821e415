//! The worker's protocol over the memory store: a partition log in memory as the source,
//! native logic as the plugin, and a store that lets a test step in between a batch's
//! processing and its commit (another worker's commit, Redis away, a slow commit).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::error::KafkaError;

use super::{BatchLimits, Ownership, PartitionWorker};
use crate::batch::Batch;
use crate::batch::effects::Effects;
use crate::kafka::bulk::{PartitionSource, SourceRecord};
use crate::kafka::consumer::ResetPolicy;
use crate::kafka::mirror::MirrorHandle;
use crate::kafka::producer::Outlet;
use crate::pipeline::executor::{Executor, NativeLogic, Processor};
use crate::pipeline::policy::{ErrorPolicy, OnError};
use crate::retry::Backoff;
use crate::runtime::ProcessError;
use crate::store::committer::Committer;
use crate::store::memory::MemoryStore;
use crate::store::time::{Clock, Due};
use crate::store::{
    Commit, CommitBarrier, CommitOutcome, Committed, StateScope, StateStore, StoreError,
};
use crate::sync::Locked;
use crate::telemetry::metrics::Metrics;

const TOPIC: &str = "t";

struct Record {
    offset: i64,
    value: Vec<u8>,
}

impl SourceRecord for Record {
    fn error(&self) -> Option<KafkaError> {
        None
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp(&self) -> Option<i64> {
        None
    }
    fn key(&self) -> Option<&[u8]> {
        None
    }
    fn payload(&self) -> Option<&[u8]> {
        Some(&self.value)
    }
    fn headers(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        Vec::new()
    }
}

/// A partition's log and the position a reader is at; the seeks it was asked for.
struct Log {
    values: Vec<Vec<u8>>,
    next: usize,
    seeks: Arc<Mutex<Vec<i64>>>,
}

impl PartitionSource for Log {
    type Record = Record;

    fn consume_one(&mut self, timeout: Duration) -> Option<Record> {
        let mut out = Vec::new();
        self.consume(timeout, 1, &mut out);
        out.pop()
    }

    fn consume(&mut self, timeout: Duration, max: usize, out: &mut Vec<Record>) {
        if self.next >= self.values.len() {
            // The end of the log: wait as a consumer would, for nothing.
            std::thread::sleep(timeout.min(Duration::from_millis(2)));
            return;
        }
        let until = (self.next + max).min(self.values.len());
        while self.next < until {
            out.push(Record {
                offset: self.next as i64,
                value: self.values[self.next].clone(),
            });
            self.next += 1;
        }
    }

    fn seek(&mut self, to: Offset) -> Result<(), KafkaError> {
        let to = match to {
            Offset::Offset(o) => o,
            _ => 0,
        };
        self.seeks.locked().push(to);
        self.next = to as usize;
        Ok(())
    }

    fn end_offset(&self) -> Option<i64> {
        Some(self.values.len() as i64)
    }
}

/// Counts records into `n` (`+1` each) and notes, per batch, where it started and what
/// `n` read before it (the read waits for the partition's commit in flight).
struct Counter {
    store: Arc<MemoryStore>,
    batches: Arc<Mutex<Vec<(i64, i64)>>>,
}

impl NativeLogic for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        let read = self
            .store
            .get_many(Some(0), &["n"])
            .ok()
            .and_then(|v| v.into_iter().next().flatten())
            .and_then(|v| crate::store::parse_counter(&v))
            .unwrap_or(0);
        self.batches.locked().push((batch.from_offset, read));
        let mut effects = Effects::new(1 << 20);
        for (i, r) in batch.records.iter().enumerate() {
            if crate::batch::value(batch, r) == Some(&b"poison"[..]) {
                return Err(ProcessError::Poison {
                    plugin: "counter".into(),
                    index: i as u32,
                    message: "a poison record".into(),
                });
            }
        }
        let n = batch.records.len() as i64;
        if n > 0 {
            effects
                .add("n".into(), n)
                .map_err(|cause| ProcessError::Effects {
                    plugin: "counter".into(),
                    cause,
                })?;
        }
        Ok(effects)
    }
}

/// What the store does to a batch's commit before the memory store applies it.
#[derive(Clone, Copy, PartialEq)]
enum Meddle {
    /// Another worker commits `[from, until)` of the same partition first.
    Overtake { until: i64 },
    /// Redis is away for this one attempt.
    Unavailable,
    /// The commit takes this long (process and commit overlap).
    Slow(Duration),
}

/// The memory store, stepping in once before the commit of the batch that starts at
/// `from` (each `Meddle` once).
struct Meddling {
    inner: Arc<MemoryStore>,
    plan: Mutex<Vec<(i64, Meddle)>>,
}

impl StateStore for Meddling {
    fn get_many(
        &self,
        partition: Option<i32>,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.inner.get_many(partition, keys)
    }
    fn committed_offset(&self, topic: &str, partition: i32) -> Result<Option<i64>, StoreError> {
        self.inner.committed_offset(topic, partition)
    }
    fn scope(&self) -> StateScope {
        self.inner.scope()
    }
    fn commit_all(&self, commits: &[Commit<'_>]) -> Vec<Result<Committed, StoreError>> {
        commits
            .iter()
            .map(|c| {
                let step = {
                    let mut plan = self.plan.locked();
                    let at = plan.iter().position(|(from, _)| *from == c.from_offset);
                    at.map(|i| plan.remove(i).1)
                };
                match step {
                    Some(Meddle::Overtake { until }) => {
                        let mut other = Effects::new(1 << 20);
                        other.add("other".into(), 1).expect("fits");
                        let theirs = Commit {
                            until_offset: until,
                            writes: &other.state,
                            ..*c
                        };
                        assert_eq!(
                            self.inner.commit(&theirs).expect("other commit"),
                            CommitOutcome::Committed
                        );
                    }
                    Some(Meddle::Unavailable) => {
                        return Err(StoreError::Unavailable {
                            url: "memory".into(),
                            detail: "away for this attempt".into(),
                        });
                    }
                    Some(Meddle::Slow(d)) => std::thread::sleep(d),
                    None => {}
                }
                self.inner.commit_all(std::slice::from_ref(c)).remove(0)
            })
            .collect()
    }
    fn barrier(&self) -> &CommitBarrier {
        self.inner.barrier()
    }
    fn clock(&self, topic: &str, partition: i32) -> Result<Option<Clock>, StoreError> {
        self.inner.clock(topic, partition)
    }
    fn due(
        &self,
        topic: &str,
        partition: i32,
        upto: [Option<i64>; 2],
        limit: usize,
    ) -> Result<Due, StoreError> {
        self.inner.due(topic, partition, upto, limit)
    }
}

struct Run {
    memory: Arc<MemoryStore>,
    seeks: Arc<Mutex<Vec<i64>>>,
    batches: Arc<Mutex<Vec<(i64, i64)>>>,
    outcome: Result<(), String>,
}

/// Runs a worker over `values` (batches of `max_records`) until `until` is committed,
/// then stops it.
fn run(
    values: &[&str],
    max_records: usize,
    on_error: OnError,
    plan: Vec<(i64, Meddle)>,
    until: i64,
    ownership: Ownership,
) -> Run {
    let memory = Arc::new(MemoryStore::new());
    let store: Arc<dyn StateStore> = Arc::new(Meddling {
        inner: memory.clone(),
        plan: Mutex::new(plan),
    });
    let seeks = Arc::new(Mutex::new(Vec::new()));
    let batches = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let outlet = Arc::new(Outlet::kept());
    let worker = PartitionWorker {
        exec: Executor {
            topic: TOPIC.into(),
            partition: 0,
            job: "j".into(),
            processor: Processor::Native(Box::new(Counter {
                store: memory.clone(),
                batches: batches.clone(),
            })),
            policy: ErrorPolicy {
                on_error,
                max_retries: 3,
                backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
                dlq_topic: None,
                redis_give_up: Duration::from_secs(30),
                kafka_give_up: Duration::from_secs(30),
            },
            set_aside: 0,
            outlet: outlet.clone(),
            metrics: Metrics::new(),
            progress: Default::default(),
            stop: stop.clone(),
            job_stop: Arc::new(AtomicBool::new(false)),
            plugin_slot: None,
            generation: 0,
            store: store.clone(),
            time_settings: Default::default(),
            time: None,
        },
        source: Log {
            values: values.iter().map(|v| v.as_bytes().to_vec()).collect(),
            next: 0,
            seeks: seeks.clone(),
        },
        pending: Default::default(),
        in_flight: None,
        committer: Arc::new(Committer::start(store)),
        outlet,
        limits: BatchLimits {
            max_records,
            max_bytes: 1 << 20,
            linger: Duration::ZERO,
        },
        reset: ResetPolicy::Earliest,
        expected: None,
        mirror: MirrorHandle::disabled(),
        relay: None,
        ownership,
        group: "g".into(),
    };
    let thread = std::thread::spawn(move || worker.run().map_err(|e| e.to_string()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !thread.is_finished() {
        let committed = memory.committed_offset(TOPIC, 0).expect("memory store");
        if committed == Some(until) || Instant::now() > deadline {
            break;
        }
        std::thread::yield_now();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let outcome = thread.join().expect("the worker does not panic");
    Run {
        memory,
        seeks,
        batches,
        outcome,
    }
}

fn offset(store: &MemoryStore) -> Option<i64> {
    store.committed_offset(TOPIC, 0).expect("memory store")
}

fn counter(store: &MemoryStore, key: &str) -> Option<i64> {
    let v = store.get_many(Some(0), &[key]).expect("memory store");
    v.into_iter()
        .next()
        .flatten()
        .and_then(|v| crate::store::parse_counter(&v))
}

#[test]
fn every_batch_commits_in_order_and_each_record_counts_once() {
    let r = run(
        &["a", "b", "c", "d", "e"],
        2,
        OnError::Retry,
        vec![],
        5,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(offset(&r.memory), Some(5));
    assert_eq!(counter(&r.memory, "n"), Some(5));
    let starts: Vec<i64> = r.batches.locked().iter().map(|(from, _)| *from).collect();
    assert_eq!(starts, vec![0, 2, 4]);
}

#[test]
fn a_batch_reads_the_state_its_predecessor_wrote_while_that_commits() {
    // Each commit is slow: batch N+1 is processed while N commits, and its read waits.
    let slow = Meddle::Slow(Duration::from_millis(50));
    let r = run(
        &["a", "b", "c", "d", "e", "f"],
        2,
        OnError::Retry,
        vec![(0, slow), (2, slow)],
        6,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(*r.batches.locked(), vec![(0, 0), (2, 2), (4, 4)]);
    assert_eq!(counter(&r.memory, "n"), Some(6));
}

#[test]
fn a_fenced_commit_applies_nothing_drops_the_next_batch_and_re_seeks() {
    // Another worker commits [2, 4) just before this one's commit of [2, 4).
    let r = run(
        &["a", "b", "c", "d", "e"],
        2,
        OnError::Retry,
        vec![(2, Meddle::Overtake { until: 4 })],
        5,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(*r.seeks.locked(), vec![4], "re-seeked to the stored offset");
    // [0, 2) and [4, 5) are this worker's; [2, 4) the other's.
    assert_eq!(counter(&r.memory, "n"), Some(3));
    assert_eq!(counter(&r.memory, "other"), Some(1));
    assert_eq!(offset(&r.memory), Some(5));
}

#[test]
fn a_failed_commit_is_retried_and_the_batch_processed_meanwhile_runs_again() {
    let r = run(
        &["a", "b", "c", "d", "e"],
        2,
        OnError::Retry,
        vec![(2, Meddle::Unavailable)],
        5,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(counter(&r.memory, "n"), Some(5), "each record counted once");
    let batches = r.batches.locked().clone();
    let runs_of_4 = batches.iter().filter(|(from, _)| *from == 4).count();
    // Processed while [2, 4) failed to commit, then again after its retry was applied,
    // reading the state with [2, 4) in it.
    assert!(runs_of_4 >= 1);
    assert_eq!(batches.last(), Some(&(4, 4)));
}

#[test]
fn a_poison_record_is_skipped_and_its_offset_committed() {
    let r = run(
        &["a", "poison", "c"],
        3,
        OnError::Skip,
        vec![],
        3,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(offset(&r.memory), Some(3));
    assert_eq!(counter(&r.memory, "n"), Some(2));
}

#[test]
fn a_poison_record_under_retry_stops_the_worker_with_nothing_committed() {
    let r = run(
        &["a", "poison", "c"],
        3,
        OnError::Retry,
        vec![],
        3,
        Ownership::Group,
    );
    let err = r.outcome.expect_err("stopped");
    assert!(err.contains("offsets [0, 3)"), "{err}");
    assert_eq!(offset(&r.memory), None);
    assert_eq!(counter(&r.memory, "n"), None);
}

#[test]
fn writes_of_a_fenced_batch_never_reach_the_store() {
    let r = run(
        &["a", "b", "c", "d"],
        2,
        OnError::Retry,
        vec![(0, Meddle::Overtake { until: 2 })],
        4,
        Ownership::Group,
    );
    assert_eq!(r.outcome, Ok(()));
    assert_eq!(*r.seeks.locked(), vec![2]);
    // Only [2, 4) is this worker's.
    assert_eq!(counter(&r.memory, "n"), Some(2));
}

#[test]
fn under_static_assignment_another_writer_stops_the_worker_with_the_reason() {
    let r = run(
        &["a", "b", "c", "d"],
        2,
        OnError::Retry,
        vec![(2, Meddle::Overtake { until: 4 })],
        4,
        Ownership::Static,
    );
    let err = r.outcome.expect_err("stopped");
    assert!(
        err.contains("another host commits this partition too") && err.contains("--partitions"),
        "{err}"
    );
    // Its own batch [0, 2) stays; the other writer's [2, 4) is not overwritten.
    assert_eq!(counter(&r.memory, "n"), Some(2));
    assert_eq!(counter(&r.memory, "other"), Some(1));
}
