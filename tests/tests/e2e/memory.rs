//! Bounded memory: a 10 MiB record and a million tiny records both run with the host's
//! peak resident memory under a bound (the figures are in docs/operating.md).

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::run_args;
use streamhost_tests::services::{Host, Redis, create_topic, create_topic_with, produce, producer};

const MINUTE: Duration = Duration::from_secs(60);
/// The bound asserted for both cases (documented in docs/operating.md).
const RSS_BOUND_KB: u64 = 256 * 1024;

/// Peak resident set size of a process, from /proc.
fn peak_rss_kb(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_ten_mib_record_runs_in_bounded_memory() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    // Apache Kafka refuses a record over `max.message.bytes` (~1 MiB unless the topic
    // says otherwise).
    create_topic_with(&brokers, &words, 1, &[("max.message.bytes", "20000000")]);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "20000000")
        .create()
        .expect("producer");
    let mut big = "ten mebibytes of words "
        .repeat(10 * 1024 * 1024 / 23)
        .into_bytes();
    big.truncate(10 * 1024 * 1024);
    let delivery = p
        .send_result(
            FutureRecord::<(), [u8]>::to(&words)
                .partition(0)
                .payload(&big),
        )
        .map_err(|(e, _)| e);
    futures::executor::block_on(delivery.expect("queued"))
        .expect("delivered")
        .expect("acknowledged");
    p.flush(Duration::from_secs(30)).expect("flush");
    produce(&producer(&brokers), &words, 0, &[b"after".to_vec()]);

    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0", "--plugin-memory-mb", "128"],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "both records", || {
        redis.offsets(&g, &words).get(&0) == Some(&2)
    });
    assert_eq!(
        redis.counts(&g).get("mebibytes").copied(),
        Some(10 * 1024 * 1024 / 23)
    );
    let peak = peak_rss_kb(host.pid());
    eprintln!("peak RSS with a 10 MiB record: {} MiB", peak / 1024);
    assert!(peak < RSS_BOUND_KB, "peak RSS {peak} kB");
}

#[test]
fn a_million_tiny_records_run_in_bounded_memory() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let tiny: Vec<Vec<u8>> = (0..1_000_000u32)
        .map(|i| format!("w{}", i % 100).into_bytes())
        .collect();
    produce(&producer(&brokers), &words, 0, &tiny);
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0", "--batch-max-records", "10000"],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(Duration::from_secs(300), "every record", || {
        redis.offsets(&g, &words).get(&0) == Some(&1_000_000)
    });
    assert_eq!(redis.counts(&g).values().sum::<i64>(), 1_000_000);
    let peak = peak_rss_kb(host.pid());
    eprintln!("peak RSS with 1M tiny records: {} MiB", peak / 1024);
    assert!(peak < RSS_BOUND_KB, "peak RSS {peak} kB");
}
