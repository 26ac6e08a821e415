//! The dead-letter topic: the headers a dead-lettered record carries (written by the
//! partition worker) and reading them back (the console's list, `host dlq`, replay).
//!
//! A dead letter is the failed record's key, value and headers, plus `streamhost-*`
//! headers saying where it came from and why it failed. Reading uses plain partition
//! assignment, no consumer group: nothing is committed to Kafka.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::topic_partition_list::TopicPartitionList;

/// The headers the host adds to a dead letter.
pub mod header {
    pub const ERROR: &str = "streamhost-error";
    pub const JOB: &str = "streamhost-job";
    pub const PLUGIN: &str = "streamhost-plugin";
    /// The plugin's file path, or `NAME@VERSION` in the registry.
    pub const PLUGIN_VERSION: &str = "streamhost-plugin-version";
    pub const PLUGIN_DIGEST: &str = "streamhost-plugin-digest";
    pub const SOURCE_TOPIC: &str = "streamhost-source-topic";
    pub const SOURCE_PARTITION: &str = "streamhost-source-partition";
    pub const SOURCE_OFFSET: &str = "streamhost-source-offset";
    pub const SOURCE_TIMESTAMP: &str = "streamhost-source-timestamp";
    pub const ATTEMPTS: &str = "streamhost-attempts";
}

/// How long one read of the dead-letter topic may take before it is reported as failing.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("cannot create a Kafka client to read dead-letter topic {topic}: {cause}")]
    Client {
        topic: String,
        cause: rdkafka::error::KafkaError,
    },
    #[error(
        "dead-letter topic {topic}: {cause}; check that it exists and that --brokers (and the \
         Kafka properties) reach the cluster"
    )]
    Metadata {
        topic: String,
        cause: rdkafka::error::KafkaError,
    },
    #[error("reading dead-letter topic {topic}/{partition} from offset {from}: {cause}")]
    Read {
        topic: String,
        partition: i32,
        from: i64,
        cause: String,
    },
}

/// One record of the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Where it is in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The failed record's own headers (the `streamhost-*` ones removed).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub error: String,
    /// The job that dead-lettered it (absent in dead letters of older releases).
    pub job: Option<String>,
    pub plugin: String,
    pub plugin_version: String,
    pub plugin_digest: String,
    /// Where the failed record was read from; `None` for a record without the headers (not
    /// written by a streamhost job), which cannot be replayed.
    pub source: Option<Source>,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
}

impl DeadLetter {
    fn from_message(m: &BorrowedMessage<'_>) -> DeadLetter {
        let mut own = Vec::new();
        let mut ours = std::collections::HashMap::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                if h.key.starts_with("streamhost-") {
                    ours.insert(
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    );
                } else {
                    own.push((h.key.to_owned(), h.value.map(<[u8]>::to_vec)));
                }
            }
        }
        let text = |name: &str| ours.get(name).cloned().unwrap_or_default();
        let number = |name: &str| ours.get(name).and_then(|v| v.parse::<i64>().ok());
        let source = match (
            ours.get(header::SOURCE_TOPIC),
            number(header::SOURCE_PARTITION),
            number(header::SOURCE_OFFSET),
        ) {
            (Some(topic), Some(partition), Some(offset)) => {
                i32::try_from(partition).ok().map(|partition| Source {
                    topic: topic.clone(),
                    partition,
                    offset,
                    timestamp_ms: number(header::SOURCE_TIMESTAMP),
                })
            }
            _ => None,
        };
        DeadLetter {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers: own,
            error: text(header::ERROR),
            job: ours.get(header::JOB).cloned(),
            plugin: text(header::PLUGIN),
            plugin_version: text(header::PLUGIN_VERSION),
            plugin_digest: text(header::PLUGIN_DIGEST),
            source,
            attempts: number(header::ATTEMPTS).unwrap_or(0).max(0) as u32,
        }
    }

    /// Whether `job` dead-lettered it (a dead letter without the job header, written by
    /// an older release, belongs to whoever reads the topic).
    pub fn is_of(&self, job: &str) -> bool {
        self.job.as_deref().is_none_or(|j| j == job)
    }
}

