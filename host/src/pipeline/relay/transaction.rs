//! One Kafka transaction of the relay: the outbox entries and the relay group's new
//! position, published together or not at all; and what each transaction error means
//! for what the relay does next (retry the call, abort and publish again, start a new
//! producer, or stop).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{ABORT_BACKOFF, CALL_SLICE, ENQUEUE_THREADS, Ended, Records, Relay, RelayProducer};
use crate::retry::{Limit, Retry};
use crate::store::redis::outbox::Entry;
use crate::sync::Locked;

/// A librdkafka error as the relay acts on it.
/// What librdkafka says a failed transactional call leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxnError {
    /// The producer can do nothing more (fenced, or a configuration error).
    Fatal,
    /// The transaction cannot commit: abort it, then publish again.
    Abortable,
    /// The same call may be made again.
    Retriable,
    /// None of these: whether the call took effect is not known.
    Unknown,
}

pub(super) fn classify(e: &KafkaError) -> TxnError {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => TxnError::Fatal,
        KafkaError::Transaction(t) if t.txn_requires_abort() => TxnError::Abortable,
        KafkaError::Transaction(t) if t.is_retriable() => TxnError::Retriable,
        KafkaError::Transaction(_) => TxnError::Unknown,
        // Errors from outside the transaction API (a timed-out wait) say nothing about
        // the transaction: the call may be repeated.
        _ => TxnError::Retriable,
    }
}

/// The broker lacks a transaction API (a Kafka before 0.11, a broker that never
/// implemented EndTxn): retrying cannot help.
fn unsupported(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature)
}

fn is_fence(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::TransactionCoordinatorFenced
        )
    )
}

enum TxnFailure {
    /// Abort, then publish the same entries again.
    Abortable(String),
    Ended(Ended),
}

impl Relay {
    /// Publishes `entries` and the position `until` in one transaction, repeating it
    /// after an abortable failure. Returns the records published.
    pub(super) fn transaction(
        &self,
        producer: &RelayProducer,
        cgm: &rdkafka::consumer::ConsumerGroupMetadata,
        entries: &[Entry],
        until: u64,
    ) -> Result<u64, Ended> {
        let stopping = || self.stopping();
        let mut retry = Retry::new(ABORT_BACKOFF, Limit::Never, &stopping);
        loop {
            let started = Instant::now();
            let outcome = self
                .records(entries)
                .map_err(TxnFailure::Ended)
                .and_then(|r| self.try_transaction(producer, cgm, r, until));
            tracing::debug!(partition = %self.where_(), took_ms = started.elapsed().as_millis() as u64, "exactly-once relay: transaction time");
            match outcome {
                Ok(n) => return Ok(n),
                Err(TxnFailure::Ended(e)) => return Err(e),
                Err(TxnFailure::Abortable(why)) => {
                    self.abort(producer)?;
                    let announce = |pause| tracing::warn!(partition = %self.where_(), entries = entries.len(), error = %why, "exactly-once relay: transaction aborted; publishing the entries again in {pause:?}");
                    if retry.again(announce).is_err() {
                        return Err(Ended::Stopped);
                    }
                }
            }
        }
    }

    pub(super) fn ended(&self, what: &str, e: &KafkaError) -> Ended {
        if is_fence(e) {
            Ended::Fenced(format!("{what}: {e}"))
        } else if self.stopping() {
            Ended::Stopped
        } else {
            Ended::Restart(format!("{what}: {e}"))
        }
    }

    /// The Kafka records of `entries`, in order.
    fn records<'a>(&'a self, entries: &'a [Entry]) -> Result<Records<'a>, Ended> {
        let mut out = Vec::with_capacity(entries.iter().map(|e| e.records.len()).sum());
        for entry in entries {
            for record in &entry.records {
                let topic = match (&record.topic, &self.settings.output_topic) {
                    (Some(t), _) => t.as_str(),
                    (None, Some(t)) => t.as_str(),
                    // The worker refuses such a batch before its commit.
                    (None, None) => {
                        return Err(Ended::Fatal(format!(
                            "outbox entry {} of {} holds a record without a topic and the \
                             job has no --output-topic; start the job with the output topic \
                             it had",
                            entry.seq,
                            self.where_()
                        )));
                    }
                };
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for h in &record.headers {
                    headers = headers.insert(KafkaHeader {
                        key: &h.name,
                        value: h.value.as_deref(),
                    });
                }
                let mut kafka = BaseRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(k) = &record.key {
                    kafka = kafka.key(k.as_slice());
                }
                if let Some(v) = &record.value {
                    kafka = kafka.payload(v.as_slice());
                }
                out.push(kafka);
            }
        }
        Ok(out)
    }

