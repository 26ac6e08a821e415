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
//! 5. hand the commit to the committer (`store::committer`), which has the store apply it
//!    atomically (in Redis: one script, `store::redis::commit`): if the stored offset is still the one this batch starts from, apply
//!    the state writes, the timer changes and the partition's clock, and store `until`.
//!    Otherwise another worker owns the partition now (fenced): apply nothing. The worker
//!    goes on to the next batch meanwhile.
//!
//! So batch N+1 is collected and processed while batch N commits, but it is produced and
//! committed only after N's commit was acknowledged, and a state read during N+1 waits
//! for N's commit (`store::CommitBarrier`). A crash anywhere before a commit is applied
//! leaves Redis untouched, so the batch is read again after a restart: state is
//! exactly-once, emits at-least-once (exactly-once through the outbox).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::batch::effects::stamped_emits;
use crate::batch::{Batch, BatchBuilder};
use crate::contract::streamhost::plugin::types::OutputRecord;
use crate::kafka::bulk::{KafkaPartition, PartitionSource, SourceRecord};
use crate::kafka::consumer::ResetPolicy;
use crate::kafka::mirror::MirrorHandle;
use crate::kafka::producer::Outlet;
use crate::pipeline::executor::{Executor, Processed};
use crate::pipeline::relay::{Blocked, RelayHandle};
use crate::pipeline::time::Fired;
use crate::retry::{Halt, Limit, Retry};
use crate::store::committer::{CommitRequest, Committer, Ticket};
use crate::store::redis::outbox;
use crate::store::{CommitOutcome, StoreError};
use crate::telemetry::metrics::LateLabels;
use crate::telemetry::progress::Wait;

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

/// How the worker came to own its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The consumer group assigned it: another member may take it over (a rebalance).
    Group,
    /// `--partitions`: this host alone should write it; no group hands it over.
    Static,
}

/// Why a worker stopped the job.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "{topic}/{partition}: another host commits this partition too (its stored offset \
         moved to {stored} past this host's {expected:?}); with --partitions no consumer \
         group shares partitions out, so two hosts given the same partitions of group \
         {group} fence each other. Give each host its own --partitions, or let the group \
         assign them (no --partitions)"
    )]
    Contended {
        topic: String,
        partition: i32,
        group: String,
        stored: i64,
        expected: Option<i64>,
    },
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

pub struct PartitionWorker<S: PartitionSource = KafkaPartition> {
    /// Runs each batch through the plugin under the error policy (steps 2 and its timers).
    pub exec: Executor,
    /// The partition's records (its own queue of the job's consumer).
    pub source: S,
    /// Records taken from the source that did not fit the batch being cut: the next
    /// batch starts with them. Dropped on a re-seek.
    pub pending: VecDeque<S::Record>,
    /// The previous batch, while its commit is on its way to the store.
    pub in_flight: Option<InFlight>,
    pub committer: Arc<Committer>,
    /// Where emits go (at-least-once; exactly-once hands them to the relay).
    pub outlet: Arc<Outlet>,
    pub limits: BatchLimits,
    pub reset: ResetPolicy,
    /// The stored offset the next commit is fenced on (`None`: nothing stored yet).
    pub expected: Option<i64>,
    /// Where committed offsets go to be mirrored to the Kafka group (best effort).
    pub mirror: MirrorHandle,
    /// `--delivery exactly-once`: the relay that publishes this partition's outbox.
    pub relay: Option<RelayHandle>,
    pub ownership: Ownership,
    /// The consumer group (for messages).
    pub group: String,
}

impl<S: PartitionSource> PartitionWorker<S> {
    pub fn run(mut self) -> Result<(), WorkerError> {
        tracing::info!(topic = %self.exec.topic, partition = self.exec.partition, expected = ?self.expected, "partition worker started");
        self.exec.metrics.partition_started(&self.exec.labels());
        while let Some((batch, expected)) = self.collect()? {
            self.exec.pick_up_new_plugin();
            self.handle(batch, expected)?;
        }
        if let Some(last) = self.in_flight.take() {
            self.settle(last)?;
        }
        if let Some(why) = self.relay.as_ref().and_then(|r| r.outbox().fatal()) {
            return Err(WorkerError::Relay {
                topic: self.exec.topic.clone(),
                partition: self.exec.partition,
                why,
            });
        }
        // A job stopping (not a partition moving on) publishes what it committed.
        if let Some(relay) = &self.relay
            && self.exec.job_stop.load(Ordering::Relaxed)
        {
            relay.finish(RELAY_DRAIN);
        }
        tracing::info!(topic = %self.exec.topic, partition = self.exec.partition, "partition worker stopped");
        Ok(())
    }

