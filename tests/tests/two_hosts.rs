//! Two hosts in one consumer group: a killed host's partitions move to the other, and a
//! paused ("zombie") host's late commit is fenced.

use std::collections::BTreeMap;
use std::time::Duration;

use streamhost_tests::services::{FAST_GROUP, Host, Redis, Tansu, create_topic, produce, producer};
use streamhost_tests::{expected_counts, plugin_run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

fn group_args(plugin_name: &str, kafka: &Tansu, redis: &Redis, extra: &[&str]) -> Vec<String> {
    let mut e = FAST_GROUP.to_vec();
    e.extend_from_slice(extra);
    plugin_run_args(
        plugin_name,
        &kafka.brokers(),
        &redis.url(),
        "words",
        "g",
        &e,
    )
}

/// How many partitions the host's last assignment gave it.
fn assigned(host: &Host) -> usize {
    host.log_text()
        .lines()
        .rfind(|l| l.contains("partitions assigned"))
        .and_then(|l| l.split("partitions=").nth(1))
        .map_or(0, |p| p.split(',').count())
}

#[test]
fn a_killed_host_hands_its_partitions_to_the_other() {
    let (redis, kafka) = (Redis::start_in_memory(), Tansu::start());
    create_topic(&kafka.brokers(), "words", 4);
    let cache = tempfile::tempdir().unwrap();
    let args = group_args("wordcount", &kafka, &redis, &["--batch-max-records", "50"]);
    let a = Host::spawn(&args, cache.path());
    a.wait_for(MINUTE, "host a to get partitions", || assigned(&a) == 4);
    let b = Host::spawn(&args, cache.path());
    b.wait_for(MINUTE, "the group to split the partitions", || {
        assigned(&b) == 2 && assigned(&a) == 2
    });

    let p = producer(&kafka.brokers());
    let parts: Vec<Vec<Vec<u8>>> = (0..4).map(|i| text_values(30 + i, 20_000)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, "words", i as i32, v);
    }
    b.wait_for(MINUTE, "progress on both hosts' partitions", || {
        redis.offsets("g", "words").len() == 4
    });
    a.kill9();
    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, 20_000)).collect();
    b.wait_for(MINUTE, "host b to finish every partition", || {
        redis.offsets("g", "words") == ends
    });
    assert_eq!(redis.counts("g"), expected_counts(parts.iter().flatten()));
    assert_eq!(assigned(&b), 4);
}

#[test]
fn a_zombies_late_commit_is_fenced() {
    let (redis, kafka) = (Redis::start_in_memory(), Tansu::start());
    create_topic(&kafka.brokers(), "words", 1);
    produce(
        &producer(&kafka.brokers()),
        "words",
        0,
        &[b"sleep".to_vec(), b"x".to_vec()],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = group_args("faulty", &kafka, &redis, &["--batch-max-records", "2"]);

    // Host a takes the batch [0, 2) and is frozen while its plugin sleeps.
    let zombie = Host::spawn(&args, cache.path());
    zombie.wait_for(MINUTE, "host a to start the batch", || {
        zombie.log_text().contains("from=0 until=2")
    });
    zombie.signal(libc::SIGSTOP);

    // Host b gets the partition once a's session expires, and commits the same batch.
    let b = Host::spawn(&args, cache.path());
    b.wait_for(MINUTE, "host b to commit the batch", || {
        redis.offsets("g", "words").get(&0) == Some(&2)
    });
    assert_eq!(redis.counts("g").get("ok"), Some(&1));

    // The zombie wakes up and tries to commit its copy: refused, nothing applied.
    zombie.signal(libc::SIGCONT);
    zombie.wait_for(MINUTE, "the zombie's commit to be fenced", || {
        zombie.log_text().contains("commit fenced")
    });
    assert_eq!(redis.counts("g").get("ok"), Some(&1), "not counted twice");
    assert_eq!(redis.offsets("g", "words").get(&0), Some(&2));
}
