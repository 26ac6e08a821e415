//! One partition worker: cut the partition into batches, run each through the plugin,
//! produce its emits, commit it. This file is the commit protocol, top to bottom.
//!
//! For every batch `[from, until)`:
//! 1. collect records from the partition's own queue (up to `max_records` / `max_bytes`,
//!    or until `linger` passed since the first record);
//! 2. `process` it in the plugin, then fire the partition's timers and expiries that the
//!    batch's event times (or the wall clock) made due (`pipeline::time`); its emits,
//!    state writes and timer changes are buffered, nothing is visible yet. A failure
//!    stops here: nothing produced, nothing committed. (A partition with timers due and
//!    no records runs a batch without records: it fires them, and commits the same
//!    offset.);
//! 3. wait for the previous batch's commit (see below). If it was fenced, drop this
//!    batch's effects and re-seek; if it needed a retry, process this batch again (its
//!    reads may have missed the previous batch's writes);
//! 4. produce the emits and wait for the broker's acknowledgements (`--delivery
//!    exactly-once` instead encodes them as the batch's outbox entry, which commits in
//!    step 5 with the state, and waits while the outbox is full; the relay,
//!    `pipeline::relay`, publishes committed entries in Kafka transactions);
//! 5. hand the commit to the committer (`store::redis::committer`), which applies it in
//!    Redis atomically: if the stored offset is still the one this batch starts from, apply
//!    the state writes, the timer changes and the partition's clock, and store `until`.
//!    Otherwise another worker owns the partition now (fenced): apply nothing. The worker
//!    goes on to the next batch meanwhile.
//!
//! So batch N+1 is collected and processed while batch N commits, but it is produced and
//! committed only after N's commit was acknowledged, and a state read during N+1 waits
//! for N's commit (`RedisStore::get_many`). A crash anywhere before a commit is applied
//! leaves Redis untouched, so the batch is read again after a restart: state is
//! exactly-once, emits at-least-once (exactly-once through the outbox).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::batch::effects::stamped_emits;
use crate::batch::effects::{EffectError, Effects};
use crate::batch::{Batch, BatchBuilder};
use crate::kafka::bulk::{BulkQueue, RawMessage};
use crate::kafka::consumer::{ResetPolicy, SourceContext};
use crate::kafka::dead_letters::header as dlq;
use crate::kafka::mirror::MirrorHandle;
use crate::kafka::producer::Sink;
use crate::pipeline::policy::{ErrorPolicy, OnError};
use crate::pipeline::relay::{Blocked, RelayHandle};
use crate::pipeline::slot::PluginSlot;
use crate::pipeline::time::{self, Fired, LatePolicy, Next, PartitionTime, TimeSettings};
use crate::runtime::{Header, OutputRecord, ProcessError, Runner};
use crate::store::redis::RedisStore;
use crate::store::redis::committer::{CommitRequest, Committer, Ticket};
use crate::store::redis::outbox;
use crate::store::{CommitOutcome, StoreError};
use crate::telemetry::metrics::{
    LateLabels, Metrics, OutcomeLabels, PartitionLabels, PluginLabels,
};
use crate::telemetry::progress::{ErrorNote, Progress};

/// When to cut a batch.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

/// How long a poll waits before looking at the stop flags again.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// ...and before looking whether the previous batch's commit was answered.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(2);

/// How long a stopping job's relay may take to publish what its worker committed.
const RELAY_DRAIN: Duration = Duration::from_secs(10);

/// Why a worker stopped the job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("job {job}: batch {topic}/{partition} offsets [{from}, {until}) failed: {cause:#}")]
    Batch {
        job: String,
        topic: String,
        partition: i32,
        from: i64,
        until: i64,
        cause: anyhow::Error,
    },
    #[error(
        "{topic}/{partition}: the stored offset is out of range and --offset-reset is none; \
         set a valid one with `host offsets set`, or use --offset-reset earliest|latest"
    )]
    OutOfRange { topic: String, partition: i32 },
    #[error(
        "{topic}/{partition}: consuming failed after offset {committed:?} (the last \
         committed): {cause}: {fix}"
    )]
    Unhealable {
        topic: String,
        partition: i32,
        committed: Option<i64>,
        cause: String,
        fix: &'static str,
    },
    #[error("{topic}/{partition}: consuming failed: {cause}")]
    Consume {
        topic: String,
        partition: i32,
        cause: KafkaError,
    },
    #[error("{topic}/{partition}: the exactly-once relay stopped: {why}")]
    Relay {
        topic: String,
        partition: i32,
        why: String,
    },
}

/// Batch logic compiled into the process instead of a plugin: the benchmarks measure the
/// sandbox's cost by running the same word count natively through the same pipeline.
pub trait NativeLogic: Send {
    /// Shown where a plugin's name would be (logs, dead-letter headers).
    fn name(&self) -> &str;
    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError>;
}

