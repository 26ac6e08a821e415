//! One partition worker: cut the partition into batches, run each through the plugin,
//! produce its emits, commit it. This file is the commit protocol, top to bottom.
//!
//! For every batch `[from, until)`:
//! 1. collect records from the partition's own queue (up to `max_records` / `max_bytes`,
//!    or until `linger` passed since the first record);
//! 2. `process` it in the plugin; its emits and state writes are buffered, nothing is
//!    visible yet. A failure stops here: nothing produced, nothing committed;
//! 3. produce the emits and wait for the broker's acknowledgements;
//! 4. commit in Redis, atomically: if the stored offset is still the one this worker
//!    started the batch from, apply the state writes and store `until`. Otherwise another
//!    worker owns the partition now (fenced): apply nothing, re-seek to the stored offset.
//!
//! A crash anywhere before step 4 leaves Redis untouched, so the batch is read again
//! after a restart: state is exactly-once, emits at-least-once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::{Offset, Timestamp};

use crate::baseline::NativeWordcount;
use crate::batch::{Batch, BatchBuilder};
use crate::effects::Effects;
use crate::effects::stamped_emits;
use crate::runtime::{ProcessError, Runner};
use crate::sink::Sink;
use crate::source::{ResetPolicy, SourceContext};
use crate::store::redis::RedisStore;
use crate::store::{Commit, CommitOutcome, StateStore};

/// When to cut a batch.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

/// How long a poll waits before looking at the stop flags again.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Why a worker stopped the job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("batch {topic}/{partition} offsets [{from}, {until}) failed: {source:#}")]
    Batch {
        topic: String,
        partition: i32,
        from: i64,
        until: i64,
        source: anyhow::Error,
    },
    #[error(
        "{topic}/{partition}: the stored offset is out of range and --offset-reset is none; \
         set a valid one with `host offsets set`, or use --offset-reset earliest|latest"
    )]
    OutOfRange { topic: String, partition: i32 },
    #[error("{topic}/{partition}: consuming failed: {source}")]
    Consume {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
}

/// What turns a batch into effects: the plugin, or the native baseline of the benchmarks.
pub enum Processor {
    Plugin(Runner),
    Native(NativeWordcount),
}

impl Processor {
    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        match self {
            Processor::Plugin(runner) => runner.process(batch),
            Processor::Native(native) => native.process(batch),
        }
    }
}

pub struct PartitionWorker {
    pub topic: String,
    pub partition: i32,
    pub queue: rdkafka::consumer::base_consumer::PartitionQueue<SourceContext>,
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub processor: Processor,
    pub store: Arc<RedisStore>,
    pub sink: Arc<Sink>,
    pub limits: BatchLimits,
    pub reset: ResetPolicy,
    /// The stored offset the next commit is fenced on (`None`: nothing stored yet).
    pub expected: Option<i64>,
    /// Set when this partition is revoked: finish the batch in hand, then return.
    pub stop: Arc<AtomicBool>,
    /// Set when the whole job stops (signal or another worker's failure).
    pub job_stop: Arc<AtomicBool>,
}

