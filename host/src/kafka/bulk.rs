//! A partition's fetch queue read many records per call.
//!
//! rust-rdkafka hands out one message per poll: a queue lock, an event and a wake-up per
//! record, about a microsecond each, which on a small machine is CPU the broker and the
//! plugin do not get. librdkafka's `rd_kafka_consume_batch_queue` moves up to a whole
//! batch's worth of messages out of the queue in one call; the host copies their bytes into
//! the batch and frees them. The queue is the one `split_partition_queue` detached from the
//! consumer's main queue (that `PartitionQueue` stays alive beside this handle), so the
//! records are the same ones, in the same order, with the same position tracking.

use std::ffi::{CStr, CString};
use std::os::raw::c_void;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::bindings as rd;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use super::consumer::SourceContext;

/// One partition's records as a partition worker reads them, and where it moves them: the
/// worker's boundary with Kafka (a list of records in its unit tests).
pub trait PartitionSource: Send {
    type Record: SourceRecord + Send;
    /// The next record, waiting at most `timeout` for it.
    fn consume_one(&mut self, timeout: Duration) -> Option<Self::Record>;
    /// Up to `max` records into `out`, waiting until there are `max` or `timeout` passed.
    fn consume(&mut self, timeout: Duration, max: usize, out: &mut Vec<Self::Record>);
    /// The next record read is the one at `to`; records read before are dropped.
    fn seek(&mut self, to: Offset) -> Result<(), KafkaError>;
    /// The partition's end offset as last seen, without asking the broker (for lag).
    fn end_offset(&self) -> Option<i64>;
}

/// One consumed record (or the error a consumer reports in its place).
pub trait SourceRecord {
    fn error(&self) -> Option<KafkaError>;
    fn offset(&self) -> i64;
    /// In ms (create or log-append time), if it has one.
    fn timestamp(&self) -> Option<i64>;
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    /// In order.
    fn headers(&self) -> Vec<(&[u8], Option<&[u8]>)>;
}

/// A partition of the job's consumer: its own queue, read in bulk.
pub struct KafkaPartition {
    topic: String,
    partition: i32,
    /// Detaches the partition's queue from the consumer's main queue while it lives.
    _queue: PartitionQueue<SourceContext>,
    bulk: BulkQueue,
    consumer: Arc<BaseConsumer<SourceContext>>,
}

impl KafkaPartition {
    pub fn open(
        consumer: &Arc<BaseConsumer<SourceContext>>,
        topic: &str,
        partition: i32,
    ) -> Result<Self, String> {
        let queue = consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| format!("cannot split off the queue of {topic}/{partition}"))?;
        let bulk = BulkQueue::new(consumer, topic, partition)
            .ok_or_else(|| format!("cannot open the queue of {topic}/{partition}"))?;
        Ok(Self {
            topic: topic.to_owned(),
            partition,
            _queue: queue,
            bulk,
            consumer: consumer.clone(),
        })
    }
}

impl PartitionSource for KafkaPartition {
    type Record = RawMessage;

    fn consume_one(&mut self, timeout: Duration) -> Option<RawMessage> {
        self.bulk.consume_one(timeout)
    }

    fn consume(&mut self, timeout: Duration, max: usize, out: &mut Vec<RawMessage>) {
        self.bulk.consume(timeout, max, out)
    }

    fn seek(&mut self, to: Offset) -> Result<(), KafkaError> {
        self.consumer
            .seek(&self.topic, self.partition, to, Duration::from_secs(10))
    }

