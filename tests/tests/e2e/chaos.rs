//! Chaos: 300,000 records over 4 partitions, two hosts in one group, 20 SIGKILLs at
//! random points (each host restarted at once), and one Redis restart in the middle.
//! The state must come out exact and the offsets at the partition ends, under either
//! state scope.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    FAST_GROUP, Host, Redis, StateByPartition, create_topic, partition_keys, produce, producer,
};
use streamhost_tests::{expected_counts, run_args, text_values};

const PER_PARTITION: usize = 75_000;
const KILLS: usize = 20;

/// One chaos run at a time: two at once on a small machine would measure the machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn twenty_kills_and_a_redis_restart_keep_state_exact() {
    chaos("job");
}

#[test]
fn twenty_kills_and_a_redis_restart_keep_partitioned_state_exact() {
    chaos("partition");
}

/// Group `g`'s stored offsets of `topic` by partition, and state by partition (`None`:
/// the job's one state).
fn stored(
    redis: &Redis,
    scope: &str,
    topic: &str,
    g: &str,
) -> (BTreeMap<i32, i64>, StateByPartition) {
    if scope == "job" {
        return (redis.offsets(g, topic), [(None, redis.counts(g))].into());
    }
    let mut offsets = BTreeMap::new();
    let mut state = BTreeMap::new();
    for p in 0..4 {
        let (offsets_key, state_key) = partition_keys(g, g, topic, p);
        if let Some(o) = redis.hgetall(&offsets_key).get(&p.to_string()) {
            offsets.insert(p, o.parse().expect("offset"));
        }
        let counts = redis
            .hgetall(&state_key)
            .into_iter()
            .map(|(k, v)| (k, v.parse().expect("integer state")))
            .collect();
        state.insert(Some(p), counts);
    }
    (offsets, state)
}

fn chaos(scope: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 4);
    let p = producer(&brokers);
    let parts: Vec<Vec<Vec<u8>>> = (0..4).map(|i| text_values(40 + i, PER_PARTITION)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, &words, i as i32, v);
    }
    let total = (4 * PER_PARTITION) as i64;
    let cache = tempfile::tempdir().unwrap();
    let mut extra = FAST_GROUP.to_vec();
    extra.extend_from_slice(&[
        "--batch-max-records",
        "100",
        "--retry-backoff-ms",
        "50",
        "--state-scope",
        scope,
    ]);
    let args = run_args(&brokers, &redis.url(), &words, &g, &extra);

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("chaos ({scope} scope) seeded with {seed}");
    let mut x = seed | 1;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let committed = |r: &Redis| stored(r, scope, &words, &g).0.values().sum::<i64>();
    let mut hosts = [
        Host::spawn(&args, cache.path()),
        Host::spawn(&args, cache.path()),
    ];
    for round in 0..KILLS {
        // Let a random, small share of the work commit, then kill a random host.
        let before = committed(&redis);
        let step = 1 + (random() % (total as u64 / (2 * KILLS as u64))) as i64;
        let target = (before + step).min(total);
        hosts[0].wait_for(
            Duration::from_secs(120),
            "progress before the next kill",
            || committed(&redis) >= target,
        );
        let victim = (random() % 2) as usize;
        eprintln!(
            "round {round}: killing host {victim} at {} of {total}",
            committed(&redis)
        );
        let fresh = Host::spawn(&args, cache.path());
        std::mem::replace(&mut hosts[victim], fresh).kill9();
        if round == KILLS / 2 {
            eprintln!("round {round}: restarting Redis");
            redis.restart();
        }
    }
    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, PER_PARTITION as i64)).collect();
    hosts[0].wait_for(
        Duration::from_secs(240),
        "offsets at the partition ends",
        || stored(&redis, scope, &words, &g).0 == ends,
    );
    let expected: StateByPartition = if scope == "job" {
        [(None, expected_counts(parts.iter().flatten()))].into()
    } else {
        // Each partition's state holds the counts of its own records only.
        (0..4)
            .map(|p| (Some(p), expected_counts(parts[p as usize].iter())))
            .collect()
    };
    assert_eq!(
        stored(&redis, scope, &words, &g).1,
        expected,
        "exactly-once state"
    );
}
