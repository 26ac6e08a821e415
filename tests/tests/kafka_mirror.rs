//! The best-effort mirror of committed offsets to the Kafka consumer group (so standard
//! lag tools see progress), on librdkafka's mock cluster. Redis stays the source of truth:
//! a failing Kafka commit changes nothing there and loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamhost_tests::http::request;
use streamhost_tests::services::{Host, Redis, free_port, produce, producer, wait_until};
use streamhost_tests::{expected_counts, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);
const N: usize = 2000;

/// The group's committed offsets as Kafka has them (what kafka-consumer-groups shows).
fn kafka_committed(brokers: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition("words", p);
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
        .unwrap_or_default()
}

fn setup() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Vec<Vec<Vec<u8>>>,
) {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("words", 2, 1).expect("topic");
    let p = producer(&mock.bootstrap_servers());
    let parts = vec![text_values(31, N), text_values(32, N)];
    for (i, v) in parts.iter().enumerate() {
        produce(&p, "words", i as i32, v);
    }
    (mock, parts)
}

fn run(brokers: &str, redis: &Redis, group: &str, extra: &[&str], cache: &std::path::Path) -> Host {
    let mut all = vec!["--partitions", "0,1", "--batch-max-records", "100"];
    all.extend_from_slice(extra);
    Host::spawn(
        &run_args(brokers, &redis.url(), "words", group, &all),
        cache,
    )
}

#[test]
fn committed_offsets_reach_the_kafka_group_unless_turned_off() {
    let redis = Redis::start_in_memory();
    let (mock, _) = setup();
    let brokers = mock.bootstrap_servers();
    let cache = tempfile::tempdir().expect("cache");
    let done: BTreeMap<i32, i64> = [(0, N as i64), (1, N as i64)].into();
    let mirrored = run(&brokers, &redis, "mirrored", &[], cache.path());
    let quiet = run(
        &brokers,
        &redis,
        "quiet",
        &["--no-kafka-commit"],
        cache.path(),
    );
    mirrored.wait_for(MINUTE, "Redis offsets at the end", || {
        redis.offsets("mirrored", "words") == done
    });
    quiet.wait_for(MINUTE, "Redis offsets at the end", || {
        redis.offsets("quiet", "words") == done
    });
    wait_until(MINUTE, "the Kafka group to show the same offsets", || {
        kafka_committed(&brokers, "mirrored") == done
    });
    assert!(
        kafka_committed(&brokers, "quiet").is_empty(),
        "--no-kafka-commit committed to Kafka"
    );
}

#[test]
fn a_failing_kafka_commit_changes_nothing_in_redis_and_loses_nothing() {
    let redis = Redis::start_in_memory();
    let (mock, parts) = setup();
    let brokers = mock.bootstrap_servers();
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
        kafka_committed(&brokers, "g")
            .values()
            .all(|&o| o < N as i64),
        "no Kafka commit succeeded, so Kafka cannot show the end"
    );
}