    fn end_offset(&self) -> Option<i64> {
        let topic = CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (0i64, 0i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives; the call only
        // copies librdkafka's cached watermarks into the two out-parameters.
        let err = unsafe {
            rd::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }
}

/// The handle on one partition's fetch queue.
pub struct BulkQueue {
    queue: *mut rd::rd_kafka_queue_t,
    /// The queue belongs to the consumer's handle: keep the consumer alive while it is used.
    _consumer: Arc<BaseConsumer<SourceContext>>,
}

// SAFETY: librdkafka queues are thread-safe; the handle is only a reference count on one.
unsafe impl Send for BulkQueue {}

impl BulkQueue {
    pub fn new(
        consumer: &Arc<BaseConsumer<SourceContext>>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives (held in the struct);
        // the call returns a new reference on the partition's queue, or null.
        let queue = unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        (!queue.is_null()).then(|| Self {
            queue,
            _consumer: consumer.clone(),
        })
    }

    /// The next message, waiting at most `timeout` for it: returns as soon as one is there.
    pub fn consume_one(&self, timeout: Duration) -> Option<RawMessage> {
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the queue is valid while `self` lives; the message returned (or null) is
        // ours to destroy.
        let m = unsafe { rd::rd_kafka_consume_queue(self.queue, timeout_ms) };
        (!m.is_null()).then(|| RawMessage(m))
    }

    /// Moves up to `max` messages into `out`. librdkafka waits until it has `max` or
    /// `timeout` passed, not only for the first: a batch's linger, not a poll.
    pub fn consume(&self, timeout: Duration, max: usize, out: &mut Vec<RawMessage>) {
        if max == 0 {
            return;
        }
        let mut ptrs: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); max];
        let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `ptrs` has room for `max` pointers; librdkafka writes at most that many and
        // returns how many (or -1 on error, then none were written).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue, timeout_ms, ptrs.as_mut_ptr(), max)
        };
        if n <= 0 {
            return;
        }
        out.extend(
            ptrs[..n as usize]
                .iter()
                .filter(|p| !p.is_null())
                .map(|&p| RawMessage(p)),
        );
    }
}

impl Drop for BulkQueue {
    fn drop(&mut self) {
        // SAFETY: releases the reference taken in `new`, once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue) }
    }
}

/// One consumed message, owned until dropped.
pub struct RawMessage(*mut rd::rd_kafka_message_t);

// SAFETY: a consumed message is plain memory owned by this value until destroyed.
unsafe impl Send for RawMessage {}

impl RawMessage {
    fn get(&self) -> &rd::rd_kafka_message_t {
        // SAFETY: non-null (filtered in `consume`) and valid until `drop`.
        unsafe { &*self.0 }
    }

    fn bytes(ptr: *const c_void, len: usize) -> Option<&'static [u8]> {
        // SAFETY (for callers): librdkafka's key/payload pointers are valid for `len` bytes
        // while the message lives; the 'static is narrowed to `&self` by the callers.
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }
}

impl SourceRecord for RawMessage {
    /// The error this message carries instead of a record (as rust-rdkafka reports it).
    fn error(&self) -> Option<KafkaError> {
        let m = self.get();
        match m.err {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => None,
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
                Some(KafkaError::PartitionEOF(m.partition))
            }
            e => Some(KafkaError::MessageConsumption(e.into())),
        }
    }

    fn offset(&self) -> i64 {
        self.get().offset
    }

    /// The record's timestamp in ms (create or log-append time), if it has one.
    fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a valid message; `kind` is an out-parameter.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE).then_some(t)
    }

    fn key(&self) -> Option<&[u8]> {
        let m = self.get();
        Self::bytes(m.key, m.key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        let m = self.get();
        Self::bytes(m.payload, m.len)
    }

    /// The record's headers, in order.
    fn headers(&self) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: a valid message; librdkafka keeps ownership of the headers it returns.
        let err = unsafe { rd::rd_kafka_message_headers(self.0, &mut headers) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let mut name: *const std::os::raw::c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size: usize = 0;
            // SAFETY: `headers` is valid while the message lives; out-parameters only.
            let err = unsafe {
                rd::rd_kafka_header_get_all(headers, idx, &mut name, &mut value, &mut size)
            };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            // SAFETY: header names are NUL-terminated strings owned by the headers.
            let name = unsafe { CStr::from_ptr(name) }.to_bytes();
            out.push((name, Self::bytes(value, size)));
        }
        out
    }
}

impl Drop for RawMessage {
    fn drop(&mut self) {
        // SAFETY: destroys the message handed over by `rd_kafka_consume_batch_queue`, once.
        unsafe { rd::rd_kafka_message_destroy(self.0) }
    }
}
