//! `host test`: runs a plugin over a file with no Kafka and no Redis, the plugin author's
//! inner loop. It goes through the same runtime, effects buffer and fenced commit as the
//! real pipeline, with the in-memory store in place of Redis.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value, json};

use crate::batch::BatchBuilder;
use crate::batch::effects::stamped_emits;
use crate::runtime::{InstanceSettings, Plugin, Runner};
use crate::store::memory::MemoryStore;
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

    let mut emits = Vec::new();
    let mut batches = 0usize;
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
        let batch = builder.finish(None);
        let (from_offset, until_offset) = (batch.from_offset, batch.until_offset);
        let range = format!(
            "{}/{} offsets [{from_offset}, {until_offset})",
            spec.topic, spec.partition
        );
        tracing::debug!(topic = %spec.topic, partition = spec.partition, from_offset, until_offset, "batch");
        let effects = runner
            .process(&batch)
            .with_context(|| format!("batch {range} failed"))?;
        let outcome = store
            .commit(&Commit {
                topic: &spec.topic,
                partition: spec.partition,
                expected: (from_offset > 0).then_some(from_offset),
                from_offset,
                until_offset,
                writes: &effects.state,
            })
            .with_context(|| format!("committing batch {range}"))?;
        if outcome != CommitOutcome::Committed {
            anyhow::bail!("commit of batch {range} was fenced: {outcome:?}");
        }
        emits.extend(stamped_emits(
            effects.emits,
            &spec.topic,
            spec.partition,
            from_offset,
            until_offset,
        ));
        batches += 1;
    }

    let state: Map<String, Value> = store
        .snapshot()
        .into_iter()
        .map(|(k, v)| (k, bytes_to_json(Some(&v))))
        .collect();
    let emits: Vec<Value> = emits
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
        .collect();
    Ok(json!({
        "plugin": plugin.name(),
        "digest": format!("sha256:{}", plugin.digest()),
        "records": total,
        "batches": batches,
        "state_scope": spec.state_scope,
        "emits": emits,
        "state": state,
    }))
}
