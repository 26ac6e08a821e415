//! Replaying dead letters: the records a job set aside go back through its current
//! plugin, into its state exactly once, even when a replay is interrupted and run again.
//!
//! The replay is a consumer of the dead-letter topic that runs batches through the
//! partition worker's executor (`executor.rs`, one attempt) and commits like a partition
//! worker (`worker.rs`): each batch's state writes and the replay's position commit in
//! one fenced script call (`store::redis`). The position is a **replay cursor** per
//! dead-letter partition D and source partition P, kept in the job's offsets layout under
//! the pseudo-topic `dlq-replay:<dead-letter topic>:<D>`, field P, so it lives in the same
//! Redis hash slot as P's state (`--state-scope partition` included). A record of D whose
//! offset is below P's cursor was replayed (or passed over, see below): it is never
//! applied again. A replay killed after a commit resumes after it; one killed before it
//! left nothing behind. Two replays at once fence each other, as two workers do.
//!
//! A replay moves forward only. `from_ms`/`until_ms` select dead letters by the time
//! they were dead-lettered; a record of this job before `from_ms` below a replayed one is
//! passed over for good (a cursor cannot tell a passed-over record from a replayed one).
//! Emits go to the job's output topic before the commit (at least once, as a job's).
//! Timers and expiries the plugin sets while replaying are not kept: a replayed record
//! has no place in the partition's clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::batch::BatchBuilder;
use crate::batch::effects::stamped_emits;
use crate::kafka::dead_letters::{DeadLetter, DeadLetterError, DeadLetterReader};
use crate::kafka::producer::{Outlet, Sink, SinkError};
use crate::pipeline::executor::{Executor, Processor};
use crate::pipeline::policy::{ErrorPolicy, OnError};
use crate::retry::Backoff;
use crate::runtime::{InstanceSettings, Plugin, ProcessError, Runner};
use crate::store::redis::RedisStore;
use crate::store::time::TimeWrites;
use crate::store::{Commit, CommitOutcome, StateStore, StoreError};

/// What to replay, and through what.
pub struct ReplayConfig {
    /// The job's name (its state) and group (its offsets), as it runs.
    pub job: String,
    pub dlq_topic: String,
    pub brokers: String,
    pub kafka: Vec<(String, String)>,
    pub output_topic: Option<String>,
    pub plugin: Plugin,
    pub plugin_config: Vec<(String, String)>,
    /// Dead letters written in `[from_ms, until_ms)` (unix ms); `None`: no bound.
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub batch_max_records: usize,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Records run through the plugin and committed.
    pub replayed: u64,
    /// Records below the cursor: replayed (or passed over) before.
    pub already_replayed: u64,
    /// Records not for this replay: another job's, outside the time range, or without the
    /// headers that say where they came from.
    pub skipped: u64,
    pub batches: u64,
    /// `NAME@VERSION` (or the file) of the plugin that ran them.
    pub plugin_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Read(#[from] DeadLetterError),
    #[error("replaying dead letters of job {job}: {0}", job = .1)]
    Store(StoreError, String),
    #[error("producing the emits of replayed dead letters: {0}")]
    Sink(#[from] SinkError),
    #[error(
        "dead letter {topic}/{partition}@{offset} (from {source_topic}/{source_partition}@{source_offset}) \
         still fails in {plugin}: {cause}. Nothing of this batch was applied; the replay \
         stopped before it. Fix the plugin (hot-swap it) and replay again: what was replayed \
         stays replayed"
    )]
    Plugin {
        topic: String,
        partition: i32,
        offset: i64,
        source_topic: String,
        source_partition: i32,
        source_offset: i64,
        plugin: String,
        cause: String,
    },
    #[error("cannot instantiate {plugin} for the replay: {cause}")]
    Instantiate { plugin: String, cause: String },
    #[error("the replay was stopped")]
    Stopped,
}

/// The pseudo-topic under which the replay cursor of dead-letter partition `dlq_partition`
/// is kept in the job's offsets layout.
pub fn cursor_topic(dlq_topic: &str, dlq_partition: i32) -> String {
    format!("dlq-replay:{dlq_topic}:{dlq_partition}")
}

/// Whether dead letters were replayed, by the cursors in the job's store (read once each).
pub struct ReplayedCheck<'a> {
    store: &'a RedisStore,
    dlq_topic: &'a str,
    cursors: HashMap<(i32, i32), Option<i64>>,
}

impl<'a> ReplayedCheck<'a> {
    pub fn new(store: &'a RedisStore, dlq_topic: &'a str) -> Self {
        Self {
            store,
            dlq_topic,
            cursors: HashMap::new(),
        }
    }

    /// Below its cursor: replayed (or passed over) by an earlier replay.
    pub fn replayed(&mut self, letter: &DeadLetter) -> Result<bool, StoreError> {
        let Some(source) = &letter.source else {
            return Ok(false);
        };
        let key = (letter.partition, source.partition);
        let cursor = match self.cursors.get(&key) {
            Some(c) => *c,
            None => {
                let c = self.store.committed_offset(
                    &cursor_topic(self.dlq_topic, letter.partition),
                    source.partition,
                )?;
                self.cursors.insert(key, c);
                c
            }
        };
        Ok(cursor.is_some_and(|c| letter.offset < c))
    }
}

