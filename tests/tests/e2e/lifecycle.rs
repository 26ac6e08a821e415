//! Where a job starts, how it stops, what a failed batch leaves behind, and partitions
//! added to a topic while it runs.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    Host, Redis, create_topic, offsets_key, produce, producer, wait_until,
};
use streamhost_tests::{expected_counts, plugin_run_args, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

fn static_args(
    brokers: &str,
    redis: &Redis,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut e = vec!["--partitions", "0,1"];
    e.extend_from_slice(extra);
    run_args(brokers, &redis.url(), topic, group, &e)
}

/// Two partitions of 200 records each, produced to a fresh topic.
fn two_partitions(brokers: &str, topic: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    create_topic(brokers, topic, 2);
    let p = producer(brokers);
    let (a, b) = (text_values(1, 200), text_values(2, 200));
    produce(&p, topic, 0, &a);
    produce(&p, topic, 1, &b);
    (a, b)
}

fn ends(n: i64) -> BTreeMap<i32, i64> {
    [(0, n), (1, n)].into()
}

#[test]
fn restart_resumes_exactly_and_a_new_group_starts_over() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g1, g2) = (unique("words"), unique("g1"), unique("g2"));
    let (a, b) = two_partitions(&brokers, &words);
    let cache = tempfile::tempdir().unwrap();
    let args = static_args(&brokers, &redis, &words, &g1, &[]);

    let mut host = Host::spawn(&args, cache.path());
    wait_until(MINUTE, "the first run to finish", || {
        redis.offsets(&g1, &words) == ends(200)
    });
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());

    // More data while the job is stopped; the restart reads only that.
    let p = producer(&brokers);
    let (c, d) = (text_values(3, 50), text_values(4, 50));
    produce(&p, &words, 0, &c);
    produce(&p, &words, 1, &d);
    let mut host = Host::spawn(&args, cache.path());
    wait_until(MINUTE, "the second run to finish", || {
        redis.offsets(&g1, &words) == ends(250)
    });
    let all: Vec<Vec<u8>> = [a, b, c, d].concat();
    assert_eq!(
        redis.counts(&g1),
        expected_counts(&all),
        "nothing re-processed, nothing missed"
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success());

    // A new group (and so a new job) starts again from the reset position.
    let mut other = Host::spawn(
        &static_args(&brokers, &redis, &words, &g2, &[]),
        cache.path(),
    );
    wait_until(MINUTE, "the new group to finish", || {
        redis.offsets(&g2, &words) == ends(250)
    });
    assert_eq!(redis.counts(&g2), expected_counts(&all));
    assert_eq!(
        redis.counts(&g1),
        expected_counts(&all),
        "the old job's state is untouched"
    );
    other.signal(libc::SIGTERM);
    assert!(other.wait(MINUTE).success());
}

#[test]
fn reset_none_without_an_offset_is_an_error_naming_the_partition() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    two_partitions(&brokers, &words);
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(
        &static_args(&brokers, &redis, &words, &g, &["--offset-reset", "none"]),
        cache.path(),
    );
    let status = host.wait(MINUTE);
    assert_eq!(status.code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!(
            "no offset stored for group {g} topic {words} partition 0"
        )),
        "{log}"
    );
    assert!(
        log.contains(&offsets_key(&g, &g, &words)),
        "names the Redis key: {log}"
    );
    assert!(redis.offsets(&g, &words).is_empty());
}

#[test]
fn new_partitions_start_at_earliest_whatever_the_reset_policy() {
    // The job ran when the topic had one partition and stored its offset; the topic has
    // two now. Partition 1 is new to the job: it starts at earliest even with `latest`.
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    let (_a, b) = two_partitions(&brokers, &words);
    let _: () = redis::cmd("HSET")
        .arg(offsets_key(&g, &g, &words))
        .arg(0)
        .arg(200)
        .query(&mut redis.conn())
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(
        &static_args(&brokers, &redis, &words, &g, &["--offset-reset", "latest"]),
        cache.path(),
    );
    wait_until(MINUTE, "the new partition to be read", || {
        redis.offsets(&g, &words) == ends(200)
    });
    assert_eq!(
        redis.counts(&g),
        expected_counts(&b),
        "all of partition 1, none of partition 0 again"
    );
    assert!(host.log_text().contains(
        "no offset stored for this partition yet, though the group has offsets of other partitions"
    ));
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success());
}

/// `latest` needs a broker that answers ListOffsets(latest) correctly, as Apache Kafka
/// does.
#[test]
fn reset_latest_reads_only_new_records() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let p = producer(&brokers);
    produce(&p, &words, 0, &vec![b"old old".to_vec(); 100]);
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0", "--offset-reset", "latest"],
    );
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "the worker to start", || {
        host.log_text().contains("partition worker started")
    });
    // The position resolves to "latest" asynchronously: keep producing new records until
    // the host commits one. Records produced before it resolved are before "latest".
    let mut produced = 0i64;
    host.wait_for(MINUTE, "a new record to be committed", || {
        produce(&p, &words, 0, &[b"new".to_vec()]);
        produced += 1;
        redis.offsets(&g, &words).contains_key(&0)
    });
    host.wait_for(MINUTE, "every new record", || {
        redis.offsets(&g, &words).get(&0) == Some(&(100 + produced))
    });
    let counts = redis.counts(&g);
    assert_eq!(
        counts.get("old"),
        None,
        "nothing from before the start: {counts:?}"
    );
    assert!(
        (1..=produced).contains(counts.get("new").unwrap_or(&0)),
        "{counts:?}"
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success());
}

