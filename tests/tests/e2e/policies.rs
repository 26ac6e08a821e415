//! Error policies (`--on-error retry|dlq|skip|stop`) and Redis outages: a failed attempt
//! leaves nothing behind, and offsets never pass records that were not handled.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{Host, Redis, create_topic, produce, producer, read_topic};
use streamhost_tests::{expected_counts, host, plugin, plugin_run_args, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

/// A faulty-plugin job of group `g` over one partition of a new topic `words` holding
/// `values`.
fn faulty_job(
    redis: &Redis,
    brokers: &str,
    words: &str,
    g: &str,
    values: &[&str],
    extra: &[&str],
) -> Host {
    create_topic(brokers, words, 1);
    let v: Vec<Vec<u8>> = values.iter().map(|s| s.as_bytes().to_vec()).collect();
    produce(&producer(brokers), words, 0, &v);
    let mut e = vec!["--partitions", "0", "--retry-backoff-ms", "10"];
    e.extend_from_slice(extra);
    let args = plugin_run_args("faulty", brokers, &redis.url(), words, g, &e);
    let cache = tempfile::tempdir().unwrap();
    Host::spawn(&args, cache.path())
}

fn ok_count(redis: &Redis, g: &str) -> Option<i64> {
    redis.counts(g).get("ok").copied()
}

#[test]
fn a_retried_batch_keeps_nothing_of_its_failed_attempts() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    // The plugin writes state for "a" and "b", then fails the batch twice.
    let host = faulty_job(&redis, &brokers, &words, &g, &["a", "flaky", "b"], &[]);
    host.wait_for(MINUTE, "the batch to commit", || {
        redis.offsets(&g, &words).get(&0) == Some(&3)
    });
    assert_eq!(
        ok_count(&redis, &g),
        Some(2),
        "counted once, not once per attempt"
    );
    assert_eq!(host.log_text().matches("batch failed; retrying").count(), 2);
}

#[test]
fn retries_run_out_and_the_job_stops_naming_the_batch() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let mut host = faulty_job(
        &redis,
        &brokers,
        &words,
        &g,
        &["a", "retry"],
        &["--max-retries", "2"],
    );
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!("job {g}: batch {words}/0 offsets [0, 2) failed")),
        "{log}"
    );
    assert!(log.contains("gave up after 3 attempts"), "{log}");
    assert!(redis.offsets(&g, &words).is_empty());
    assert_eq!(ok_count(&redis, &g), None);
}

#[test]
fn stop_policy_stops_at_the_first_failure() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let mut host = faulty_job(
        &redis,
        &brokers,
        &words,
        &g,
        &["retry"],
        &["--on-error", "stop"],
    );
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    assert!(!host.log_text().contains("retrying"), "{}", host.log_text());
    assert!(redis.offsets(&g, &words).is_empty());
}

#[test]
fn poison_records_go_to_the_dead_letter_topic() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g, dead_topic) = (unique("words"), unique("g"), unique("dead"));
    create_topic(&brokers, &dead_topic, 1);
    let host = faulty_job(
        &redis,
        &brokers,
        &words,
        &g,
        &["a", "poison", "b"],
        &["--on-error", "dlq", "--dlq-topic", &dead_topic],
    );
    host.wait_for(MINUTE, "the batch to commit", || {
        redis.offsets(&g, &words).get(&0) == Some(&3)
    });
    assert_eq!(
        ok_count(&redis, &g),
        Some(2),
        "the batch ran again without the poison record"
    );
    let dead = read_topic(&brokers, &dead_topic, 1);
    assert_eq!(dead[0].payload(), Some(&b"poison"[..]));
    let headers: BTreeMap<String, String> = dead[0]
        .headers()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h.key.to_owned(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert!(
        headers["streamhost-error"].contains("marked record #1 of the batch as poison"),
        "{headers:?}"
    );
    assert_eq!(headers["streamhost-plugin"], "faulty");
    assert_eq!(headers["streamhost-plugin-digest"].len(), 64);
    assert_eq!(headers["streamhost-source-topic"], words);
    assert_eq!(headers["streamhost-source-partition"], "0");
    assert_eq!(headers["streamhost-source-offset"], "1");
    assert_eq!(headers["streamhost-attempts"], "1");
}

