//! Dead letters put back through a fixed plugin (`host dlq replay`): exactly once into the
//! job's state, however often the replay is interrupted and run again.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::Headers;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    Host, Redis, create_topic, offsets_key, partition_keys, produce, producer, read_topic,
};
use streamhost_tests::{host, plugin, plugin_run_args, stdout_json};

const MINUTE: Duration = Duration::from_secs(60);
const PER_PARTITION: usize = 300;

/// The replay cursors of `job` over partition 0 of dead-letter topic `dead`: source
/// partition → next DLQ offset.
fn cursors(redis: &Redis, job: &str, dead: &str) -> BTreeMap<String, i64> {
    redis
        .hgetall(&offsets_key(job, job, &format!("dlq-replay:{dead}:0")))
        .into_iter()
        .map(|(p, o)| (p, o.parse().expect("offset")))
        .collect()
}

fn poison_count(redis: &Redis, job: &str) -> i64 {
    redis.counts(job).get("poison").copied().unwrap_or(0)
}

/// `host dlq replay` of `job`'s dead letters on topic `dead` through `plugin_name`.
fn replay_args(
    brokers: &str,
    redis: &Redis,
    job: &str,
    dead: &str,
    plugin_name: &str,
    extra: &[&str],
) -> Vec<String> {
    let wasm = plugin(plugin_name);
    let mut args: Vec<String> = [
        "dlq",
        "replay",
        "--job",
        job,
        "--dlq-topic",
        dead,
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--brokers",
        brokers,
        "--redis",
        &redis.url(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn a_replay_killed_midway_and_run_again_counts_every_dead_letter_once() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, dead, rj) = (unique("words"), unique("dead"), unique("rj"));
    create_topic(&brokers, &words, 2);
    create_topic(&brokers, &dead, 1);
    let values: Vec<Vec<u8>> = (0..2 * PER_PARTITION)
        .map(|i| {
            if i % 2 == 0 {
                &b"poison"[..]
            } else {
                &b"fine"[..]
            }
            .to_vec()
        })
        .collect();
    let p = producer(&brokers);
    for partition in 0..2 {
        produce(&p, &words, partition, &values);
    }
    let cache = tempfile::tempdir().unwrap();

    // Version 1 of the job's logic (`faulty`) marks every "poison" record as poison: the
    // job dead-letters them and goes on.
    let mut job = Host::spawn(
        &plugin_run_args(
            "faulty",
            &brokers,
            &redis.url(),
            &words,
            &rj,
            &["--on-error", "dlq", "--dlq-topic", &dead],
        ),
        cache.path(),
    );
    let end = (2 * PER_PARTITION) as i64;
    job.wait_for(MINUTE, "both partitions to commit", || {
        let o = redis.offsets(&rj, &words);
        o.get(&0) == Some(&end) && o.get(&1) == Some(&end)
    });
    job.signal(libc::SIGTERM);
    assert!(job.wait(MINUTE).success(), "{}", job.log_text());
    let total = 2 * PER_PARTITION;
    let letters = read_topic(&brokers, &dead, total);
    assert_eq!(letters.len(), total);
    assert_eq!(redis.counts(&rj).get("ok"), Some(&(total as i64)));
    assert_eq!(poison_count(&redis, &rj), 0);
    let source_partition = |m: &rdkafka::message::OwnedMessage| -> String {
        let h = m.headers().expect("dead-letter headers");
        let h = h
            .iter()
            .find(|h| h.key == "streamhost-source-partition")
            .expect("source partition header");
        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()
    };

    // A replay through a plugin that still fails stops at the first dead letter and
    // moves nothing.
    let failed = host(
        &replay_args(&brokers, &redis, &rj, &dead, "faulty", &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        cache.path(),
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        stderr.contains(&format!("dead letter {dead}/0@0")) && stderr.contains("still fails"),
        "{stderr}"
    );
    assert!(cursors(&redis, &rj, &dead).is_empty());
    assert_eq!(poison_count(&redis, &rj), 0);

    // The fixed version (`wordcount` counts the word "poison"), one dead letter per
    // commit. Once it has committed some, Redis holds its writes and the replay is
    // SIGKILLed with a batch processed and its commit unanswered.
    let replaying = Host::spawn(
        &replay_args(
            &brokers,
            &redis,
            &rj,
            &dead,
            "wordcount",
            &["--batch-max-records", "1"],
        ),
        cache.path(),
    );
    replaying.wait_for(MINUTE, "the replay to commit some dead letters", || {
        poison_count(&redis, &rj) >= 50
    });
    let mut admin = redis.conn();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(60_000)
        .arg("WRITE")
        .query::<()>(&mut admin)
        .expect("CLIENT PAUSE");
    let at_kill = poison_count(&redis, &rj);
    replaying.kill9();
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query::<()>(&mut admin)
        .expect("CLIENT UNPAUSE");
    assert!(
        (50..total as i64).contains(&at_kill),
        "killed mid-replay: {at_kill} of {total} replayed"
    );
    // The state and the cursors moved together: what lies below the cursors is exactly
    // what was counted.
    let c = cursors(&redis, &rj, &dead);
    let below = letters
        .iter()
        .filter(|m| c.get(&source_partition(m)).is_some_and(|&u| m.offset() < u))
        .count();
    assert_eq!(below as i64, at_kill, "cursors {c:?}");
    assert_eq!(poison_count(&redis, &rj), at_kill);

    // Run again: it goes on from the cursors, and every dead letter counts once.
    let args = replay_args(&brokers, &redis, &rj, &dead, "wordcount", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = host(&args, cache.path());
    // Reaching the end of the dead-letter partitions is how a replay stops, not an error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("PartitionEOF"), "{stderr}");
    let report = stdout_json(&out);
    assert_eq!(report["replayed"], total as i64 - at_kill, "{report}");
    assert_eq!(report["already_replayed"], at_kill, "{report}");
    assert!(
        report["plugin_version"]
            .as_str()
            .is_some_and(|v| v.ends_with("wordcount.wasm")),
        "{report}"
    );
    assert_eq!(poison_count(&redis, &rj), total as i64);
    let mut past_last: BTreeMap<String, i64> = BTreeMap::new();
    for m in &letters {
        past_last.insert(source_partition(m), m.offset() + 1);
    }
    assert_eq!(
        cursors(&redis, &rj, &dead),
        past_last,
        "each source partition's cursor is past its last dead letter"
    );

    // A third run finds nothing left to replay.
    let report = stdout_json(&host(&args, cache.path()));
    assert_eq!(report["replayed"], 0, "{report}");
    assert_eq!(report["already_replayed"], total as i64, "{report}");
    assert_eq!(poison_count(&redis, &rj), total as i64);
}

#[test]
fn under_the_partition_scope_each_dead_letter_replays_into_its_own_partition() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, dead, rp) = (unique("words"), unique("dead"), unique("rp"));
    create_topic(&brokers, &words, 2);
    create_topic(&brokers, &dead, 1);
    let p = producer(&brokers);
    let poison = |n: usize| -> Vec<Vec<u8>> {
        (0..2 * n)
            .map(|i| {
                if i % 2 == 0 {
                    &b"poison"[..]
                } else {
                    &b"fine"[..]
                }
                .to_vec()
            })
            .collect()
    };
    produce(&p, &words, 0, &poison(3));
    produce(&p, &words, 1, &poison(5));
    let cache = tempfile::tempdir().unwrap();
    let scope = ["--state-scope", "partition"];
    let mut extra = vec!["--on-error", "dlq", "--dlq-topic", &dead];
    extra.extend(scope);
    let mut job = Host::spawn(
        &plugin_run_args("faulty", &brokers, &redis.url(), &words, &rp, &extra),
        cache.path(),
    );
    let (offsets0, _) = partition_keys(&rp, &rp, &words, 0);
    let (offsets1, _) = partition_keys(&rp, &rp, &words, 1);
    job.wait_for(MINUTE, "both partitions to commit", || {
        redis.hgetall(&offsets0).get("0") == Some(&"6".to_owned())
            && redis.hgetall(&offsets1).get("1") == Some(&"10".to_owned())
    });
    job.signal(libc::SIGTERM);
    assert!(job.wait(MINUTE).success(), "{}", job.log_text());

    let wasm = plugin("wordcount");
    let url = redis.url();
    let args = [
        "dlq",
        "replay",
        "--job",
        &rp,
        "--dlq-topic",
        &dead,
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--brokers",
        &brokers,
        "--redis",
        &url,
        "--json",
    ];
    let report = stdout_json(&host(&args, cache.path()));
    assert_eq!(report["replayed"], 8, "{report}");
    for (partition, count) in [(0, "3"), (1, "5")] {
        let (_, key) = partition_keys(&rp, &rp, &words, partition);
        let state = redis.hgetall(&key);
        assert_eq!(
            state.get("poison").map(String::as_str),
            Some(count),
            "partition {partition}'s state: {state:?}"
        );
        let (cursor_key, _) = partition_keys(&rp, &rp, &format!("dlq-replay:{dead}:0"), partition);
        let cursor = redis.hgetall(&cursor_key);
        assert!(
            cursor.contains_key(&partition.to_string()),
            "partition {partition}'s cursor beside its state: {cursor:?}"
        );
    }
    let again = stdout_json(&host(&args, cache.path()));
    assert_eq!(
        (&again["replayed"], &again["already_replayed"]),
        (&serde_json::json!(0), &serde_json::json!(8))
    );
}
