//! The batch executor: what happens to one batch between the source and the store, the
//! same for the partition worker, the dead-letter replay and `host test`. It prepares the
//! batch's time (the partition's clock, event times, late records), runs the plugin under
//! the job's error policy (retries with backoff, poison records and failed batches set
//! aside), and fires the timers and expiries the batch made due. The effects it returns
//! are buffered; nothing is visible until the caller hands them to the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::batch::effects::{EffectError, Effects};
use crate::kafka::dead_letters::header as dlq;
use crate::kafka::producer::Outlet;
use crate::pipeline::policy::{ErrorPolicy, OnError};
use crate::pipeline::slot::PluginSlot;
use crate::pipeline::time::{self, Fired, LatePolicy, PartitionTime, TimeSettings};
use crate::retry::{Halt, Limit, Retry};
use crate::runtime::{Header, OutputRecord, ProcessError, Runner};
use crate::store::{StateStore, StoreError};
use crate::telemetry::metrics::{Metrics, OutcomeLabels, PartitionLabels, PluginLabels};
use crate::telemetry::progress::{ErrorNote, Progress};

/// One partition's executor (its plugin instance, its clock, its policy).
pub struct Executor {
    pub topic: String,
    pub partition: i32,
    /// The job's name, for messages and metrics.
    pub job: String,
    pub processor: Processor,
    pub policy: ErrorPolicy,
    /// Batches and poison records this executor skipped or dead-lettered so far.
    pub set_aside: u64,
    /// Where records set aside go: dead letters, late records for a side topic.
    pub outlet: Arc<Outlet>,
    pub metrics: Arc<Metrics>,
    pub progress: Arc<Progress>,
    /// Set when this partition is revoked: finish the batch in hand, then return.
    pub stop: Arc<AtomicBool>,
    /// Set when the whole job stops (signal or another worker's failure).
    pub job_stop: Arc<AtomicBool>,
    /// Where a new plugin version comes from (`None`: the plugin never changes), and the
    /// generation this executor runs.
    pub plugin_slot: Option<PluginSlot>,
    pub generation: u64,
    /// Where the partition's clock and timers are read (they commit with the offsets).
    pub store: Arc<dyn StateStore>,
    pub time_settings: TimeSettings,
    /// The partition's event time; `None` for plugins without time (contract 0.1.0,
    /// native logic).
    pub time: Option<PartitionTime>,
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

/// A batch run through the plugin, ready to produce and commit.
pub(crate) struct Processed {
    pub effects: Effects,
    pub fired: Option<Fired>,
    /// Skipped or dead-lettered: its offsets commit, its effects were dropped.
    pub set_aside: bool,
}

impl Executor {
    /// An executor of `processor` over one partition, on its own: no event time, no plugin
    /// swaps, fresh metrics and stop flags; the caller replaces what it shares.
    pub fn new(
        topic: &str,
        partition: i32,
        job: &str,
        processor: Processor,
        policy: ErrorPolicy,
        store: Arc<dyn StateStore>,
        outlet: Arc<Outlet>,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            job: job.to_owned(),
            processor,
            policy,
            set_aside: 0,
            outlet,
            metrics: Metrics::new(),
            progress: Default::default(),
            stop: Arc::new(AtomicBool::new(false)),
            job_stop: Arc::new(AtomicBool::new(false)),
            plugin_slot: None,
            generation: 0,
            store,
            time_settings: Default::default(),
            time: None,
        }
    }

    /// With event time, when the plugin has it (contract 0.2): the partition's clock is
    /// read from the store before the first batch.
    pub fn with_time(mut self, settings: TimeSettings) -> Self {
        let has_time = matches!(&self.processor, Processor::Plugin(r) if r.plugin().has_time());
        self.time = has_time.then(|| PartitionTime::new(settings.clone()));
        self.time_settings = settings;
        self
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.job_stop.load(Ordering::Relaxed)
    }

    /// `stopping`, without borrowing the worker.
    pub(crate) fn stop_flag(&self) -> impl Fn() -> bool + use<> {
        let (stop, job_stop) = (self.stop.clone(), self.job_stop.clone());
        move || stop.load(Ordering::Relaxed) || job_stop.load(Ordering::Relaxed)
    }

    /// Between two batches: switch to the job's new plugin version if there is one. The
    /// batch in hand has not been processed yet, so every batch runs wholly on one version
    /// and the offsets go on unchanged.
    pub(crate) fn pick_up_new_plugin(&mut self) {
        let Some(slot) = &self.plugin_slot else {
            return;
        };
        if slot.generation() == self.generation {
            return;
        }
        let Processor::Plugin(runner) = &self.processor else {
            return;
        };
        let (generation, plugin) = slot.current();
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

    pub(crate) fn labels(&self) -> PartitionLabels {
        PartitionLabels {
            job: self.job.clone(),
            topic: self.topic.clone(),
            partition: self.partition.to_string(),
        }
    }

    pub(crate) fn count_batch(&self, outcome: &str) {
        let l = self.labels();
        let labels = OutcomeLabels {
            job: l.job,
            topic: l.topic,
            partition: l.partition,
            outcome: outcome.to_owned(),
        };
        self.metrics.batches.get_or_create(&labels).inc();
    }

    /// Waits `pause` unless the job stops first; returns whether to go on.
    pub(crate) fn pause(&self, pause: Duration) -> bool {
        crate::retry::sleep_unless(&|| self.stopping(), pause)
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
        self.outlet.send(&records)?;
        Ok(())
    }

    /// Runs the plugin over the batch until it succeeds or the policy says stop; returns
    /// the effects to commit (empty when the batch was skipped or dead-lettered), or
    /// `None` when the job stopped during a backoff (the batch is abandoned, not committed).
    pub(crate) fn process_with_policy(
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
                    let pause = self.policy.backoff.pause(attempt + 1);
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
                    let pause = self.policy.backoff.pause(attempt);
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
    pub(crate) fn attempt(
        &mut self,
        batch: &mut Batch,
    ) -> Result<(Effects, Option<Fired>), ProcessError> {
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
    pub(crate) fn prepare_time(
        &mut self,
        batch: &mut Batch,
    ) -> anyhow::Result<Option<(u64, &'static str)>> {
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
        let action = match &time.settings.late_records {
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
        let stopping = self.stop_flag();
        let mut retry = Retry::new(
            self.policy.backoff,
            Limit::For(self.policy.redis_give_up),
            &stopping,
        );
        loop {
            let Some(time) = self.time.as_mut() else {
                return Ok(true);
            };
            let e = match time.load(&*self.store, &self.topic, self.partition) {
                Ok(()) => return Ok(true),
                Err(e @ StoreError::Unavailable { .. }) => e,
                Err(e) => {
                    return Err(anyhow::Error::from(e).context("reading the partition's clock"));
                }
            };
            let announce = |pause| tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "reading the partition's clock failed; retrying in {pause:?}");
            match retry.again(announce) {
                Ok(()) => {}
                Err(Halt::Stopped) => return Ok(false),
                Err(halt) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("reading the partition's clock ({halt})")));
                }
            }
        }
    }

    /// A batch's effects went to the store: its clock and what it fired become the
    /// partition's (should the commit be fenced, the caller marks the time stale).
    pub(crate) fn handed_over(
        &mut self,
        clock: Option<crate::store::time::Clock>,
        fired: Option<&Fired>,
    ) {
        if let Some(time) = &mut self.time
            && let Some(fired) = fired
        {
            if let Some(clock) = clock {
                time.clock = clock;
            }
            time.next = fired.next.map(time::Next::Known);
        }
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