/// The records of one source partition (and topic) replayed in one commit.
struct Pending {
    source_topic: String,
    source_partition: i32,
    records: Vec<DeadLetter>,
}

struct Replay<'a> {
    config: &'a ReplayConfig,
    store: Arc<RedisStore>,
    sink: Arc<Outlet>,
    /// One executor per source partition (its plugin instance sees that partition's state).
    executors: HashMap<i32, Executor>,
    /// Cursors read so far, per (dead-letter partition, source partition).
    cursors: HashMap<(i32, i32), Option<i64>>,
    report: ReplayReport,
}

/// Runs the replay to the end of the dead-letter topic (dead letters that arrive while it
/// runs are included until it reaches the end).
pub fn replay(
    config: &ReplayConfig,
    store: Arc<RedisStore>,
    stop: &AtomicBool,
) -> Result<ReplayReport, ReplayError> {
    let reader = DeadLetterReader::new(&config.brokers, &config.kafka, &config.dlq_topic)?;
    let extents = reader.extents(crate::kafka::dead_letters::READ_TIMEOUT)?;
    let sink = Sink::new(&config.brokers, &config.kafka, config.output_topic.clone())?;
    let mut replay = Replay {
        config,
        store,
        sink: Arc::new(Outlet::Kafka(sink)),
        executors: HashMap::new(),
        cursors: HashMap::new(),
        report: ReplayReport {
            plugin_version: config.plugin.origin().to_owned(),
            ..ReplayReport::default()
        },
    };
    for extent in extents {
        let d = extent.partition;
        let mut pending: Option<Pending> = None;
        let mut failure = None;
        reader.read(d, extent.low, |letter| {
            if stop.load(Ordering::SeqCst) {
                failure = Some(ReplayError::Stopped);
                return false;
            }
            match replay.take(d, letter, &mut pending) {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(batch) = pending.take() {
            replay.commit(d, batch)?;
        }
    }
    Ok(replay.report)
}

impl Replay<'_> {
    fn store_error(&self, e: StoreError) -> ReplayError {
        ReplayError::Store(e, self.config.job.clone())
    }

    fn cursor(&mut self, d: i32, p: i32) -> Result<Option<i64>, ReplayError> {
        if let Some(c) = self.cursors.get(&(d, p)) {
            return Ok(*c);
        }
        let topic = cursor_topic(&self.config.dlq_topic, d);
        let c = self
            .store
            .committed_offset(&topic, p)
            .map_err(|e| self.store_error(e))?;
        self.cursors.insert((d, p), c);
        Ok(c)
    }

    /// Adds one dead letter to the pending batch, committing the batch first when the
    /// letter belongs to another source partition or topic, or the batch is full.
    fn take(
        &mut self,
        d: i32,
        letter: DeadLetter,
        pending: &mut Option<Pending>,
    ) -> Result<(), ReplayError> {
        let config = self.config;
        let in_range = letter.timestamp_ms.is_none_or(|t| {
            config.from_ms.is_none_or(|f| t >= f) && config.until_ms.is_none_or(|u| t < u)
        });
        let source = match &letter.source {
            Some(s) if letter.is_of(&config.job) && in_range => s.clone(),
            _ => {
                self.report.skipped += 1;
                return Ok(());
            }
        };
        if self
            .cursor(d, source.partition)?
            .is_some_and(|c| letter.offset < c)
        {
            self.report.already_replayed += 1;
            return Ok(());
        }
        let fits = pending.as_ref().is_some_and(|b| {
            b.source_partition == source.partition
                && b.source_topic == source.topic
                && b.records.len() < config.batch_max_records.max(1)
        });
        if !fits && let Some(batch) = pending.take() {
            self.commit(d, batch)?;
            // The commit may have been fenced by another replay: look again.
            if self
                .cursor(d, source.partition)?
                .is_some_and(|c| letter.offset < c)
            {
                self.report.already_replayed += 1;
                return Ok(());
            }
        }
        pending
            .get_or_insert_with(|| Pending {
                source_topic: source.topic.clone(),
                source_partition: source.partition,
                records: Vec::new(),
            })
            .records
            .push(letter);
        Ok(())
    }

    /// Runs one batch through the plugin, produces its emits, and commits its state with
    /// the cursor moved past its last dead letter, fenced on the cursor it started from.
    fn commit(&mut self, d: i32, batch: Pending) -> Result<(), ReplayError> {
        let p = batch.source_partition;
        let expected = self.cursor(d, p)?;
        // Letters a fenced commit showed were replayed meanwhile are dropped here.
        let letters: Vec<DeadLetter> = batch
            .records
            .into_iter()
            .filter(|l| {
                let done = expected.is_some_and(|c| l.offset < c);
                if done {
                    self.report.already_replayed += 1;
                }
                !done
            })
            .collect();
        let (Some(first), Some(last)) = (letters.first(), letters.last()) else {
            return Ok(());
        };
        let (first_dlq, until_dlq) = (first.offset, last.offset + 1);
        let mut builder = BatchBuilder::new(&batch.source_topic, p);
        for l in &letters {
            let source = l.source.as_ref().map_or(0, |s| s.offset);
            let timestamp = l.source.as_ref().and_then(|s| s.timestamp_ms);
            let headers = l.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_deref()));
            // A dead letter is at most one record of an earlier batch: it fits.
            builder
                .push(
                    source,
                    timestamp,
                    l.key.as_deref(),
                    l.value.as_deref(),
                    headers,
                )
                .map_err(|e| self.plugin_error(d, first, e.to_string()))?;
        }
        let mut kafka_batch = builder.finish(None);
        // One attempt, no policy: the first failure stops the replay, naming the letter.
        let effects = match self.executor(p)?.attempt(&mut kafka_batch) {
            Ok((effects, _)) => effects,
            Err(e) => {
                // A poison record names itself; any other failure is the batch's.
                let culprit = match &e {
                    ProcessError::Poison { index, .. } => letters.get(*index as usize),
                    _ => None,
                };
                return Err(self.plugin_error(d, culprit.unwrap_or(first), e.to_string()));
            }
        };
        if !effects.time.is_empty() {
            tracing::warn!(
                job = %self.config.job, dlq = %self.config.dlq_topic, partition = d,
                "the plugin set timers or expiries while replaying dead letters; a replay does not keep them"
            );
        }
        let emits = stamped_emits(
            effects.emits,
            &kafka_batch.topic,
            p,
            kafka_batch.from_offset,
            kafka_batch.until_offset,
        );
        self.sink.send(&emits)?;
        let topic = cursor_topic(&self.config.dlq_topic, d);
        let outcome = self
            .store
            .commit(&Commit {
                topic: &topic,
                partition: p,
                expected,
                from_offset: first_dlq,
                until_offset: until_dlq,
                writes: &effects.state,
                time: &TimeWrites::default(),
                outbox: None,
            })
            .map_err(|e| self.store_error(e))?;
        match outcome {
            CommitOutcome::Committed => {
                self.cursors.insert((d, p), Some(until_dlq));
                self.report.replayed += letters.len() as u64;
                self.report.batches += 1;
            }
            CommitOutcome::Fenced { stored } => {
                // Another replay committed these (or some of them): its cursor wins, and
                // this batch's effects are dropped. Whatever of it lies beyond the stored
                // cursor is taken again.
                tracing::info!(job = %self.config.job, partition = d, source_partition = p, ?stored, "replay fenced by another replay");
                self.cursors.insert((d, p), stored);
                let rest: Vec<DeadLetter> = letters
                    .into_iter()
                    .filter(|l| stored.is_none_or(|c| l.offset >= c))
                    .collect();
                if !rest.is_empty() {
                    return self.commit(
                        d,
                        Pending {
                            source_topic: batch.source_topic,
                            source_partition: p,
                            records: rest,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn executor(&mut self, p: i32) -> Result<&mut Executor, ReplayError> {
        if !self.executors.contains_key(&p) {
            let store = self.store.clone() as Arc<dyn StateStore>;
            let mut runner = Runner::new(
                self.config.plugin.clone(),
                InstanceSettings {
                    store: store.clone(),
                    partition: Some(p),
                    config: self.config.plugin_config.clone(),
                },
            );
            runner.warm_up().map_err(|e| ReplayError::Instantiate {
                plugin: self.config.plugin.origin().to_owned(),
                cause: e.to_string(),
            })?;
            // One attempt, no policy; a replayed record has no place in the partition's
            // clock: no time.
            let policy = ErrorPolicy {
                on_error: OnError::Stop,
                max_retries: 0,
                backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
                dlq_topic: None,
                redis_give_up: Duration::ZERO,
                kafka_give_up: Duration::ZERO,
            };
            let executor = Executor::new(
                &self.config.dlq_topic,
                p,
                &self.config.job,
                Processor::Plugin(runner),
                policy,
                store,
                self.sink.clone(),
            );
            self.executors.insert(p, executor);
        }
        self.executors
            .get_mut(&p)
            .ok_or_else(|| ReplayError::Instantiate {
                plugin: self.config.plugin.origin().to_owned(),
                cause: "no instance".into(),
            })
    }

    fn plugin_error(&self, d: i32, letter: &DeadLetter, cause: String) -> ReplayError {
        let source = letter
            .source
            .clone()
            .unwrap_or(crate::kafka::dead_letters::Source {
                topic: String::new(),
                partition: -1,
                offset: -1,
                timestamp_ms: None,
            });
        ReplayError::Plugin {
            topic: self.config.dlq_topic.clone(),
            partition: d,
            offset: letter.offset,
            source_topic: source.topic,
            source_partition: source.partition,
            source_offset: source.offset,
            plugin: self.config.plugin.origin().to_owned(),
            cause,
        }
    }
}
