//! Isolation between partitions, and input that must not crash the host.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{Host, Redis, create_topic, produce, producer};
use streamhost_tests::{expected_counts, plugin_run_args, run_args};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_stuck_partition_does_not_stall_the_others() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    // Partition 0's only record keeps its plugin busy until the call's deadline (20 s),
    // then is skipped: a window far longer than partition 1 needs for its 1000 records.
    produce(&p, &words, 0, &[b"loop".to_vec()]);
    produce(&p, &words, 1, &vec![b"fine".to_vec(); 1000]);
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "faulty",
        &brokers,
        &redis.url(),
        &words,
        &g,
        &[
            "--partitions",
            "0,1",
            "--batch-max-records",
            "1",
            "--plugin-timeout-ms",
            "20000",
            "--on-error",
            "skip",
            "--max-retries",
            "0",
        ],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "partition 1 to finish", || {
        redis.offsets(&g, &words).get(&1) == Some(&1000)
    });
    assert_eq!(
        redis.offsets(&g, &words).get(&0),
        None,
        "partition 0 is still in its looping plugin while partition 1 is done"
    );
    host.wait_for(
        MINUTE,
        "partition 0 to be skipped after its deadline",
        || redis.offsets(&g, &words).get(&0) == Some(&1),
    );
}

#[test]
fn odd_records_do_not_crash_the_host() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let p = producer(&brokers);
    let long_name = "h".repeat(1000);
    let big = {
        let mut v = "word ".repeat(180_000).into_bytes(); // ~900 KB, under the 1 MB default max
        v.extend_from_slice(b"end");
        v
    };
    let values: Vec<Option<Vec<u8>>> = vec![
        None,
        Some(Vec::new()),
        Some(b"\xff\xfe\x00 bytes \xc3\x28 not utf8".to_vec()),
        Some(
            "  ÜNÏCÖDÉ  \t wörds\u{2003}em\u{00a0}space "
                .as_bytes()
                .to_vec(),
        ),
        Some(b"with odd headers".to_vec()),
        Some(big),
    ];
    let mut pending = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "",
                value: Some("empty name"),
            })
            .insert(Header {
                key: "ünï côdé",
                value: None::<&str>,
            })
            .insert(Header {
                key: &long_name,
                value: Some("x"),
            })
            .insert(Header {
                key: "dup",
                value: Some("1"),
            })
            .insert(Header {
                key: "dup",
                value: Some("2"),
            });
        let mut r = FutureRecord::<[u8], [u8]>::to(&words).partition(0);
        if i % 2 == 0 {
            r = r.headers(headers);
        } else {
            r = r.key(b"\x00key");
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        pending.push(p.send_result(r).map_err(|(e, _)| e).expect("queued"));
    }
    for f in futures::executor::block_on(futures::future::join_all(pending)) {
        f.expect("delivery").expect("acknowledged");
    }
    p.flush(Duration::from_secs(10)).expect("flush");

    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--partitions", "0", "--batch-max-records", "2"],
    );
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record", || {
        redis.offsets(&g, &words).get(&0) == Some(&6)
    });
    let present: Vec<Vec<u8>> = values.into_iter().flatten().collect();
    assert_eq!(redis.counts(&g), expected_counts(&present));
    assert!(host.running(), "the host is still up");
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success());
}
