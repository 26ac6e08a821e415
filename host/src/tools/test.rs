//! `host test`: runs a plugin over a file with no Kafka and no Redis, the plugin author's
//! inner loop. Each batch goes through the partition worker's executor
//! (`pipeline::executor`: event times, late records, the plugin, timer firing) and the
//! same fenced commit, with the in-memory store in place of Redis. The end of
//! the input moves the watermark to the end of time (unless `--no-final-watermark`), so
//! every window closes and a window plugin's output can be checked without Kafka.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::batch::effects::{Effects, stamped_emits};
use crate::batch::{Batch, BatchBuilder};
use crate::job::settings::JobSettings;
use crate::kafka::producer::Outlet;
use crate::pipeline::executor::{Executor, Processed, Processor};
use crate::pipeline::policy::OnError;
use crate::pipeline::time::TimeSettings;
use crate::runtime::{InstanceSettings, OutputRecord, Plugin, Runner};
use crate::store::memory::MemoryStore;
use crate::store::time::TimeKind;
use crate::store::{Commit, CommitOutcome, StateStore};
use crate::tools::input::{InputFormat, bytes_to_json, read_records};

pub struct TestRun {
    pub input: PathBuf,
    pub format: InputFormat,
    pub batch_size: usize,
    pub topic: String,
    pub partition: i32,
    pub config: Vec<(String, String)>,
    pub state_scope: crate::store::StateScope,
    /// Move the watermark to the end of time once the input is done.
    pub final_watermark: bool,
    pub time: TimeSettings,
}

/// Batches of no records run at the end of the input at most (each fires up to
/// `time::FIRE_LIMIT`): a timer handler that keeps setting due timers cannot loop forever.
const MAX_FINAL_BATCHES: usize = 10_000;

/// One partition run through the executor (as a partition worker runs it) and the
/// in-memory store.
struct Run<'a> {
    spec: &'a TestRun,
    exec: Executor,
    store: Arc<MemoryStore>,
    emits: Vec<OutputRecord>,
    offset: i64,
    batches: usize,
    timers_fired: u64,
    expired: u64,
    late: u64,
}

impl Run<'_> {
    /// Processes one batch (none for a batch without records), fires what its time made
    /// due, and commits it; returns how many timers and expiries fired.
    fn batch(&mut self, mut batch: Batch) -> anyhow::Result<usize> {
        let spec = self.spec;
        let (from_offset, until_offset) = (batch.from_offset, batch.until_offset);
        let range = format!(
            "{}/{} offsets [{from_offset}, {until_offset})",
            spec.topic, spec.partition
        );
        tracing::debug!(topic = %spec.topic, partition = spec.partition, from_offset, until_offset, "batch");
        let (late, _) = self
            .exec
            .prepare_time(&mut batch)
            .with_context(|| format!("batch {range} failed"))?
            .context("stopped")?;
        self.late += late;
        let Processed { effects, fired, .. } = self
            .exec
            .process_with_policy(&mut batch)
            .with_context(|| format!("batch {range} failed"))?
            .context("stopped")?;
        let clock = effects.time.clock;
        self.commit(&range, from_offset, until_offset, effects)?;
        self.exec.handed_over(clock, fired.as_ref());
        let fired = fired.unwrap_or_default();
        self.timers_fired += fired.timers;
        self.expired += fired.expiries;
        Ok((fired.timers + fired.expiries) as usize)
    }

    fn commit(
        &mut self,
        range: &str,
        from_offset: i64,
        until_offset: i64,
        effects: Effects,
    ) -> anyhow::Result<()> {
        let spec = self.spec;
        let outcome = self
            .store
            .commit(&Commit {
                topic: &spec.topic,
                partition: spec.partition,
                expected: (from_offset > 0).then_some(from_offset),
                from_offset,
                until_offset,
                writes: &effects.state,
                time: &effects.time,
                outbox: None,
            })
            .with_context(|| format!("committing batch {range}"))?;
        if outcome != CommitOutcome::Committed {
            anyhow::bail!("commit of batch {range} was fenced: {outcome:?}");
        }
        self.emits.extend(stamped_emits(
            effects.emits,
            &spec.topic,
            spec.partition,
            from_offset,
            until_offset,
        ));
        self.offset = until_offset;
        self.batches += 1;
        Ok(())
    }

    /// A batch of no records at the current offset.
    fn tick(&mut self) -> anyhow::Result<usize> {
        let mut batch =
            BatchBuilder::new(&self.spec.topic, self.spec.partition).finish(Some(self.offset));
        batch.from_offset = self.offset;
        self.batch(batch)
    }
}

