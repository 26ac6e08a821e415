//! Plugins built against contract 0.1.0: their imports lead to the same host functions as
//! the current contract's, and their batch is the current batch without the fields 0.1.0
//! does not have (event times, watermark, processing time). The conversions move the
//! batch's bytes rather than copy them.

use crate::batch::Batch;
use crate::contract::streamhost::plugin::types as now;
use crate::contract::v0_1::streamhost::plugin::types as old;
use crate::contract::v0_1::streamhost::plugin::types::PluginError;
use crate::contract::v0_1::streamhost::plugin::{emit, log, state, types};

use super::host_api::HostState;

/// Lends a batch to a 0.1.0 plugin: its byte buffer moves into the old batch and back.
pub(crate) fn with_old_batch<T>(batch: &mut Batch, f: impl FnOnce(&old::Batch) -> T) -> T {
    let span = |s: now::Span| old::Span {
        start: s.start,
        len: s.len,
    };
    let lent = old::Batch {
        topic: std::mem::take(&mut batch.topic),
        partition: batch.partition,
        from_offset: batch.from_offset,
        until_offset: batch.until_offset,
        data: std::mem::take(&mut batch.data),
        records: batch
            .records
            .iter()
            .map(|r| old::KafkaRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(span),
                value: r.value.map(span),
                first_header: r.first_header,
                header_count: r.header_count,
            })
            .collect(),
        headers: batch
            .headers
            .iter()
            .map(|h| old::RecordHeader {
                name: span(h.name),
                value: h.value.map(span),
            })
            .collect(),
    };
    let out = f(&lent);
    batch.topic = lent.topic;
    batch.data = lent.data;
    out
}

pub(crate) fn plugin_error(e: PluginError) -> now::PluginError {
    match e {
        PluginError::Retryable(m) => now::PluginError::Retryable(m),
        PluginError::Fatal(m) => now::PluginError::Fatal(m),
        PluginError::Poison(p) => now::PluginError::Poison(now::PoisonRecord {
            index: p.index,
            message: p.message,
        }),
    }
}

fn output_record(r: old::OutputRecord) -> now::OutputRecord {
    now::OutputRecord {
        topic: r.topic,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| now::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
    }
}

fn state_op(op: old::StateOp) -> now::StateOp {
    match op {
        old::StateOp::Set(kv) => now::StateOp::Set(now::KeyValue {
            key: kv.key,
            value: kv.value,
        }),
        old::StateOp::Delete(k) => now::StateOp::Delete(k),
        old::StateOp::Incr(kd) => now::StateOp::Incr(now::KeyDelta {
            key: kd.key,
            delta: kd.delta,
        }),
    }
}

impl types::Host for HostState {}

impl emit::Host for HostState {
    fn send(&mut self, records: Vec<old::OutputRecord>) -> wasmtime::Result<()> {
        let records = records.into_iter().map(output_record).collect();
        crate::contract::streamhost::plugin::emit::Host::send(self, records)
    }
}

impl state::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        crate::contract::streamhost::plugin::state::Host::get(self, key)
    }

    fn get_many(&mut self, keys: Vec<String>) -> wasmtime::Result<Vec<Option<Vec<u8>>>> {
        crate::contract::streamhost::plugin::state::Host::get_many(self, keys)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        crate::contract::streamhost::plugin::state::Host::set(self, key, value)
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        crate::contract::streamhost::plugin::state::Host::delete(self, key)
    }

    fn incr(&mut self, key: String, delta: i64) -> wasmtime::Result<Result<i64, String>> {
        crate::contract::streamhost::plugin::state::Host::incr(self, key, delta)
    }

    fn apply(&mut self, ops: Vec<old::StateOp>) -> wasmtime::Result<()> {
        let ops = ops.into_iter().map(state_op).collect();
        crate::contract::streamhost::plugin::state::Host::apply(self, ops)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: old::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            old::Level::Trace => now::Level::Trace,
            old::Level::Debug => now::Level::Debug,
            old::Level::Info => now::Level::Info,
            old::Level::Warn => now::Level::Warn,
            old::Level::Error => now::Level::Error,
        };
        crate::contract::streamhost::plugin::log::Host::log(self, level, message)
    }
}
