//! Topics read as consumers read them: every partition from the beginning, assigned (no
//! group, nothing committed), with `read_committed` or `read_uncommitted`.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Which records a reader of a topic gets.
#[derive(Clone, Copy, Debug)]
pub enum Isolation {
    /// Records of committed transactions and records written outside any.
    ReadCommitted,
    /// Everything in the log, aborted and open transactions included.
    ReadUncommitted,
}

impl Isolation {
    fn level(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// A record as a consumer hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ConsumedRecord {
    /// The first header `name`'s value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)?
            .1
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A librdkafka consumer of every partition of a topic, from the beginning, with one
/// `isolation.level` (assigned, not in a group; it commits nothing). [`catch_up`] reads on
/// from where the last call stopped, so a test can poll it cheaply.
///
/// [`catch_up`]: TopicReader::catch_up
pub struct TopicReader {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
    records: Vec<ConsumedRecord>,
}

impl TopicReader {
    pub fn new(brokers: &str, topic: &str, isolation: Isolation) -> TopicReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", crate::kafka::unique("txn-log-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", isolation.level())
            .create()
            .expect("consumer");
        let partitions = partitions_of(&consumer, brokers, topic);
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        TopicReader {
            consumer,
            topic: topic.to_owned(),
            partitions,
            records: Vec::new(),
        }
    }

    /// Reads until the position in every partition reaches its end as of this call (for
    /// `read_committed` the last stable offset, for `read_uncommitted` the high
    /// watermark), or `timeout` passed: whether it got there.
    pub fn catch_up(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let ends: Vec<(i32, i64, i64)> = self
            .partitions
            .iter()
            .map(|&p| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("watermarks of {}/{p}: {e}", self.topic));
                (p, low, high)
            })
            .collect();
        loop {
            self.drain(Duration::from_millis(100));
            if self.reached(&ends) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// What was read so far; per partition in offset order.
    pub fn records(&self) -> &[ConsumedRecord] {
        &self.records
    }

    /// What was read, by partition then offset.
    pub fn into_records(self) -> Vec<ConsumedRecord> {
        let mut records = self.records;
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// Takes every message that is there, waiting up to `wait` for the first.
    fn drain(&mut self, wait: Duration) {
        let mut timeout = wait;
        while let Some(m) = self.consumer.poll(timeout) {
            let m = m.unwrap_or_else(|e| panic!("reading {}: {e}", self.topic));
            self.records.push(ConsumedRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
            timeout = Duration::ZERO;
        }
    }

    /// Whether the position in each partition is at its end in `ends` (partition, low,
    /// high). librdkafka moves the position past the control records (markers) it hands
    /// the application no message for.
    fn reached(&self, ends: &[(i32, i64, i64)]) -> bool {
        let positions = self.consumer.position().expect("positions");
        ends.iter().all(|&(p, low, high)| {
            let position = match positions.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            high <= low || position >= high
        })
    }
}

fn partitions_of(consumer: &BaseConsumer, brokers: &str, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic} at {brokers}: {e}"));
    let mut partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    partitions.sort_unstable();
    assert!(
        !partitions.is_empty(),
        "{topic} has no partitions at {brokers}"
    );
    partitions
}

/// What librdkafka's `read_committed` consumer delivers of `topic`: every partition read
/// from the beginning until the positions reach the last stable offsets and at least
/// `expected` records arrived, or `timeout` passed. By partition, then offset.
pub fn librdkafka_read_committed(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    librdkafka_read(brokers, topic, Isolation::ReadCommitted, expected, timeout)
}

/// The same with another `isolation.level` (`read_uncommitted`: up to the high
/// watermarks, records of aborted and open transactions included).
pub fn librdkafka_read(
    brokers: &str,
    topic: &str,
    isolation: Isolation,
    expected: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let mut reader = TopicReader::new(brokers, topic, isolation);
    loop {
        let at_end = reader.catch_up(deadline.saturating_duration_since(Instant::now()));
        if at_end && reader.records().len() >= expected {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "librdkafka ({isolation:?}): timed out after {timeout:?} with {} of {expected} records of {topic}",
                reader.records().len()
            );
            break;
        }
    }
    reader.into_records()
}

/// The partitions of `topic` that hold records of a transaction with no marker yet:
/// (partition, last stable offset, high watermark), the one below the other. The high
/// watermarks are read first: a gap then means a transaction still open when the last
/// stable offsets were read.
pub fn open_transactions(brokers: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let client = |isolation: Isolation| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("isolation.level", isolation.level())
            .create()
            .expect("watermarks client")
    };
    let (uncommitted, committed) = (
        client(Isolation::ReadUncommitted),
        client(Isolation::ReadCommitted),
    );
    let partitions = partitions_of(&uncommitted, brokers, topic);
    let watermark = |c: &BaseConsumer, p: i32| {
        c.fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
            .1
    };
    let high: Vec<i64> = partitions
        .iter()
        .map(|&p| watermark(&uncommitted, p))
        .collect();
    partitions
        .iter()
        .zip(high)
        .map(|(&p, high)| (p, watermark(&committed, p), high))
        .filter(|(_, stable, high)| stable < high)
        .collect()
}
