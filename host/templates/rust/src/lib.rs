//! {{name}}: a streamhost plugin. The host calls `process` once per batch of records of
//! one Kafka partition; state writes and emits are kept only if `process` returns `Ok`.

use std::cell::Cell;

use exports::streamhost::plugin::{handler, lifecycle};
use streamhost::plugin::types::{Batch, KeyDelta, OutputRecord, PluginError, StateOp};
use streamhost::plugin::{emit, log, state, types::Level};

wit_bindgen::generate!({ path: "wit", world: "plugin" });

thread_local! {
    static ECHO: Cell<bool> = const { Cell::new(false) };
}

struct Plugin;

impl lifecycle::Guest for Plugin {
    /// Runs once per instance with the job's `--config key=value` pairs.
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            match key.as_str() {
                "echo" => ECHO.set(value == "true"),
                other => return Err(format!("unknown config key {other:?}; known: echo")),
            }
        }
        Ok(())
    }
}

impl handler::Guest for Plugin {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let mut records = 0;
        let mut bytes = 0;
        let mut out = Vec::new();
        for record in &batch.records {
            // Keys and values are ranges (spans) of one buffer, `batch.data`.
            let Some(span) = record.value else { continue };
            let value = &batch.data[span.start as usize..(span.start + span.len) as usize];
            records += 1;
            bytes += value.len() as i64;
            if ECHO.get() {
                out.push(OutputRecord {
                    topic: None,
                    key: None,
                    value: Some(value.to_vec()),
                    headers: Vec::new(),
                });
            }
        }
        // One host call for all of the batch's state writes.
        state::apply(&[
            StateOp::Incr(KeyDelta { key: "records".into(), delta: records }),
            StateOp::Incr(KeyDelta { key: "bytes".into(), delta: bytes }),
        ]);
        if !out.is_empty() {
            emit::send(&out);
        }
        log::log(
            Level::Debug,
            &format!("{}/{}: {records} records", batch.topic, batch.partition),
        );
        Ok(())
    }
}

export!(Plugin);