/// Runs the whole file through the plugin and returns the report printed on stdout.
pub fn run(plugin: Plugin, spec: &TestRun) -> anyhow::Result<Value> {
    let records = read_records(&spec.input, spec.format)?;
    let store = Arc::new(MemoryStore::with_scope(spec.state_scope));
    let settings = InstanceSettings {
        store: store.clone(),
        partition: Some(spec.partition),
        config: spec.config.clone(),
    };
    let mut runner = Runner::new(plugin.clone(), settings);
    runner.warm_up()?;
    let settings = JobSettings {
        // The first failure ends the test, with its error.
        on_error: OnError::Stop,
        time: spec.time.clone(),
        ..JobSettings::default()
    };
    let mut run = Run {
        spec,
        exec: Executor::new(
            &spec.topic,
            spec.partition,
            "test",
            Processor::Plugin(runner),
            settings.error_policy(),
            store.clone() as Arc<dyn StateStore>,
            Arc::new(Outlet::kept()),
        )
        .with_time(spec.time.clone()),
        store: store.clone(),
        emits: Vec::new(),
        offset: 0,
        batches: 0,
        timers_fired: 0,
        expired: 0,
        late: 0,
    };
    let total = records.len();
    for (chunk_index, chunk) in records.chunks(spec.batch_size.max(1)).enumerate() {
        let first = (chunk_index * spec.batch_size.max(1)) as i64;
        let mut builder = BatchBuilder::new(&spec.topic, spec.partition);
        for (i, r) in chunk.iter().enumerate() {
            let headers = r.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_deref()));
            builder.push(
                first + i as i64,
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                headers,
            )?;
        }
        run.batch(builder.finish(None))?;
    }
    let watermark = run.exec.time.as_ref().and_then(|t| t.clock.watermark);
    if let Some(time) = &mut run.exec.time
        && spec.final_watermark
    {
        // The end of the input is the end of event time: every window closes.
        time.clock.watermark = Some(i64::MAX);
    }
    if run.exec.time.is_some() && spec.final_watermark {
        let mut rounds = 0;
        while !store.pending(&spec.topic, spec.partition).is_empty() && run.tick()? > 0 {
            rounds += 1;
            if rounds >= MAX_FINAL_BATCHES {
                anyhow::bail!(
                    "timers still firing after {MAX_FINAL_BATCHES} batches at the end of the \
                     input: does on-timers set timers that are already due?"
                );
            }
        }
    }
    let Run {
        emits,
        batches,
        timers_fired,
        expired,
        late,
        exec,
        ..
    } = run;
    let aside = exec.outlet.take_kept();
    let pending: Vec<Value> = store
        .pending(&spec.topic, spec.partition)
        .into_iter()
        .map(|(k, at)| {
            json!({
                "kind": match k.kind { TimeKind::Timer => "timer", TimeKind::Expiry => "expiry" },
                "domain": k.domain.as_str(),
                "key": k.key,
                "at": at,
            })
        })
        .collect();

    let state: Map<String, Value> = store
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, bytes_to_json(Some(&v))))
        .collect();
    let records_json = |records: &[OutputRecord]| -> Vec<Value> {
        records
            .iter()
            .map(|r| {
                let headers: Vec<Value> = r
                    .headers
                    .iter()
                    .map(|h| json!([h.name, bytes_to_json(h.value.as_deref())]))
                    .collect();
                json!({
                    "topic": r.topic,
                    "key": bytes_to_json(r.key.as_deref()),
                    "value": bytes_to_json(r.value.as_deref()),
                    "headers": headers,
                })
            })
            .collect()
    };
    let mut report = json!({
        "plugin": plugin.name(),
        "digest": format!("sha256:{}", plugin.digest()),
        "records": total,
        "batches": batches,
        "state_scope": spec.state_scope,
        "contract": plugin.contract_version(),
        "watermark": watermark,
        "timers_fired": timers_fired,
        "expired_keys": expired,
        "late_records": late,
        "pending": pending,
        "emits": records_json(&emits),
        "state": state,
    });
    // Late records for a side topic (`--late-records topic:NAME`), as Kafka would get them.
    if !aside.is_empty() {
        report["set_aside"] = Value::Array(records_json(&aside));
    }
    Ok(report)
}