/// A partition of the dead-letter topic: its low and high watermarks.
#[derive(Debug, Clone, Copy)]
pub struct Extent {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// Reads a dead-letter topic, partition by partition.
pub struct DeadLetterReader {
    consumer: BaseConsumer<super::errors::QuietContext>,
    topic: String,
}

impl DeadLetterReader {
    pub fn new(
        brokers: &str,
        overrides: &[(String, String)],
        topic: &str,
    ) -> Result<Self, DeadLetterError> {
        let mut config = super::config::client_config(
            super::config::Client::Consumer,
            brokers,
            &[
                // librdkafka wants a group id for assign(); nothing is committed to it.
                ("group.id", "streamhost-dead-letter-reader"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                // The end of a partition is where a read stops.
                ("enable.partition.eof", "true"),
                ("fetch.wait.max.ms", "100"),
            ],
            overrides,
        );
        // A job's own group id in the properties must not be used: this is not the job.
        config.set("group.id", "streamhost-dead-letter-reader");
        let consumer = config
            .create_with_context(super::errors::QuietContext::default())
            .map_err(|cause| DeadLetterError::Client {
                topic: topic.to_owned(),
                cause,
            })?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Every partition of the topic with its watermarks.
    pub fn extents(&self, timeout: Duration) -> Result<Vec<Extent>, DeadLetterError> {
        let metadata_error = |cause| DeadLetterError::Metadata {
            topic: self.topic.clone(),
            cause,
        };
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(metadata_error)?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(Vec::new());
        };
        if let Some(e) = topic.error() {
            return Err(metadata_error(rdkafka::error::KafkaError::MetadataFetch(
                e.into(),
            )));
        }
        let mut extents = Vec::new();
        for p in topic.partitions() {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p.id(), timeout)
                .map_err(metadata_error)?;
            extents.push(Extent {
                partition: p.id(),
                low,
                high,
            });
        }
        extents.sort_by_key(|e| e.partition);
        Ok(extents)
    }

    /// `job`'s newest `limit` dead letters over every partition, newest first.
    pub fn newest(&self, job: &str, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let mut letters = Vec::new();
        for e in self.extents(READ_TIMEOUT)? {
            let from = (e.high - limit as i64).max(e.low);
            self.read(e.partition, from, |l| {
                if l.is_of(job) {
                    letters.push(l);
                }
                true
            })?;
        }
        letters.sort_by_key(|l| std::cmp::Reverse((l.timestamp_ms, l.offset)));
        letters.truncate(limit);
        Ok(letters)
    }

    /// Calls `each` with every record of `partition` from `from` to its end, in order;
    /// `each` returns false to stop early.
    ///
    /// The end is where the consumer reaches the partition's end (librdkafka's
    /// partition-EOF), not the high watermark asked for beforehand: some brokers answer
    /// that too low (tansu, for a last batch of several records), which would leave the
    /// newest dead letters out.
    pub fn read(
        &self,
        partition: i32,
        from: i64,
        mut each: impl FnMut(DeadLetter) -> bool,
    ) -> Result<(), DeadLetterError> {
        let read_error = |cause: String| DeadLetterError::Read {
            topic: self.topic.clone(),
            partition,
            from,
            cause,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(from))
            .map_err(|e| read_error(e.to_string()))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| read_error(e.to_string()))?;
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut next = from;
        loop {
            if Instant::now() >= deadline {
                return Err(read_error(format!(
                    "the end did not come within {READ_TIMEOUT:?} (read up to offset {next})"
                )));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                Some(Err(e)) => return Err(read_error(e.to_string())),
                Some(Ok(m)) => {
                    if m.partition() != partition || m.offset() < next {
                        continue;
                    }
                    next = m.offset() + 1;
                    if !each(DeadLetter::from_message(&m)) {
                        break;
                    }
                }
            }
        }
        // Unassign so that the next read starts clean.
        let _ = self.consumer.unassign();
        Ok(())
    }
}
