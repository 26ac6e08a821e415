//! The best-effort mirror of committed offsets to the Kafka consumer group (so standard
//! lag tools see progress): on Apache Kafka the group shows exactly Redis's offsets, to
//! librdkafka and to the Java client's Admin API alike; on librdkafka's mock cluster,
//! which can fail every Kafka commit, Redis stays the source of truth: a failing Kafka
//! commit changes nothing there and loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamhost_tests::http::request;
use streamhost_tests::java_consumer::group_offsets_java;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    Host, Redis, create_topic, free_port, produce, producer, wait_until,
};
use streamhost_tests::{expected_counts, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);
const N: usize = 2000;

/// The group's committed offsets of `topic` as Kafka has them (what kafka-consumer-groups
/// shows). Only an offset fetch: the consumer never joins the group.
fn kafka_committed(brokers: &str, group: &str, topic: &str) -> KafkaResult<BTreeMap<i32, i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|tpl| {
            tpl.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
}

/// `N` records in each of `topic`'s 2 partitions (the topic exists).
fn produce_words(brokers: &str, topic: &str) -> Vec<Vec<Vec<u8>>> {
    let p = producer(brokers);
    let parts = vec![text_values(31, N), text_values(32, N)];
    for (i, v) in parts.iter().enumerate() {
        produce(&p, topic, i as i32, v);
    }
    parts
}

fn run(
    brokers: &str,
    redis: &Redis,
    topic: &str,
    group: &str,
    extra: &[&str],
    cache: &std::path::Path,
) -> Host {
    let mut all = vec!["--partitions", "0,1", "--batch-max-records", "100"];
    all.extend_from_slice(extra);
    Host::spawn(&run_args(brokers, &redis.url(), topic, group, &all), cache)
}

#[test]
fn committed_offsets_reach_the_kafka_group_unless_turned_off() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, mirrored, quiet) = (unique("words"), unique("mirrored"), unique("quiet"));
    create_topic(&brokers, &words, 2);
    produce_words(&brokers, &words);
    let cache = tempfile::tempdir().expect("cache");
    let done: BTreeMap<i32, i64> = [(0, N as i64), (1, N as i64)].into();
    let mirrored_host = run(&brokers, &redis, &words, &mirrored, &[], cache.path());
    let quiet_host = run(
        &brokers,
        &redis,
        &words,
        &quiet,
        &["--no-kafka-commit"],
        cache.path(),
    );
    mirrored_host.wait_for(MINUTE, "Redis offsets at the end", || {
        redis.offsets(&mirrored, &words) == done
    });
    quiet_host.wait_for(MINUTE, "Redis offsets at the end", || {
        redis.offsets(&quiet, &words) == done
    });
    // Kafka keeps what the host commits: once mirrored, the group shows Redis's offsets
    // exactly, for every partition.
    wait_until(MINUTE, "the Kafka group to show the same offsets", || {
        kafka_committed(&brokers, &mirrored, &words).is_ok_and(|k| k == done)
    });
    assert_eq!(
        kafka_committed(&brokers, &mirrored, &words).expect("the group's committed offsets"),
        redis.offsets(&mirrored, &words),
        "the Kafka group mirrors Redis"
    );
    assert_eq!(
        kafka_committed(&brokers, &quiet, &words).expect("the group's committed offsets"),
        BTreeMap::new(),
        "--no-kafka-commit committed to Kafka"
    );
    // What lag tools built on the Java client read (Burrow, KEDA's Kafka scaler,
    // kafka-consumer-groups): Admin.listConsumerGroupOffsets, every partition the group
    // has an offset for. It shows Redis's offsets, and nothing of the quiet group.
    let in_redis: BTreeMap<(String, i32), i64> = redis
        .offsets(&mirrored, &words)
        .into_iter()
        .map(|(p, o)| ((words.clone(), p), o))
        .collect();
    assert_eq!(
        group_offsets_java(&brokers, &mirrored),
        in_redis,
        "the Java Admin's listConsumerGroupOffsets shows Redis's offsets"
    );
    assert_eq!(
        group_offsets_java(&brokers, &quiet),
        BTreeMap::new(),
        "--no-kafka-commit: the Java Admin shows no offsets"
    );
}

/// On the mock cluster: it can answer every offset commit with an error.
#[test]
fn a_failing_kafka_commit_changes_nothing_in_redis_and_loses_nothing() {
    let redis = Redis::start_in_memory();
    let mock = MockCluster::new(1).expect("mock cluster");
    // The mock is this test's own: its names need not be unique.
    mock.create_topic("words", 2, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let parts = produce_words(&brokers, "words");
    // Every offset commit to Kafka fails, with an error librdkafka does not retry.
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED; 1000],
    );
    let cache = tempfile::tempdir().expect("cache");
    let addr = format!("127.0.0.1:{}", free_port());
    let host = run(
        &brokers,
        &redis,
        "words",
        "g",
        &["--metrics-addr", &addr],
        cache.path(),
    );
    host.wait_for(MINUTE, "Redis offsets at the end", || {
        redis.offsets("g", "words") == [(0, N as i64), (1, N as i64)].into()
    });
    assert_eq!(
        redis.counts("g"),
        expected_counts(parts.iter().flatten()),
        "exactly-once state"
    );
    host.wait_for(MINUTE, "the failed mirror commits to be reported", || {
        host.log_text()
            .contains("mirroring committed offsets to the Kafka group failed")
    });
    let log = host.log_text();
    assert!(log.contains("nothing is lost"), "{log}");
    let metrics = request(&addr, "GET", "/metrics", None, b"")
        .expect("metrics")
        .text();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with(r#"streamhost_kafka_commit_failures_total{job="g"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        kafka_committed(&brokers, "g", "words")
            .expect("the group's committed offsets")
            .values()
            .all(|&o| o < N as i64),
        "no Kafka commit succeeded, so Kafka cannot show the end"
    );
}
