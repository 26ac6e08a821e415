//! Word count: splits each record value on Unicode whitespace, lowercases, and adds 1 per
//! word to the job state (key = word, value = count). With config `emit=true` it also
//! emits one record per word (key = word, value = "1").
//!
//! The words of a whole batch are added up locally and handed to the host in one
//! `state.apply` call, so a batch crosses the host boundary a constant number of times.

mod count;

use std::cell::Cell;
use std::collections::HashMap;

use exports::streamhost::plugin::{handler, lifecycle};
use streamhost::plugin::types::{Batch, KeyDelta, OutputRecord, PluginError, Span, StateOp};
use streamhost::plugin::{emit, state};

wit_bindgen::generate!({ path: "../../wit", world: "plugin" });

thread_local! {
    static EMIT: Cell<bool> = const { Cell::new(false) };
    /// `per-word-calls=true` calls the host once per word (`state.incr`): kept only so
    /// the benchmark can show what the bulk path saves.
    static PER_WORD_CALLS: Cell<bool> = const { Cell::new(false) };
}

struct Wordcount;

impl lifecycle::Guest for Wordcount {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            let flag = match value.as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                other => return Err(format!("config {key}={other}: expected true or false")),
            };
            match key.as_str() {
                "emit" => EMIT.set(flag),
                "per-word-calls" => PER_WORD_CALLS.set(flag),
                other => {
                    return Err(format!(
                        "unknown config key {other:?}; wordcount knows emit, per-word-calls"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl handler::Guest for Wordcount {
    fn process(batch: Batch) -> Result<(), PluginError> {
        if PER_WORD_CALLS.get() {
            return process_per_word(&batch);
        }
        let mut counts = HashMap::new();
        let mut out = Vec::new();
        let emit = EMIT.get();
        for record in &batch.records {
            let Some(value) = record.value.map(|s| bytes(&batch, s)) else {
                continue;
            };
            if emit {
                count::for_each_word(value, |word| out.push(word_record(word)));
            }
            count::count_words(value, &mut counts);
        }
        let ops: Vec<StateOp> = counts
            .into_iter()
            .map(|(key, delta)| StateOp::Incr(KeyDelta { key, delta }))
            .collect();
        state::apply(&ops);
        if !out.is_empty() {
            emit::send(&out);
        }
        Ok(())
    }
}

fn process_per_word(batch: &Batch) -> Result<(), PluginError> {
    for record in &batch.records {
        let Some(value) = record.value.map(|s| bytes(batch, s)) else {
            continue;
        };
        let mut failure = None;
        count::for_each_word(value, |word| {
            if failure.is_none() {
                if let Err(e) = state::incr(word, 1) {
                    failure = Some(e);
                }
                if EMIT.get() {
                    emit::send(&[word_record(word)]);
                }
            }
        });
        if let Some(e) = failure {
            return Err(PluginError::Fatal(e));
        }
    }
    Ok(())
}

/// The bytes of a record's key or value: a range of the batch's packed data.
fn bytes(batch: &Batch, span: Span) -> &[u8] {
    let start = span.start as usize;
    &batch.data[start..start + span.len as usize]
}

fn word_record(word: &str) -> OutputRecord {
    OutputRecord {
        topic: None,
        key: Some(word.as_bytes().to_vec()),
        value: Some(b"1".to_vec()),
        headers: Vec::new(),
    }
}

export!(Wordcount);
