//! Broker faults: Apache Kafka itself SIGKILLed and restarted mid-run (its log stays on
//! disk), and request errors, an outage and latency injected with librdkafka's mock
//! cluster. Nothing is lost, no state is counted twice, and under exactly-once no emit is
//! published twice.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streamhost_tests::kafka::Kafka;
use streamhost_tests::reader::{Isolation, librdkafka_read};
use streamhost_tests::services::{Host, Redis, create_topic, produce, producer, read_topic};
use streamhost_tests::{expected_counts, plugin_run_args, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

/// How the job under test delivers its emits.
#[derive(Clone, Copy, Debug)]
enum Delivery {
    AtLeastOnce,
    ExactlyOnce,
}

/// The broker is SIGKILLed while the host runs (mid-batch, mid-produce, under exactly-once
/// mid-transaction) and restarted on the same log after a while; the host rides it out.
/// The echo plugin emits every input record once, so the output can be checked record
/// by record against the input.
fn broker_killed_and_restarted(delivery: Delivery) {
    const PARTITIONS: i32 = 4;
    const PER_PARTITION: usize = 20_000;
    let redis = Redis::start_in_memory();
    let mut kafka = Kafka::start();
    let brokers = kafka.brokers();
    create_topic(&brokers, "in", PARTITIONS);
    create_topic(&brokers, "out", PARTITIONS);
    let p = producer(&brokers);
    for partition in 0..PARTITIONS {
        let values: Vec<Vec<u8>> = (0..PER_PARTITION)
            .map(|i| format!("{partition}:{i}").into_bytes())
            .collect();
        produce(&p, "in", partition, &values);
    }
    drop(p);
    let total = PARTITIONS as usize * PER_PARTITION;
    let mut extra = vec![
        "--output-topic",
        "out",
        "--batch-max-records",
        "500",
        "--kafka-give-up-ms",
        "120000",
    ];
    if let Delivery::ExactlyOnce = delivery {
        extra.extend(["--delivery", "exactly-once"]);
    }
    let args = plugin_run_args("echo", &brokers, &redis.url(), "in", "g", &extra);
    let cache = tempfile::tempdir().unwrap();
    let host = Host::spawn(&args, cache.path());
    let committed = || redis.offsets("g", "in").values().sum::<i64>();
    host.wait_for(MINUTE, "some progress", || committed() >= 2_000);

    kafka.kill9();
    let at_kill = committed();
    host.wait_for(MINUTE, "a warning that names the broker", || {
        host.log_text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&brokers))
    });
    assert!(
        (at_kill as usize) < total,
        "the broker died mid-run ({at_kill} of {total} committed)"
    );
    kafka.restart();
    host.wait_for(3 * MINUTE, "every input record committed", || {
        committed() as usize == total
    });

    let isolation = match delivery {
        Delivery::AtLeastOnce => Isolation::ReadUncommitted,
        Delivery::ExactlyOnce => Isolation::ReadCommitted,
    };
    let out = librdkafka_read(&brokers, "out", isolation, total, MINUTE);
    let mut seen = std::collections::BTreeMap::<Vec<u8>, usize>::new();
    for m in &out {
        *seen.entry(m.value.clone().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(seen.len(), total, "every input record reached the output");
    let doubled = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "{delivery:?}: broker SIGKILLed at {at_kill} of {total} committed; output {} records, \
         {doubled} published more than once",
        out.len()
    );
    if let Delivery::ExactlyOnce = delivery {
        assert_eq!(doubled, 0, "exactly-once: no emit visible twice");
        assert_eq!(out.len(), total);
    }
    assert!(
        host.log_text()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .count()
            == 0,
        "a broker restart is no error: {}",
        host.log_text()
    );
}

#[test]
fn apache_kafka_sigkilled_and_restarted_loses_nothing_at_least_once() {
    broker_killed_and_restarted(Delivery::AtLeastOnce);
}

#[test]
fn apache_kafka_sigkilled_and_restarted_doubles_nothing_exactly_once() {
    broker_killed_and_restarted(Delivery::ExactlyOnce);
}

#[test]
fn broker_errors_outage_and_latency_lose_nothing() {
    let redis = Redis::start_in_memory();
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("words", 2, 1).expect("topic");
    mock.create_topic("out", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let p = producer(&brokers);
    let parts = [text_values(21, 3000), text_values(22, 3000)];
    for (i, v) in parts.iter().enumerate() {
        produce(&p, "words", i as i32, v);
    }
    let expected = expected_counts(parts.iter().flatten());

    // Fetch and Produce requests fail (retriable errors) and every answer is slow.
    let retriable = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5];
    mock.request_errors(RDKafkaApiKey::Fetch, &retriable);
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 5],
    );
    mock.broker_round_trip_time(1, Duration::from_millis(50))
        .expect("rtt");

    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        "words",
        "g",
        &[
            "--partitions",
            "0,1",
            "--batch-max-records",
            "100",
            "--config",
            "emit=true",
            "--output-topic",
            "out",
        ],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "some progress", || {
        redis.offsets("g", "words").values().sum::<i64>() >= 1000
    });

    // The broker goes away; the host notices, keeps its offsets, and goes on when it is back.
    mock.broker_down(1).expect("down");
    host.wait_for(MINUTE, "the host to notice the outage", || {
        host.log_text().contains("kafka:")
    });
    let during = redis.offsets("g", "words");
    mock.broker_up(1).expect("up");
    mock.broker_round_trip_time(1, Duration::ZERO).expect("rtt");

    host.wait_for(MINUTE, "every offset", || {
        redis.offsets("g", "words") == [(0, 3000), (1, 3000)].into()
    });
    assert!(
        during.values().sum::<i64>() < 6000,
        "the outage happened mid-run: {during:?}"
    );
    assert_eq!(redis.counts("g"), expected, "exactly-once state");

    // Emits are at least once; by their source headers they are exactly the words.
    let words: i64 = expected.values().sum();
    let out = read_topic(&brokers, "out", words as usize);
    let distinct: BTreeSet<(String, String, String)> = out
        .iter()
        .map(|m| {
            let h = m.headers().expect("source headers");
            let get = |name: &str| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            (
                get("streamhost-source-partition").unwrap_or_default(),
                get("streamhost-source-from-offset").unwrap_or_default(),
                get("streamhost-emit-index").unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        distinct.len() as i64,
        words,
        "every word emitted, duplicates only by replay"
    );
    assert!(out.iter().all(|m| m.payload() == Some(&b"1"[..])));
}