    fn try_transaction(
        &self,
        producer: &RelayProducer,
        cgm: &rdkafka::consumer::ConsumerGroupMetadata,
        records: Records<'_>,
        until: u64,
    ) -> Result<u64, TxnFailure> {
        producer
            .begin_transaction()
            .map_err(|e| TxnFailure::Ended(self.ended("beginning a transaction", &e)))?;
        let failed_before = producer.context().failed.load(Ordering::SeqCst);
        let count = records.len() as u64;
        // Handing records to librdkafka is the costly part of the lane: two threads share
        // it. A key's records all go to one thread, in order, so each key keeps its order
        // (records without a key, too, among themselves).
        let mut lanes: [Records<'_>; ENQUEUE_THREADS] = Default::default();
        for record in records {
            let lane = record.key.map_or(0, |k| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut h);
                h.finish() as usize % ENQUEUE_THREADS
            });
            lanes[lane].push(record);
        }
        let enqueue = |records: Records<'_>| -> Result<(), KafkaError> {
            for mut record in records {
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            // The producer's own thread drains the queue.
                            std::thread::sleep(Duration::from_millis(1));
                            record = back;
                        }
                        Err((e, _)) => return Err(e),
                    }
                }
            }
            Ok(())
        };
        let [first, second] = lanes;
        let (a, b) = std::thread::scope(|scope| {
            let other = scope.spawn(|| enqueue(second));
            let mine = enqueue(first);
            (mine, other.join().unwrap_or(Err(KafkaError::Canceled)))
        });
        if let Err(e) = a.and(b) {
            return Err(self.failed("producing", e));
        }
        let sent = Instant::now();
        loop {
            match producer.flush(CALL_SLICE) {
                Ok(()) => break,
                Err(e) if self.stopping() => return Err(self.failed("producing", e)),
                // The slice passed with records still in flight: wait on.
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => continue,
                Err(e) => return Err(self.failed("producing", e)),
            }
        }
        if producer.context().failed.load(Ordering::SeqCst) != failed_before {
            let why = producer
                .context()
                .last_failure
                .locked()
                .clone()
                .unwrap_or_default();
            return Err(TxnFailure::Abortable(format!("producing: {why}")));
        }
        let records = count;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(until as i64))
            .map_err(|e| TxnFailure::Ended(Ended::Fatal(format!("position {until}: {e}"))))?;
        loop {
            match producer.send_offsets_to_transaction(&tpl, cgm, CALL_SLICE) {
                Ok(()) => break,
                Err(e) if unsupported(&e) => return Err(self.no_transactions(&e)),
                Err(e) => match classify(&e) {
                    TxnError::Retriable if !self.stopping() => continue,
                    _ => return Err(self.failed("adding the position to the transaction", e)),
                },
            }
        }
        let acked = Instant::now();
        loop {
            match producer.commit_transaction(CALL_SLICE) {
                Ok(()) => {
                    tracing::debug!(partition = %self.where_(), acks_ms = (acked - sent).as_millis() as u64, commit_ms = acked.elapsed().as_millis() as u64, "exactly-once relay: transaction steps");
                    return Ok(records);
                }
                Err(e) if unsupported(&e) => return Err(self.no_transactions(&e)),
                // In doubt: the same call again finds out (librdkafka keeps its state).
                Err(e) => match classify(&e) {
                    TxnError::Retriable if !self.stopping() => {
                        tracing::debug!(partition = %self.where_(), error = %e, "commit_transaction: retrying");
                        // Some answers come back at once: without a pause this would spin.
                        if !self.pause(Duration::from_millis(50)) {
                            return Err(TxnFailure::Ended(Ended::Stopped));
                        }
                    }
                    // librdkafka says the transaction did not commit: abort, publish again.
                    TxnError::Abortable => {
                        return Err(TxnFailure::Abortable(format!("committing: {e}")));
                    }
                    // Anything else may have committed: only the position the broker
                    // holds says, so a new producer reads it before publishing more.
                    _ => {
                        return Err(TxnFailure::Ended(
                            self.ended("committing the transaction", &e),
                        ));
                    }
                },
            }
        }
    }

    fn no_transactions(&self, e: &KafkaError) -> TxnFailure {
        TxnFailure::Ended(Ended::Fatal(format!(
            "the Kafka at {} does not support transactions ({e}); --delivery exactly-once \
             needs a broker that does (Kafka 0.11 or later). What {} committed is kept in \
             its outbox: run the job with a broker that has transactions to publish it",
            self.settings.brokers,
            self.where_()
        )))
    }

    fn failed(&self, what: &str, e: KafkaError) -> TxnFailure {
        match classify(&e) {
            TxnError::Fatal => TxnFailure::Ended(self.ended(what, &e)),
            _ if is_fence(&e) => TxnFailure::Ended(Ended::Fenced(format!("{what}: {e}"))),
            _ if self.stopping() => TxnFailure::Ended(Ended::Stopped),
            _ => TxnFailure::Abortable(format!("{what}: {e}")),
        }
    }

    fn abort(&self, producer: &RelayProducer) -> Result<(), Ended> {
        loop {
            match producer.abort_transaction(CALL_SLICE) {
                Ok(()) => return Ok(()),
                Err(e) => match classify(&e) {
                    TxnError::Retriable if !self.stopping() => {
                        // Some answers come back at once: without a pause this would spin.
                        if !self.pause(Duration::from_millis(50)) {
                            return Err(Ended::Stopped);
                        }
                    }
                    _ => return Err(self.ended("aborting the transaction", &e)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_errors_decide_what_the_relay_does_next() {
        use rdkafka::types::RDKafkaErrorCode as C;
        // (librdkafka's transaction errors cannot be made outside it; their codes can.)
        let txn = KafkaError::MessageProduction;
        assert!(matches!(
            classify(&KafkaError::Canceled),
            TxnError::Retriable
        ));
        assert!(is_fence(&txn(C::ProducerFenced)));
        assert!(is_fence(&txn(C::InvalidProducerEpoch)));
        assert!(!is_fence(&txn(C::OperationTimedOut)));
        assert!(unsupported(&txn(C::UnsupportedFeature)));
        assert!(!unsupported(&txn(C::ProducerFenced)));
    }
}