/// Apache Kafka answers a fetch past the end of the log with OFFSET_OUT_OF_RANGE, and the
/// reset policy then applies.
#[test]
fn stored_offset_out_of_range_applies_the_reset_policy() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let values = text_values(9, 100);
    produce(&producer(&brokers), &words, 0, &values);
    // The stored offset points past the log (say, the topic was recreated).
    let _: () = redis::cmd("HSET")
        .arg(offsets_key(&g, &g, &words))
        .arg(0)
        .arg(1_000_000)
        .query(&mut redis.conn())
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(
        &run_args(&brokers, &redis.url(), &words, &g, &["--partitions", "0"]),
        cache.path(),
    );
    host.wait_for(MINUTE, "the partition re-read from earliest", || {
        redis.offsets(&g, &words).get(&0) == Some(&100)
    });
    assert_eq!(redis.counts(&g), expected_counts(&values));
    assert!(
        host.log_text().contains("out of range"),
        "{}",
        host.log_text()
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success());
}

#[test]
fn a_failed_batch_stops_the_job_and_commits_nothing() {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let p = producer(&brokers);
    produce(
        &p,
        &words,
        0,
        &[b"fine".to_vec(), b"fine".to_vec(), b"fatal".to_vec()],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "faulty",
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0"],
    );
    let mut host = Host::spawn(&args, cache.path());
    let status = host.wait(MINUTE);
    assert_eq!(status.code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!("batch {words}/0 offsets [0, 3) failed")),
        "{log}"
    );
    assert!(
        log.contains("plugin faulty reported a fatal error: cannot go on"),
        "{log}"
    );
    assert!(redis.offsets(&g, &words).is_empty(), "nothing committed");
    assert!(redis.counts(&g).is_empty(), "no state written");
}

/// A faulty-plugin job on the shared broker, its first batch sleeping in the plugin;
/// returns the host, its topic and its group.
fn sleeping_job(redis: &Redis) -> (Host, String, String) {
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let p = producer(&brokers);
    produce(&p, &words, 0, &[b"sleep".to_vec(), b"after".to_vec()]);
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "faulty",
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0", "--batch-max-records", "1"],
    );
    let host = Host::spawn(&args, cache.path());
    wait_until(MINUTE, "the first batch to be in the plugin", || {
        host.log_text().contains("from=0 until=1")
    });
    (host, words, g)
}

#[test]
fn sigterm_finishes_the_batch_in_flight_then_exits_0() {
    let redis = Redis::start();
    let (mut host, words, g) = sleeping_job(&redis);
    host.signal(libc::SIGTERM);
    let status = host.wait(MINUTE);
    assert!(status.success(), "{status:?}: {}", host.log_text());
    assert_eq!(
        redis.offsets(&g, &words).get(&0),
        Some(&1),
        "the in-flight batch committed, no new one started"
    );
}

#[test]
fn a_second_signal_exits_at_once_without_committing() {
    let redis = Redis::start();
    let (mut host, words, g) = sleeping_job(&redis);
    host.signal(libc::SIGTERM);
    // Two signals sent back to back can merge into one: send the second once the first
    // has been seen.
    host.wait_for(MINUTE, "the first signal to be handled", || {
        host.log_text().contains("stopping")
    });
    host.signal(libc::SIGTERM);
    // 143 comes only from the immediate exit; a clean stop exits 0 after committing.
    let status = host.wait(MINUTE);
    assert_eq!(status.code(), Some(143), "{}", host.log_text());
    assert!(
        redis.offsets(&g, &words).is_empty(),
        "the batch in the plugin was not committed"
    );
}

/// Partitions added to a live topic (CreatePartitions) are picked up while the job runs,
/// from earliest, counts exact; under the classic protocol and under KIP-848.
fn partitions_added_while_running(protocol: &[&str]) {
    let kafka = Kafka::shared();
    let brokers = kafka.brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    let mut all = Vec::new();
    for partition in 0..2 {
        let values = text_values(40 + partition as u64, 200);
        produce(&p, &words, partition, &values);
        all.extend(values);
    }
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(
        &run_args(&brokers, &redis.url(), &words, &g, protocol),
        cache.path(),
    );
    host.wait_for(MINUTE, "the first two partitions", || {
        redis.offsets(&g, &words) == ends(200)
    });

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin client");
    let grown = futures::executor::block_on(
        admin.create_partitions([&NewPartitions::new(&words, 4)], &AdminOptions::new()),
    )
    .expect("create partitions");
    for r in grown {
        r.expect("partitions added");
    }
    // A new producer: the old one would learn of partitions 2 and 3 only at its next
    // metadata refresh.
    let p = producer(&brokers);
    for partition in 0..4 {
        let values = text_values(50 + partition as u64, 100);
        produce(&p, &words, partition, &values);
        all.extend(values);
    }
    let grown_ends: BTreeMap<i32, i64> = [(0, 300), (1, 300), (2, 100), (3, 100)].into();
    host.wait_for(
        MINUTE,
        "the new partitions read from their first record",
        || redis.offsets(&g, &words) == grown_ends,
    );
    assert_eq!(
        redis.counts(&g),
        expected_counts(&all),
        "nothing missed, nothing twice"
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());
}

#[test]
fn partitions_added_to_a_live_topic_are_read_from_earliest_classic_protocol() {
    partitions_added_while_running(&[]);
}

#[test]
fn partitions_added_to_a_live_topic_are_read_from_earliest_kip_848() {
    partitions_added_while_running(&["-X", "group.protocol=consumer"]);
}