/// Makes one [`NativeLogic`] per partition worker.
pub type NativeFactory = Arc<dyn Fn() -> Box<dyn NativeLogic> + Send + Sync>;

/// What turns a batch into effects: the plugin, or native logic (benchmarks).
pub enum Processor {
    Plugin(Runner),
    Native(Box<dyn NativeLogic>),
}

/// A batch whose commit is on its way to Redis.
pub struct InFlight {
    ticket: Ticket,
    /// The stored offset its commit is fenced on.
    expected: Option<i64>,
    stats: BatchStats,
}

/// What is accounted once a batch's commit is applied.
struct BatchStats {
    /// Timers and expiries it fired, and the partition's watermark after it.
    fired: Option<Fired>,
    watermark: Option<i64>,
    /// Its late records, and what the policy did with them.
    late: (u64, &'static str),
    started: Instant,
    records_in: u64,
    records_out: u64,
    /// Skipped or dead-lettered: its offsets commit, its records do not count as processed.
    set_aside: bool,
    /// The records' Kafka timestamps (ms), for the produce-to-commit latency.
    timestamps: Vec<i64>,
}

/// How the previous batch's commit ended, for the batch processed meanwhile.
enum Settled {
    Committed {
        retried: bool,
    },
    /// Another worker owns the partition, or the offset moved: the worker re-seeked.
    Fenced,
    /// The job stopped while the commit waited for Redis: not committed.
    Abandoned,
}

pub struct PartitionWorker {
    pub topic: String,
    pub partition: i32,
    /// Detaches the partition's queue from the consumer's main queue while it lives.
    pub queue: rdkafka::consumer::base_consumer::PartitionQueue<SourceContext>,
    /// The same queue, read in bulk.
    pub source: BulkQueue,
    /// Records taken from the queue that did not fit the batch being cut: the next
    /// batch starts with them. Dropped on a re-seek.
    pub pending: VecDeque<RawMessage>,
    /// The previous batch, while its commit is on its way to Redis.
    pub in_flight: Option<InFlight>,
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    pub processor: Processor,
    pub committer: Arc<Committer>,
    pub sink: Arc<Sink>,
    pub limits: BatchLimits,
    pub reset: ResetPolicy,
    pub policy: ErrorPolicy,
    /// The job's name, for messages.
    pub job: String,
    /// Batches and poison records this worker skipped or dead-lettered so far.
    pub set_aside: u64,
    pub metrics: Arc<Metrics>,
    /// The stored offset the next commit is fenced on (`None`: nothing stored yet).
    pub expected: Option<i64>,
    /// Set when this partition is revoked: finish the batch in hand, then return.
    pub stop: Arc<AtomicBool>,
    /// Set when the whole job stops (signal or another worker's failure).
    pub job_stop: Arc<AtomicBool>,
    /// Where a new plugin version comes from, and the generation this worker runs.
    pub plugin_slot: PluginSlot,
    pub generation: u64,
    /// Where committed offsets go to be mirrored to the Kafka group (best effort).
    pub mirror: MirrorHandle,
    pub progress: Arc<Progress>,
    /// Where the partition's clock and timers are read (they commit with the offsets).
    pub store: Arc<RedisStore>,
    pub time_settings: TimeSettings,
    /// The partition's event time; `None` for plugins without time (contract 0.1.0,
    /// native logic).
    pub time: Option<PartitionTime>,
    /// `--delivery exactly-once`: the relay that publishes this partition's outbox.
    pub relay: Option<RelayHandle>,
}

/// A batch run through the plugin, ready to produce and commit.
struct Processed {
    effects: Effects,
    fired: Option<Fired>,
    /// Skipped or dead-lettered: its offsets commit, its effects were dropped.
    set_aside: bool,
}

impl PartitionWorker {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.job_stop.load(Ordering::Relaxed)
    }

    pub fn run(mut self) -> Result<(), WorkerError> {
        tracing::info!(topic = %self.topic, partition = self.partition, expected = ?self.expected, "partition worker started");
        self.metrics.partition_started(&self.labels());
        while let Some((batch, expected)) = self.collect()? {
            self.pick_up_new_plugin();
            self.handle(batch, expected)?;
        }
        if let Some(last) = self.in_flight.take() {
            self.settle(last)?;
        }
        if let Some(why) = self.relay.as_ref().and_then(|r| r.outbox().fatal()) {
            return Err(WorkerError::Relay {
                topic: self.topic.clone(),
                partition: self.partition,
                why,
            });
        }
        // A job stopping (not a partition moving on) publishes what it committed.
        if let Some(relay) = &self.relay
            && self.job_stop.load(Ordering::Relaxed)
        {
            relay.finish(RELAY_DRAIN);
        }
        tracing::info!(topic = %self.topic, partition = self.partition, "partition worker stopped");
        Ok(())
    }