#[test]
fn poison_records_are_skipped_with_skip() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let host = faulty_job(
        &redis,
        &brokers,
        &words,
        &g,
        &["a", "poison", "b"],
        &["--on-error", "skip"],
    );
    host.wait_for(MINUTE, "the batch to commit", || {
        redis.offsets(&g, &words).get(&0) == Some(&3)
    });
    assert_eq!(ok_count(&redis, &g), Some(2));
    assert!(host.log_text().contains("skipping a poison record"));
}

#[test]
fn skip_drops_a_batch_that_keeps_failing_and_goes_on() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    // Batches of one record: the trap fails its own batch only, on a fresh instance each
    // time; the batch after it runs on yet another fresh instance.
    let host = faulty_job(
        &redis,
        &brokers,
        &words,
        &g,
        &["a", "trap", "b"],
        &[
            "--on-error",
            "skip",
            "--max-retries",
            "1",
            "--batch-max-records",
            "1",
        ],
    );
    host.wait_for(MINUTE, "all offsets", || {
        redis.offsets(&g, &words).get(&0) == Some(&3)
    });
    assert_eq!(ok_count(&redis, &g), Some(2));
    let log = host.log_text();
    assert!(
        log.contains("skipping the batch") && log.contains("from=1 until=2"),
        "{log}"
    );
}

#[test]
fn dlq_without_a_topic_is_refused_at_start() {
    let cache = tempfile::tempdir().unwrap();
    let wc = plugin("wordcount");
    let out = host(
        &[
            "--plugin",
            wc.to_str().unwrap(),
            "--topic",
            "t",
            "--on-error",
            "dlq",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dlq-topic"));
}

/// Two partitions of wordcount input in a new topic `words`; returns the values per
/// partition.
fn wordcount_input(brokers: &str, words: &str, per_partition: usize) -> [Vec<Vec<u8>>; 2] {
    create_topic(brokers, words, 2);
    let p = producer(brokers);
    let parts = [
        text_values(11, per_partition),
        text_values(12, per_partition),
    ];
    for (i, values) in parts.iter().enumerate() {
        produce(&p, words, i as i32, values);
    }
    parts
}

#[test]
fn redis_restarted_mid_run_loses_nothing() {
    let mut redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let parts = wordcount_input(&brokers, &words, 20_000);
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0,1", "--batch-max-records", "200"],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "some progress", || {
        redis.offsets(&g, &words).values().sum::<i64>() > 2000
    });
    redis.restart();
    host.wait_for(MINUTE, "all offsets", || {
        redis.offsets(&g, &words) == [(0, 20_000), (1, 20_000)].into()
    });
    assert_eq!(redis.counts(&g), expected_counts(parts.iter().flatten()));
    assert!(
        host.log_text().contains("commit failed; retrying"),
        "the outage was hit: {}",
        host.log_text()
    );
}

#[test]
fn redis_that_never_comes_back_stops_the_job_with_offsets_intact() {
    let mut redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let parts = wordcount_input(&brokers, &words, 20_000);
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &[
            "--partitions",
            "0,1",
            "--batch-max-records",
            "200",
            "--redis-give-up-ms",
            "1000",
        ],
    );
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "some progress", || {
        redis.offsets(&g, &words).values().sum::<i64>() > 2000
    });
    redis.stop();
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    assert!(
        host.log_text().contains("is unavailable"),
        "{}",
        host.log_text()
    );

    // Whatever was committed is exactly the prefix of each partition up to its offset.
    redis.restart();
    let offsets = redis.offsets(&g, &words);
    let done: Vec<&Vec<u8>> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, values)| {
            values
                .iter()
                .take(*offsets.get(&(p as i32)).unwrap_or(&0) as usize)
        })
        .collect();
    assert!(!done.is_empty());
    assert_eq!(redis.counts(&g), expected_counts(done));
}