impl PartitionWorker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.job_stop.load(Ordering::Relaxed)
    }

    pub fn run(mut self) -> Result<(), WorkerError> {
        tracing::info!(topic = %self.topic, partition = self.partition, expected = ?self.expected, "partition worker started");
        while let Some((batch, expected)) = self.collect()? {
            self.handle(batch, expected)?;
        }
        tracing::info!(topic = %self.topic, partition = self.partition, "partition worker stopped");
        Ok(())
    }

    /// The next batch and the stored offset its commit is fenced on; `None` when stopping
    /// with nothing in hand.
    fn collect(&mut self) -> Result<Option<(Batch, Option<i64>)>, WorkerError> {
        let mut builder = BatchBuilder::new(&self.topic, self.partition);
        let mut cut_at: Option<Instant> = None;
        let mut last_offset = 0;
        loop {
            let wait = match cut_at {
                None => POLL_SLICE,
                Some(t) => t.saturating_duration_since(Instant::now()).min(POLL_SLICE),
            };
            let stopping = self.stopping();
            let message = if stopping {
                None
            } else {
                self.queue.poll(wait)
            };
            match message {
                None => {
                    if builder.is_empty() {
                        if stopping {
                            return Ok(None);
                        }
                        continue;
                    }
                    if stopping || cut_at.is_some_and(|t| Instant::now() >= t) {
                        break;
                    }
                }
                Some(Err(e)) => self.consume_error(e)?,
                Some(Ok(m)) => {
                    let timestamp = match m.timestamp() {
                        Timestamp::NotAvailable => None,
                        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
                    };
                    let headers = m.headers();
                    let header_list: Vec<(&[u8], Option<&[u8]>)> = headers
                        .map(|h| h.iter().map(|h| (h.key.as_bytes(), h.value)).collect())
                        .unwrap_or_default();
                    last_offset = m.offset();
                    if builder
                        .push(last_offset, timestamp, m.key(), m.payload(), header_list)
                        .is_err()
                    {
                        break;
                    }
                    if cut_at.is_none() {
                        cut_at = Some(Instant::now() + self.limits.linger);
                    }
                    if builder.len() >= self.limits.max_records
                        || builder.data_len() >= self.limits.max_bytes
                    {
                        break;
                    }
                }
            }
        }
        let mut batch = builder.finish(Some(last_offset + 1));
        let first = batch.from_offset;
        match self.expected {
            // Offsets may skip (compaction, transaction markers, a reset forward past
            // deleted data): the batch covers the skipped range too, so ranges stay
            // contiguous and the fence matches.
            Some(expected) if first > expected => batch.from_offset = expected,
            Some(expected) if first < expected => tracing::warn!(
                topic = %self.topic, partition = self.partition, stored = expected, delivered = first,
                "the stored offset was out of range; the broker reset the position per --offset-reset"
            ),
            _ => {}
        }
        Ok(Some((batch, self.expected)))
    }

    fn consume_error(&self, e: KafkaError) -> Result<(), WorkerError> {
        let (topic, partition) = (self.topic.clone(), self.partition);
        match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AutoOffsetReset) if self.reset == ResetPolicy::None => {
                Err(WorkerError::OutOfRange { topic, partition })
            }
            Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                tracing::warn!(topic, partition, error = %e, "offset out of range; reset policy applied");
                Ok(())
            }
            // Transient broker trouble: librdkafka retries on its own.
            _ => {
                tracing::warn!(topic, partition, error = %e, "consumer error");
                Ok(())
            }
        }
    }

    fn handle(&mut self, batch: Batch, expected: Option<i64>) -> Result<(), WorkerError> {
        let (from, until) = (batch.from_offset, batch.until_offset);
        let fail = |source: anyhow::Error| WorkerError::Batch {
            topic: self.topic.clone(),
            partition: self.partition,
            from,
            until,
            source,
        };
        tracing::debug!(topic = %self.topic, partition = self.partition, from, until, records = batch.records.len(), "batch");
        let effects = self.processor.process(&batch).map_err(|e| fail(e.into()))?;
        let emits = stamped_emits(effects.emits, &self.topic, self.partition, from, until);
        self.sink.send(emits).map_err(|e| fail(e.into()))?;
        let outcome = self
            .store
            .commit(&Commit {
                topic: &self.topic,
                partition: self.partition,
                expected,
                from_offset: from,
                until_offset: until,
                writes: &effects.state,
            })
            .map_err(|e| fail(e.into()))?;
        match outcome {
            CommitOutcome::Committed => {
                self.expected = Some(until);
                Ok(())
            }
            CommitOutcome::Fenced { stored } => {
                tracing::warn!(
                    topic = %self.topic, partition = self.partition, from, until, expected = ?expected, stored = ?stored,
                    "commit fenced: another worker moved this partition; nothing applied, re-seeking to the stored offset"
                );
                self.expected = stored;
                let to = stored.map_or(Offset::Beginning, Offset::Offset);
                self.consumer
                    .seek(&self.topic, self.partition, to, Duration::from_secs(10))
                    .map_err(|e| fail(anyhow::anyhow!("re-seeking after a fenced commit: {e}")))?;
                Ok(())
            }
        }
    }
}