    /// Between two batches: switch to the job's new plugin version if there is one. The
    /// batch in hand has not been processed yet, so every batch runs wholly on one version
    /// and the offsets go on unchanged.
    fn pick_up_new_plugin(&mut self) {
        if self.plugin_slot.generation() == self.generation {
            return;
        }
        let Processor::Plugin(runner) = &self.processor else {
            return;
        };
        let (generation, plugin) = self.plugin_slot.current();
        let mut next = runner.with_plugin(plugin);
        match next.warm_up() {
            Ok(()) => {
                tracing::info!(
                    topic = %self.topic, partition = self.partition, from = runner.plugin().digest(),
                    to = next.plugin().digest(), generation, "plugin swapped at a batch boundary"
                );
                let has_time = next.plugin().has_time();
                self.processor = Processor::Plugin(next);
                self.generation = generation;
                if !has_time {
                    self.time = None;
                } else if self.time.is_none() {
                    self.time = Some(PartitionTime::new(self.time_settings.clone()));
                }
            }
            Err(e) => {
                // The admin API checked `init` before the swap; should it fail here all the
                // same, keep the running version rather than stop the partition.
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "new plugin version failed to start; keeping the old one");
                self.generation = generation;
            }
        }
    }

    /// The next batch and the stored offset its commit is fenced on; `None` when stopping
    /// with nothing in hand.
    fn collect(&mut self) -> Result<Option<(Batch, Option<i64>)>, WorkerError> {
        let mut builder = BatchBuilder::new(&self.topic, self.partition);
        let mut cut_at: Option<Instant> = None;
        let mut last_offset = 0;
        let mut full = false;
        while !full {
            // An idle partition must not leave its last commit unaccounted (or, should
            // it have failed, unretried) until more records come.
            if self
                .in_flight
                .as_ref()
                .is_some_and(|f| f.ticket.is_answered())
                && let Some(last) = self.in_flight.take()
                && let Settled::Fenced = self.settle(last)?
            {
                // What was collected follows the fenced batch: start again from the
                // stored offset the worker re-seeked to.
                builder = BatchBuilder::new(&self.topic, self.partition);
                cut_at = None;
                continue;
            }
            if self.pending.is_empty() {
                let stopping = self.stopping();
                if stopping {
                    if builder.is_empty() {
                        return Ok(None);
                    }
                    break;
                }
                if builder.is_empty()
                    && let Some(expected) = self.expected
                    && self
                        .time
                        .as_ref()
                        .is_some_and(|t| t.tick_due(crate::clock::unix_ms()))
                {
                    // Time passed with no records: a batch of none fires what is due.
                    let mut tick = builder.finish(Some(expected));
                    tick.from_offset = expected;
                    return Ok(Some((tick, self.expected)));
                }
                if cut_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let mut wait = match cut_at {
                    None => POLL_SLICE,
                    Some(t) => t.saturating_duration_since(Instant::now()).min(POLL_SLICE),
                };
                if self.in_flight.is_some() {
                    wait = wait.min(IN_FLIGHT_POLL);
                }
                let room = self.limits.max_records.saturating_sub(builder.len()).max(1);
                let mut taken = Vec::new();
                if builder.is_empty() {
                    // The first record starts the linger: take it as soon as it is there,
                    // then whatever else is already queued.
                    if let Some(first) = self.source.consume_one(wait) {
                        taken.push(first);
                        self.source.consume(Duration::ZERO, room - 1, &mut taken);
                    }
                } else {
                    self.source.consume(wait, room, &mut taken);
                }
                self.pending.extend(taken);
                continue;
            }
            while let Some(m) = self.pending.pop_front() {
                if let Some(e) = m.error() {
                    self.consume_error(e)?;
                    continue;
                }
                if builder
                    .push(m.offset(), m.timestamp(), m.key(), m.payload(), m.headers())
                    .is_err()
                {
                    // The batch's buffer is full: this record starts the next batch.
                    self.pending.push_front(m);
                    full = true;
                    break;
                }
                last_offset = m.offset();
                if let Some(time) = &mut self.time {
                    time.last_record = Instant::now();
                }
                if cut_at.is_none() {
                    cut_at = Some(Instant::now() + self.limits.linger);
                }
                if builder.len() >= self.limits.max_records
                    || builder.data_len() >= self.limits.max_bytes
                {
                    full = true;
                    break;
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
            _ if crate::kafka::errors::unhealable_consume_error(&e).is_some() => {
                Err(WorkerError::Unhealable {
                    topic,
                    partition,
                    committed: self.expected,
                    fix: crate::kafka::errors::unhealable_consume_error(&e).unwrap_or_default(),
                    cause: e.to_string(),
                })
            }
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

    fn labels(&self) -> PartitionLabels {
        PartitionLabels {
            job: self.job.clone(),
            topic: self.topic.clone(),
            partition: self.partition.to_string(),
        }
    }

    fn count_batch(&self, outcome: &str) {
        let l = self.labels();
        let labels = OutcomeLabels {
            job: l.job,
            topic: l.topic,
            partition: l.partition,
            outcome: outcome.to_owned(),
        };
        self.metrics.batches.get_or_create(&labels).inc();
    }

    /// librdkafka's cached end offset of the partition (no request to the broker).
    fn cached_end_offset(&self) -> Option<i64> {
        use rdkafka::client::Client;
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (0i64, 0i64);
        let client: &Client<SourceContext> = self.consumer.client();
        // SAFETY: the client pointer is valid while `self.consumer` lives; the call only
        // copies librdkafka's cached watermarks into the two out-parameters.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                client.native_ptr(),
                topic.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    /// Waits `pause` unless the job stops first; returns whether to go on.
    fn pause(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            std::thread::sleep(POLL_SLICE.min(until.saturating_duration_since(Instant::now())));
        }
        !self.stopping()
    }

    /// Keeps a failure for the console (`host serve`'s job view).
    fn note_error(&self, kind: &'static str, offset: Option<i64>, error: &ProcessError) {
        self.progress.error(ErrorNote {
            at_ms: crate::clock::unix_ms(),
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
            kind,
            message: error.to_string(),
        });
    }

    /// (name, origin, digest) of what processes the batches, for dead-letter headers.
    fn plugin_identity(&self) -> (String, String, String) {
        match &self.processor {
            Processor::Plugin(r) => {
                let p = r.plugin();
                (
                    p.name().to_owned(),
                    p.origin().to_owned(),
                    p.digest().to_owned(),
                )
            }
            Processor::Native(native) => (native.name().to_owned(), String::new(), String::new()),
        }
    }

    /// Produces records of the batch to the dead-letter topic, with headers saying where
    /// they came from and why they failed, and waits for the acknowledgements.
    fn dead_letter(
        &self,
        batch: &Batch,
        indices: &[usize],
        error: &str,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let Some(topic) = &self.policy.dlq_topic else {
            anyhow::bail!("no --dlq-topic to send failed records to");
        };
        self.send_aside(topic, batch, indices, error, attempts)?;
        self.metrics
            .dead_lettered
            .get_or_create(&self.labels())
            .inc_by(indices.len() as u64);
        self.progress.dead_lettered(indices.len() as u64);
        tracing::warn!(topic = %self.topic, partition = self.partition, dlq = %topic, count = indices.len(), "records sent to the dead-letter topic");
        Ok(())
    }

    /// Produces copies of records of the batch to `topic` (dead letters, late records),
    /// with headers saying where they came from and why, and waits for the
    /// acknowledgements.
    fn send_aside(
        &self,
        topic: &str,
        batch: &Batch,
        indices: &[usize],
        error: &str,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let (plugin, origin, digest) = self.plugin_identity();
        let bytes = |s: crate::batch::Span| crate::batch::slice(batch, s).to_vec();
        let records: Vec<OutputRecord> = indices
            .iter()
            .map(|&i| {
                let r = &batch.records[i];
                let first = r.first_header as usize;
                let mut headers: Vec<Header> = batch.headers
                    [first..first + r.header_count as usize]
                    .iter()
                    .map(|h| Header {
                        name: String::from_utf8_lossy(&bytes(h.name)).into_owned(),
                        value: h.value.map(bytes),
                    })
                    .collect();
                let h = |name: &str, value: String| Header {
                    name: name.to_owned(),
                    value: Some(value.into_bytes()),
                };
                headers.extend([
                    h(dlq::ERROR, error.to_owned()),
                    h(dlq::JOB, self.job.clone()),
                    h(dlq::PLUGIN, plugin.clone()),
                    h(dlq::PLUGIN_VERSION, origin.clone()),
                    h(dlq::PLUGIN_DIGEST, digest.clone()),
                    h(dlq::SOURCE_TOPIC, self.topic.clone()),
                    h(dlq::SOURCE_PARTITION, self.partition.to_string()),
                    h(dlq::SOURCE_OFFSET, r.offset.to_string()),
                    h(dlq::ATTEMPTS, attempts.to_string()),
                ]);
                if let Some(ts) = r.timestamp {
                    headers.push(h(dlq::SOURCE_TIMESTAMP, ts.to_string()));
                }
                OutputRecord {
                    topic: Some(topic.to_owned()),
                    key: r.key.map(bytes),
                    value: r.value.map(bytes),
                    headers,
                }
            })
            .collect();
        self.sink.send(&records)?;
        Ok(())
    }

    /// Runs the plugin over the batch until it succeeds or the policy says stop; returns
    /// the effects to commit (empty when the batch was skipped or dead-lettered), or
    /// `None` when the job stopped during a backoff (the batch is abandoned, not committed).
    fn process_with_policy(
        &mut self,
        batch: &mut Batch,
    ) -> Result<Option<Processed>, anyhow::Error> {
        let (from, until) = (batch.from_offset, batch.until_offset);
        let mut attempt: u32 = 0;
        let mut redis_down_since: Option<Instant> = None;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = self.attempt(batch);
            self.metrics
                .plugin_seconds
                .get_or_create(&self.labels())
                .observe(started.elapsed().as_secs_f64());
            if let Processor::Plugin(runner) = &self.processor
                && let Some(bytes) = runner.linear_memory_bytes()
            {
                let labels = PluginLabels {
                    job: self.job.clone(),
                    plugin: runner.plugin().name().to_owned(),
                    partition: self.partition.to_string(),
                };
                self.metrics
                    .plugin_memory
                    .get_or_create(&labels)
                    .set(bytes as i64);
            }
            let error = match result {
                Ok((effects, fired)) => {
                    return Ok(Some(Processed {
                        effects,
                        fired,
                        set_aside: false,
                    }));
                }
                Err(e) => e,
            };
            let redis_down = matches!(
                &error,
                ProcessError::Effects {
                    cause: EffectError::Store(StoreError::Unavailable { .. }),
                    ..
                }
            );
            match &error {
                ProcessError::Fatal { .. } | ProcessError::Load(_) => {
                    self.note_error("failed", Some(from), &error);
                    return Err(error.into());
                }
                // Redis unreachable while the plugin read state: not the batch's fault, so
                // it does not use up attempts; it waits for Redis up to --redis-give-up-ms.
                _ if redis_down => {
                    let since = *redis_down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.policy.redis_give_up {
                        anyhow::bail!("{error} (gave up after {:?})", self.policy.redis_give_up);
                    }
                    attempt = attempt.saturating_sub(1);
                    let pause = self.policy.backoff(attempt + 1);
                    tracing::warn!(topic = %self.topic, partition = self.partition, error = %error, "Redis unreachable; retrying in {pause:?}");
                    if !self.pause(pause) {
                        return Ok(None);
                    }
                }
                ProcessError::Poison { index, .. } => {
                    let index = *index as usize;
                    if index >= batch.records.len() {
                        anyhow::bail!(
                            "{error}, but the batch has only {} records",
                            batch.records.len()
                        );
                    }
                    let offset = batch.records[index].offset;
                    self.note_error("poison", Some(offset), &error);
                    match self.policy.on_error {
                        OnError::Dlq => {
                            self.dead_letter(batch, &[index], &error.to_string(), attempt)?
                        }
                        OnError::Skip => tracing::warn!(
                            topic = %self.topic, partition = self.partition, offset, error = %error,
                            "skipping a poison record"
                        ),
                        OnError::Retry | OnError::Stop => {
                            anyhow::bail!(
                                "{error} (offset {offset}); use --on-error dlq or skip to set such records aside"
                            )
                        }
                    }
                    // The batch runs again without that record; its range is unchanged.
                    batch.records.remove(index);
                    self.set_aside += 1;
                    attempt = 0;
                }
                _ if self.policy.on_error == OnError::Stop => {
                    self.note_error("failed", Some(from), &error);
                    return Err(error.into());
                }
                _ if attempt > self.policy.max_retries => match self.policy.on_error {
                    OnError::Skip => {
                        self.set_aside += 1;
                        self.count_batch("skipped");
                        self.note_error("skip", Some(from), &error);
                        tracing::warn!(
                            topic = %self.topic, partition = self.partition, from, until, attempts = attempt, error = %error,
                            set_aside_total = self.set_aside,
                            "skipping the batch: its offsets are committed, its effects dropped"
                        );
                        return Ok(Some(Processed {
                            effects: Effects::new(0),
                            fired: None,
                            set_aside: true,
                        }));
                    }
                    OnError::Dlq => {
                        self.set_aside += 1;
                        let all: Vec<usize> = (0..batch.records.len()).collect();
                        self.dead_letter(batch, &all, &error.to_string(), attempt)?;
                        self.count_batch("dead_lettered");
                        self.note_error("dead_letter", Some(from), &error);
                        return Ok(Some(Processed {
                            effects: Effects::new(0),
                            fired: None,
                            set_aside: true,
                        }));
                    }
                    _ => {
                        self.note_error("failed", Some(from), &error);
                        anyhow::bail!("{error} (gave up after {attempt} attempts)")
                    }
                },
                _ => {
                    let pause = self.policy.backoff(attempt);
                    self.metrics.retries.get_or_create(&self.labels()).inc();
                    self.note_error("retry", Some(from), &error);
                    tracing::warn!(
                        topic = %self.topic, partition = self.partition, from, until, attempt, error = %error,
                        "batch failed; retrying in {pause:?}"
                    );
                    if !self.pause(pause) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// One attempt at a batch: `process` (none for a batch without records), then firing
    /// what the batch's time made due.
    fn attempt(&mut self, batch: &mut Batch) -> Result<(Effects, Option<Fired>), ProcessError> {
        let runner = match &mut self.processor {
            Processor::Native(native) => return Ok((native.process(batch)?, None)),
            Processor::Plugin(runner) => runner,
        };
        let Some(time) = &self.time else {
            return Ok((runner.process(batch)?, None));
        };
        let effects = if batch.records.is_empty() {
            runner.empty_effects(batch.processing_time)
        } else {
            runner.process(batch)?
        };
        let idle = batch.records.is_empty() && time.idle();
        let clock = time.advance(batch, batch.processing_time, idle);
        let (mut effects, fired) = time::fire(
            runner,
            &*self.store,
            &self.topic,
            self.partition,
            effects,
            [clock.watermark, Some(batch.processing_time)],
            time.next,
            time::FIRE_LIMIT,
        )?;
        if clock != time.clock {
            effects.time.clock = Some(clock);
        }
        Ok((effects, Some(fired)))
    }

    /// Before a batch is processed: the partition's clock (read after a start or a
    /// re-seek), the plugin's event times, and the late-record policy. Returns the number
    /// of late records and what was done with them.
    /// `None` when the job stopped while Redis was away (the batch is abandoned).
    fn prepare_time(&mut self, batch: &mut Batch) -> anyhow::Result<Option<(u64, &'static str)>> {
        if self.time.as_ref().is_some_and(|t| t.stale) && !self.load_clock()? {
            return Ok(None);
        }
        let Some(time) = &self.time else {
            return Ok(Some((0, "processed")));
        };
        batch.watermark = time.clock.watermark;
        if batch.records.is_empty() {
            return Ok(Some((0, "processed")));
        }
        if let Processor::Plugin(runner) = &mut self.processor
            && let Some(times) = runner
                .event_times(batch)
                .map_err(|e| anyhow::Error::from(e).context("event-time.extract failed"))?
        {
            for (record, t) in batch.records.iter_mut().zip(times) {
                record.event_time = t;
            }
        }
        let Some(time) = &self.time else {
            return Ok(Some((0, "processed")));
        };
        let late = time.late(batch);
        if late.is_empty() {
            return Ok(Some((0, "processed")));
        }
        let count = late.len() as u64;
        let action = match &time.settings.late {
            LatePolicy::Process => return Ok(Some((count, "processed"))),
            LatePolicy::Drop => "dropped",
            LatePolicy::Topic(topic) => {
                let why = format!(
                    "late: event time before the watermark {} minus the allowed lateness {} ms",
                    time.clock.watermark.unwrap_or_default(),
                    time.settings.allowed_lateness_ms
                );
                let topic = topic.clone();
                self.send_aside(&topic, batch, &late, &why, 1)?;
                "sent"
            }
        };
        for i in late.into_iter().rev() {
            batch.records.remove(i);
        }
        Ok(Some((count, action)))
    }

    /// Reads the partition's clock, waiting out an unreachable Redis up to
    /// --redis-give-up-ms; `false` when the job stopped meanwhile.
    fn load_clock(&mut self) -> anyhow::Result<bool> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let Some(time) = self.time.as_mut() else {
                return Ok(true);
            };
            let e = match time.load(&*self.store, &self.topic, self.partition) {
                Ok(()) => return Ok(true),
                Err(e) => e,
            };
            attempt += 1;
            if !matches!(e, StoreError::Unavailable { .. })
                || started.elapsed() >= self.policy.redis_give_up
            {
                return Err(anyhow::Error::from(e).context("reading the partition's clock"));
            }
            let pause = self.policy.backoff(attempt);
            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "reading the partition's clock failed; retrying in {pause:?}");
            if !self.pause(pause) {
                return Ok(false);
            }
        }
    }

    fn batch_error(&self, from: i64, until: i64, cause: anyhow::Error) -> WorkerError {
        WorkerError::Batch {
            job: self.job.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            from,
            until,
            cause,
        }
    }

    /// Steps 2 to 5 for one batch; leaves its commit in flight.
    fn handle(&mut self, mut batch: Batch, expected: Option<i64>) -> Result<(), WorkerError> {
        let (from, until) = (batch.from_offset, batch.until_offset);
        tracing::debug!(topic = %self.topic, partition = self.partition, from, until, records = batch.records.len(), "batch");
        let batch_started = Instant::now();
        let Some(late) = self
            .prepare_time(&mut batch)
            .map_err(|e| self.batch_error(from, until, e))?
        else {
            return Ok(());
        };
        let mut processed = self.process_with_policy(&mut batch);
        if let Some(previous) = self.in_flight.take() {
            match self.settle(previous)? {
                Settled::Committed { retried: false } => {}
                // The previous commit failed at first and was applied only now: this
                // batch may have read state without it. Run it again.
                Settled::Committed { retried: true } => {
                    processed = self.process_with_policy(&mut batch);
                }
                Settled::Fenced | Settled::Abandoned => return Ok(()),
            }
        }
        if processed.is_err() {
            self.count_batch("failed");
        }
        let Some(Processed {
            mut effects,
            fired,
            set_aside,
        }) = processed.map_err(|e| self.batch_error(from, until, e))?
        else {
            return Ok(());
        };
        let records_out = effects.emits.len() as u64;
        let outbox = match &self.relay {
            Some(relay) => {
                let emits = &effects.emits;
                self.sink
                    .check_topics(emits)
                    .map_err(|e| self.batch_error(from, until, e.into()))?;
                // Without the source headers: the relay adds them from the batch's range.
                let entry = (!emits.is_empty()).then(|| outbox::encode(emits, from, until));
                let bytes = entry.as_ref().map_or(0, |e| e.len() as u64);
                let at = format!("{}/{}", self.topic, self.partition);
                match relay
                    .outbox()
                    .wait_for_room(bytes, &|| self.stopping(), &at)
                {
                    Ok(()) => {}
                    Err(Blocked::Stopping) => return Ok(()),
                    Err(Blocked::Failed(why)) => {
                        return Err(self.batch_error(
                            from,
                            until,
                            anyhow::anyhow!("the exactly-once relay stopped: {why}"),
                        ));
                    }
                }
                entry
            }
            None => {
                let emits = stamped_emits(
                    std::mem::take(&mut effects.emits),
                    &self.topic,
                    self.partition,
                    from,
                    until,
                );
                if !self.produce(&emits, from, until)? {
                    return Ok(());
                }
                None
            }
        };
        if let Some(relay) = &self.relay {
            relay.outbox().submitting(until);
        }
        let clock_after = effects.time.clock;
        let ticket = self.committer.submit(CommitRequest {
            topic: self.topic.clone(),
            partition: self.partition,
            expected,
            from_offset: from,
            until_offset: until,
            writes: effects.state,
            time: effects.time,
            outbox,
            outbox_seq: None,
        });
        // The next batch starts where this one ends; should this commit be fenced, that
        // batch is dropped and the worker re-seeks (`settle`).
        self.expected = Some(until);
        if let Some(time) = &mut self.time
            && let Some(fired) = &fired
        {
            if let Some(clock) = clock_after {
                time.clock = clock;
            }
            time.next = fired.next.map(Next::Known);
        }
        let watermark = self.time.as_ref().and_then(|t| t.clock.watermark);
        self.in_flight = Some(InFlight {
            ticket,
            expected,
            stats: BatchStats {
                fired,
                watermark,
                late,
                started: batch_started,
                records_in: batch.records.len() as u64,
                records_out,
                set_aside,
                timestamps: batch.records.iter().filter_map(|r| r.timestamp).collect(),
            },
        });
        Ok(())
    }

    /// Step 4 at least once: produces the emits, retrying by the policy. False when the
    /// job stopped meanwhile (nothing may commit then).
    fn produce(&self, emits: &[OutputRecord], from: i64, until: i64) -> Result<bool, WorkerError> {
        let mut attempt = 0;
        while let Err(e) = self.sink.send(emits) {
            attempt += 1;
            if e.is_permanent() {
                return Err(self.batch_error(from, until, anyhow::Error::from(e)));
            }
            if attempt > self.policy.max_retries {
                return Err(self.batch_error(
                    from,
                    until,
                    anyhow::Error::from(e).context(format!("gave up after {attempt} attempts")),
                ));
            }
            let pause = self.policy.backoff(attempt);
            tracing::warn!(topic = %self.topic, partition = self.partition, from, until, error = %e, "producing the batch's records failed; retrying in {pause:?}");
            if !self.pause(pause) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A batch's commit was applied: metrics, progress, the Kafka mirror.
    fn committed(&self, until: i64, stats: &BatchStats) {
        let labels = self.labels();
        let m = &self.metrics;
        m.batch_seconds
            .get_or_create(&labels)
            .observe(stats.started.elapsed().as_secs_f64());
        let latency = m.commit_latency.get_or_create(&labels);
        let now = crate::clock::unix_ms();
        for t in &stats.timestamps {
            latency.observe((now - t).max(0) as f64 / 1000.0);
        }
        m.records_out
            .get_or_create(&labels)
            .inc_by(stats.records_out);
        m.committed_offset.get_or_create(&labels).set(until);
        let lag = self.cached_end_offset().map(|end| (end - until).max(0));
        if let Some(lag) = lag {
            m.lag.get_or_create(&labels).set(lag);
        }
        if !stats.set_aside {
            m.records_in.get_or_create(&labels).inc_by(stats.records_in);
            self.count_batch("ok");
        }
        if stats.late.0 > 0 {
            let late = LateLabels {
                job: labels.job.clone(),
                topic: labels.topic.clone(),
                partition: labels.partition.clone(),
                action: stats.late.1.to_owned(),
            };
            m.late_records.get_or_create(&late).inc_by(stats.late.0);
        }
        if let Some(fired) = &stats.fired {
            m.timers_fired.get_or_create(&labels).inc_by(fired.timers);
            m.expired_keys.get_or_create(&labels).inc_by(fired.expiries);
        }
        if let Some(wm) = stats.watermark {
            m.watermark.get_or_create(&labels).set(wm);
        }
        self.progress
            .committed(&self.topic, self.partition, until, lag, stats.records_in);
        self.mirror.offer(&self.topic, self.partition, until);
    }

    /// Waits for a batch's commit (retrying it while Redis is unavailable, up to
    /// --redis-give-up-ms) and accounts for it.
    fn settle(&mut self, in_flight: InFlight) -> Result<Settled, WorkerError> {
        let InFlight {
            mut ticket,
            expected,
            stats,
        } = in_flight;
        let started = Instant::now();
        let mut attempt = 0;
        let (outcome, took, request) = loop {
            let (result, took, request) = ticket.wait();
            match result {
                Ok(outcome) => break (outcome, took, request),
                // A commit whose reply was lost may have been applied: retrying it is safe,
                // the retry is then fenced (stored == until) and the worker moves on.
                Err(e @ StoreError::Unavailable { .. })
                    if started.elapsed() < self.policy.redis_give_up =>
                {
                    attempt += 1;
                    let pause = self.policy.backoff(attempt);
                    tracing::warn!(topic = %self.topic, partition = self.partition, from = request.from_offset, until = request.until_offset, error = %e, "commit failed; retrying in {pause:?}");
                    if !self.pause(pause) {
                        return Ok(Settled::Abandoned);
                    }
                    ticket = self.committer.submit(request);
                }
                Err(e) => {
                    return Err(self.batch_error(
                        request.from_offset,
                        request.until_offset,
                        e.into(),
                    ));
                }
            }
        };
        let (from, until) = (request.from_offset, request.until_offset);
        let labels = self.labels();
        self.metrics
            .commit_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        match outcome {
            CommitOutcome::Committed => {
                if let (Some(relay), Some(seq), Some(entry)) =
                    (&self.relay, request.outbox_seq, &request.outbox)
                {
                    relay.outbox().committed(seq, entry.len() as u64);
                }
                self.committed(until, &stats);
                Ok(Settled::Committed {
                    retried: attempt > 0,
                })
            }
            CommitOutcome::Fenced { stored } => {
                let (topic, partition) = (&self.topic, self.partition);
                match stored {
                    // A retried commit whose first attempt was applied (its reply was lost).
                    // Without a retry, stored == until is another worker's commit: fenced.
                    Some(s) if s == until && attempt > 0 => {
                        tracing::info!(
                            topic = %topic, partition, from, until,
                            "commit was already applied (a retry after a lost reply); going on"
                        );
                        self.committed(until, &stats);
                        return Ok(Settled::Committed { retried: true });
                    }
                    // Behind an asynchronous replica, a failover loses the newest commits,
                    // offsets and state together: replaying from there is exact. Not a
                    // zombie, so the worker goes on rather than stopping.
                    Some(s) if expected.is_some_and(|e| s < e) => tracing::warn!(
                        topic = %topic, partition, from, until, expected = ?expected, stored = s,
                        "the stored offset moved backwards (a Redis failover lost recent commits, or an operator reset it); nothing applied, replaying from the stored offset"
                    ),
                    _ => tracing::warn!(
                        topic = %topic, partition, from, until, expected = ?expected, stored = ?stored,
                        "commit fenced: another worker moved this partition; nothing applied, re-seeking to the stored offset"
                    ),
                }
                // Exactly-once: another worker committed past this one, so it owns the
                // partition and its relay publishes the outbox; this one stops here (its
                // relay would otherwise contend for the transactional id).
                if self.relay.is_some() && stored.is_some_and(|s| expected.is_none_or(|e| s > e)) {
                    tracing::warn!(topic = %topic, partition, stored = ?stored, "another worker owns this partition now; stopping it on this host until the group assigns it again");
                    self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                self.expected = stored;
                self.pending.clear();
                if let Some(time) = &mut self.time {
                    time.stale = true;
                }
                let to = stored.map_or(Offset::Beginning, Offset::Offset);
                self.consumer
                    .seek(&self.topic, self.partition, to, Duration::from_secs(10))
                    .map_err(|e| {
                        self.batch_error(
                            from,
                            until,
                            anyhow::anyhow!("re-seeking after a fenced commit: {e}"),
                        )
                    })?;
                Ok(Settled::Fenced)
            }
        }
    }
}
