//! `host run` end to end: a real Apache Kafka broker, a real redis-server, the real host
//! binary with the wordcount plugin. State is compared with a count made here.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    Host, Redis, create_topic, produce, producer, read_topic, wait_until,
};
use streamhost_tests::{expected_counts, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn wordcount_in_a_consumer_group_with_emits() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, counted, wc) = (unique("words"), unique("counted"), unique("wc"));
    create_topic(&brokers, &words, 4);
    create_topic(&brokers, &counted, 1);
    let p = producer(&brokers);
    let mut all = Vec::new();
    for partition in 0..4 {
        let values = text_values(partition as u64 + 1, 300);
        produce(&p, &words, partition, &values);
        all.extend(values);
    }
    let expected = expected_counts(&all);
    let cache = tempfile::tempdir().unwrap();
    let extra = ["--config", "emit=true", "--output-topic", counted.as_str()];
    let mut host = Host::spawn(
        &run_args(&brokers, &redis.url(), &words, &wc, &extra),
        cache.path(),
    );

    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, 300)).collect();
    wait_until(MINUTE, "offsets at the partition ends", || {
        redis.offsets(&wc, &words) == ends
    });
    assert_eq!(redis.counts(&wc), expected);

    let word_count: i64 = expected.values().sum();
    let emitted = read_topic(&brokers, &counted, word_count as usize);
    assert_eq!(
        emitted.len() as i64,
        word_count,
        "one record per word, none twice"
    );
    let first = &emitted[0];
    let headers = first.headers().expect("source headers");
    let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
    for name in [
        "streamhost-source-topic",
        "streamhost-source-partition",
        "streamhost-source-from-offset",
    ] {
        assert!(names.contains(&name), "{names:?}");
    }

    host.signal(libc::SIGTERM);
    let status = host.wait(Duration::from_secs(30));
    assert!(
        status.success(),
        "clean stop exits 0: {status:?}\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("stopped cleanly"));
}

/// Kills the host with SIGKILL five times at random points of progress, restarts it each
/// time, and checks that the final state is exact: nothing lost, nothing counted twice.
#[test]
fn sigkill_at_random_moments_keeps_state_exact() {
    const PER_PARTITION: usize = 50_000;
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, wc) = (unique("words"), unique("wc"));
    create_topic(&brokers, &words, 4);
    let p = producer(&brokers);
    let mut all = Vec::new();
    for partition in 0..4 {
        let values = text_values(100 + partition as u64, PER_PARTITION);
        produce(&p, &words, partition, &values);
        all.extend(values);
    }
    let expected = expected_counts(&all);
    let total = (4 * PER_PARTITION) as i64;
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &wc,
        &["--partitions", "0,1,2,3"],
    );

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill points seeded with {seed}");
    let mut x = seed | 1;
    let progress = |r: &Redis| r.offsets(&wc, &words).values().sum::<i64>();
    for round in 0..5 {
        let host = Host::spawn(&args, cache.path());
        let before = progress(&redis);
        // Kill after a random share of what is left has been committed.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // A fast round may already have reached the end: then the kill lands on a host
        // that is starting up or idle, which is a moment worth killing at too.
        let share = ((total - before) as u64 / 6).max(1);
        let target = (before + 1 + (x % share) as i64).min(total);
        wait_until(MINUTE, "progress before the kill", || {
            progress(&redis) >= target
        });
        eprintln!("round {round}: killing at {} of {total}", progress(&redis));
        host.kill9();
    }
    let mut host = Host::spawn(&args, cache.path());
    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, PER_PARTITION as i64)).collect();
    wait_until(
        Duration::from_secs(180),
        "offsets at the partition ends",
        || redis.offsets(&wc, &words) == ends,
    );
    assert_eq!(redis.counts(&wc), expected, "exactly-once state");
    assert!(host.running());
}
