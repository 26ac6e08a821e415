//! Broker faults, injected with librdkafka's mock cluster (which keeps its data across a
//! broker going down and up): nothing is lost and no state is counted twice.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streamhost_tests::services::{Host, Redis, produce, producer, read_topic};
use streamhost_tests::{expected_counts, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

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
