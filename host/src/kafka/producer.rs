//! Producing a batch's emitted records to Kafka, and waiting until the broker has them.
//!
//! The producer is idempotent with `acks=all`. A batch's records are all sent, then all
//! acknowledgements awaited; only then may the batch commit. A failure fails the batch:
//! records already delivered stay (emits are at-least-once) and carry source headers
//! that let consumers drop the duplicates of a retried batch.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::errors::QuietContext;
use crate::contract::streamhost::plugin::types::OutputRecord;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "the plugin emitted {count} record(s) without a topic, but the job has no output \
         topic; pass --output-topic or emit to a named topic"
    )]
    NoOutputTopic { count: usize },
    #[error("producing to topic {topic}: {cause}")]
    Produce { topic: String, cause: KafkaError },
    #[error(
        "the host may not write to topic {topic} ({cause}): grant its principal Write on \
         Topic {topic} (kafka-acls --add --allow-principal User:... --operation Write \
         --topic {topic}; docs/operating.md, \"ACLs a job needs\")"
    )]
    NotAuthorized { topic: String, cause: KafkaError },
    #[error("the producer was closed before topic {topic} acknowledged a record")]
    Canceled { topic: String },
    #[error("cannot create the Kafka producer: {0}")]
    Config(KafkaError),
}

impl SinkError {
    fn produce(topic: &str, cause: KafkaError) -> Self {
        let topic = topic.to_owned();
        match cause.rdkafka_error_code() {
            Some(RDKafkaErrorCode::TopicAuthorizationFailed) => {
                SinkError::NotAuthorized { topic, cause }
            }
            _ => SinkError::Produce { topic, cause },
        }
    }

    /// Whether a retry cannot help: the job's configuration or the cluster's ACLs must
    /// change first.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SinkError::NoOutputTopic { .. }
                | SinkError::NotAuthorized { .. }
                | SinkError::Config(_)
        )
    }
}

/// Hands one emitted record to `producer` for `topic`, waiting while its local queue is
/// full. The delivery future says when the broker has it.
pub fn send<C: rdkafka::ClientContext + 'static>(
    producer: &FutureProducer<C>,
    record: &OutputRecord,
    topic: &str,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for h in &record.headers {
        headers = headers.insert(KafkaHeader {
            key: &h.name,
            value: h.value.as_deref(),
        });
    }
    let mut kafka = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(k) = &record.key {
        kafka = kafka.key(k.as_slice());
    }
    if let Some(v) = &record.value {
        kafka = kafka.payload(v.as_slice());
    }
    loop {
        match producer.send_result(kafka) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The local queue is full: let deliveries drain, then retry.
                producer.poll(Duration::from_millis(20));
                kafka = back;
            }
            Err((cause, _)) => return Err(cause),
        }
    }
}

pub struct Sink {
    producer: FutureProducer<QuietContext>,
    output_topic: Option<String>,
}

impl Sink {
    pub fn new(
        brokers: &str,
        overrides: &[(String, String)],
        output_topic: Option<String>,
    ) -> Result<Self, SinkError> {
        let config = super::config::client_config(
            super::config::Client::Producer,
            brokers,
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "5"),
                ("message.timeout.ms", "60000"),
            ],
            overrides,
        );
        let producer = config
            .create_with_context(QuietContext::default())
            .map_err(SinkError::Config)?;
        Ok(Self {
            producer,
            output_topic,
        })
    }

    /// Every record has a topic: its own, or the job's output topic.
    pub fn check_topics(&self, records: &[OutputRecord]) -> Result<(), SinkError> {
        if self.output_topic.is_none() {
            let count = records.iter().filter(|r| r.topic.is_none()).count();
            if count > 0 {
                return Err(SinkError::NoOutputTopic { count });
            }
        }
        Ok(())
    }

    /// Sends every record and returns once all are acknowledged.
    pub fn send(&self, records: &[OutputRecord]) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        self.check_topics(records)?;
        let mut pending = Vec::with_capacity(records.len());
        for record in records {
            let topic = match (&record.topic, &self.output_topic) {
                (Some(t), _) => t.as_str(),
                (None, Some(t)) => t.as_str(),
                (None, None) => unreachable!("checked above"),
            };
            let delivery = send(&self.producer, record, topic)
                .map_err(|cause| SinkError::produce(topic, cause))?;
            pending.push((topic, delivery));
        }
        let (topics, futures): (Vec<&str>, Vec<_>) = pending.into_iter().unzip();
        let results = futures::executor::block_on(join_all(futures));
        for (topic, result) in topics.into_iter().zip(results) {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((cause, _))) => return Err(SinkError::produce(topic, cause)),
                Err(_) => {
                    return Err(SinkError::Canceled {
                        topic: topic.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits for outstanding deliveries (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush at shutdown");
        }
    }
}

/// Where a batch's records go (emits, dead letters, late records): Kafka, or, where there
/// is no Kafka (`host test`, unit tests), kept in memory in the order sent.
pub enum Outlet {
    Kafka(Sink),
    Kept(std::sync::Mutex<Vec<OutputRecord>>),
}

impl Outlet {
    pub fn kept() -> Self {
        Outlet::Kept(Default::default())
    }

    /// Sends `records` and waits for the broker's acknowledgements (Kafka).
    pub fn send(&self, records: &[OutputRecord]) -> Result<(), SinkError> {
        match self {
            Outlet::Kafka(sink) => sink.send(records),
            Outlet::Kept(kept) => {
                crate::sync::Locked::locked(kept).extend(records.iter().cloned());
                Ok(())
            }
        }
    }

    /// Refuses records that would have no topic (see [`Sink::check_topics`]).
    pub fn check_topics(&self, records: &[OutputRecord]) -> Result<(), SinkError> {
        match self {
            Outlet::Kafka(sink) => sink.check_topics(records),
            Outlet::Kept(_) => Ok(()),
        }
    }

    /// What was kept so far (nothing for Kafka), taken out.
    pub fn take_kept(&self) -> Vec<OutputRecord> {
        match self {
            Outlet::Kafka(_) => Vec::new(),
            Outlet::Kept(kept) => std::mem::take(&mut *crate::sync::Locked::locked(kept)),
        }
    }

    pub fn flush(&self, timeout: std::time::Duration) {
        if let Outlet::Kafka(sink) = self {
            sink.flush(timeout);
        }
    }
}