    /// The next batch and the stored offset its commit is fenced on; `None` when stopping
    /// with nothing in hand.
    fn collect(&mut self) -> Result<Option<(Batch, Option<i64>)>, WorkerError> {
        let mut builder = BatchBuilder::new(&self.exec.topic, self.exec.partition);
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
                builder = BatchBuilder::new(&self.exec.topic, self.exec.partition);
                cut_at = None;
                continue;
            }
            if self.pending.is_empty() {
                let stopping = self.exec.stopping();
                if stopping {
                    if builder.is_empty() {
                        return Ok(None);
                    }
                    break;
                }
                if builder.is_empty()
                    && let Some(expected) = self.expected
                    && self
                        .exec
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
                if let Some(time) = &mut self.exec.time {
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
                topic = %self.exec.topic, partition = self.exec.partition, stored = expected, delivered = first,
                "the stored offset was out of range; the broker reset the position per --offset-reset"
            ),
            _ => {}
        }
        Ok(Some((batch, self.expected)))
    }

    fn consume_error(&self, e: KafkaError) -> Result<(), WorkerError> {
        let (topic, partition) = (self.exec.topic.clone(), self.exec.partition);
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

    fn batch_error(&self, from: i64, until: i64, cause: anyhow::Error) -> WorkerError {
        WorkerError::Batch {
            job: self.exec.job.clone(),
            topic: self.exec.topic.clone(),
            partition: self.exec.partition,
            from,
            until,
            cause,
        }
    }

    /// Steps 2 to 5 for one batch; leaves its commit in flight.
    fn handle(&mut self, mut batch: Batch, expected: Option<i64>) -> Result<(), WorkerError> {
        let (from, until) = (batch.from_offset, batch.until_offset);
        tracing::debug!(topic = %self.exec.topic, partition = self.exec.partition, from, until, records = batch.records.len(), "batch");
        let batch_started = Instant::now();
        let Some(late) = self
            .exec
            .prepare_time(&mut batch)
            .map_err(|e| self.batch_error(from, until, e))?
        else {
            return Ok(());
        };
        let mut processed = self.exec.process_with_policy(&mut batch);
        if let Some(previous) = self.in_flight.take() {
            match self.settle(previous)? {
                Settled::Committed { retried: false } => {}
                // The previous commit failed at first and was applied only now: this
                // batch may have read state without it. Run it again.
                Settled::Committed { retried: true } => {
                    processed = self.exec.process_with_policy(&mut batch);
                }
                Settled::Fenced | Settled::Abandoned => return Ok(()),
            }
        }
        if processed.is_err() {
            self.exec.count_batch("failed");
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
                self.outlet
                    .check_topics(emits)
                    .map_err(|e| self.batch_error(from, until, e.into()))?;
                // Without the source headers: the relay adds them from the batch's range.
                let entry = (!emits.is_empty()).then(|| outbox::encode(emits, from, until));
                let bytes = entry.as_ref().map_or(0, |e| e.len() as u64);
                let at = format!("{}/{}", self.exec.topic, self.exec.partition);
                match relay
                    .outbox()
                    .wait_for_room(bytes, &|| self.exec.stopping(), &at)
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
                    &self.exec.topic,
                    self.exec.partition,
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
            topic: self.exec.topic.clone(),
            partition: self.exec.partition,
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
        self.exec.handed_over(clock_after, fired.as_ref());
        let watermark = self.exec.time.as_ref().and_then(|t| t.clock.watermark);
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
        let stopping = || self.exec.stopping();
        let mut retry = Retry::new(
            self.exec.policy.backoff,
            Limit::Retries(self.exec.policy.max_retries),
            &stopping,
        );
        while let Err(e) = self.outlet.send(emits) {
            if e.is_permanent() {
                return Err(self.batch_error(from, until, anyhow::Error::from(e)));
            }
            let announce = |pause| tracing::warn!(topic = %self.exec.topic, partition = self.exec.partition, from, until, error = %e, "producing the batch's records failed; retrying in {pause:?}");
            match retry.again(announce) {
                Ok(()) => {}
                Err(Halt::Stopped) => return Ok(false),
                Err(halt) => {
                    return Err(self.batch_error(
                        from,
                        until,
                        anyhow::Error::from(e).context(halt.to_string()),
                    ));
                }
            }
        }
        Ok(true)
    }

    /// A batch's commit was applied: metrics, progress, the Kafka mirror.
    fn committed(&self, until: i64, stats: &BatchStats) {
        let labels = self.exec.labels();
        let m = &self.exec.metrics;
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
        let lag = self.source.end_offset().map(|end| (end - until).max(0));
        if let Some(lag) = lag {
            m.lag.get_or_create(&labels).set(lag);
        }
        if !stats.set_aside {
            m.records_in.get_or_create(&labels).inc_by(stats.records_in);
            self.exec.count_batch("ok");
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
        self.exec.progress.committed(
            &self.exec.topic,
            self.exec.partition,
            until,
            lag,
            stats.records_in,
        );
        self.mirror
            .offer(&self.exec.topic, self.exec.partition, until);
    }

    /// Waits for a batch's commit (retrying it while Redis is unavailable, up to
    /// --redis-give-up-ms) and accounts for it.
    fn settle(&mut self, in_flight: InFlight) -> Result<Settled, WorkerError> {
        let InFlight {
            mut ticket,
            expected,
            stats,
        } = in_flight;
        let stopping = || self.exec.stopping();
        let mut retry = Retry::new(
            self.exec.policy.backoff,
            Limit::For(self.exec.policy.redis_give_up),
            &stopping,
        );
        let (outcome, took, request) = loop {
            let (result, took, request) = ticket.wait();
            let e = match result {
                Ok(outcome) => break (outcome, took, request),
                // A commit whose reply was lost may have been applied: retrying it is safe,
                // the retry is then fenced (stored == until) and the worker moves on.
                Err(e @ StoreError::Unavailable { .. }) => e,
                Err(e) => {
                    return Err(self.batch_error(
                        request.from_offset,
                        request.until_offset,
                        e.into(),
                    ));
                }
            };
            let (from, until) = (request.from_offset, request.until_offset);
            self.exec.progress.waiting(
                Wait::Redis,
                format!(
                    "committing {}/{}: {e}",
                    self.exec.topic, self.exec.partition
                ),
            );
            let announce = |pause| tracing::warn!(topic = %self.exec.topic, partition = self.exec.partition, from, until, error = %e, "commit failed; retrying in {pause:?}");
            match retry.again(announce) {
                Ok(()) => ticket = self.committer.submit(request),
                Err(Halt::Stopped) => return Ok(Settled::Abandoned),
                Err(halt) => {
                    return Err(self.batch_error(
                        from,
                        until,
                        anyhow::Error::from(e).context(halt.to_string()),
                    ));
                }
            }
        };
        let attempt = retry.failures();
        if attempt > 0 {
            self.exec.progress.done_waiting(Wait::Redis);
        }
        let (from, until) = (request.from_offset, request.until_offset);
        let labels = self.exec.labels();
        self.exec
            .metrics
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
                let (topic, partition) = (&self.exec.topic, self.exec.partition);
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
                if self.ownership == Ownership::Static
                    && let Some(s) = stored
                    && expected.is_none_or(|e| s > e)
                {
                    return Err(WorkerError::Contended {
                        topic: topic.clone(),
                        partition,
                        group: self.group.clone(),
                        stored: s,
                        expected,
                    });
                }
                // Exactly-once: another worker committed past this one, so it owns the
                // partition and its relay publishes the outbox; this one stops here (its
                // relay would otherwise contend for the transactional id).
                if self.relay.is_some() && stored.is_some_and(|s| expected.is_none_or(|e| s > e)) {
                    tracing::warn!(topic = %topic, partition, stored = ?stored, "another worker owns this partition now; stopping it on this host until the group assigns it again");
                    self.exec
                        .stop
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                self.expected = stored;
                self.pending.clear();
                if let Some(time) = &mut self.exec.time {
                    time.stale = true;
                }
                let to = stored.map_or(Offset::Beginning, Offset::Offset);
                self.source.seek(to).map_err(|e| {
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

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
