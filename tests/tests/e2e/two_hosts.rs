//! Hosts in one consumer group: a killed host's partitions move to the other, a paused
//! ("zombie") host's late commit is fenced, and three hosts scaling 1 -> 3 -> 2 under
//! load move only the partitions they must, under both group protocols.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{FAST_GROUP, Host, Redis, create_topic, produce, producer};
use streamhost_tests::{expected_counts, plugin_run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

/// Arguments of a host in group `g` reading `topic`; killed and paused hosts lose their
/// partitions quickly (`FAST_GROUP`).
fn group_args(
    plugin_name: &str,
    brokers: &str,
    redis: &Redis,
    topic: &str,
    g: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut e = FAST_GROUP.to_vec();
    e.extend_from_slice(extra);
    plugin_run_args(plugin_name, brokers, &redis.url(), topic, g, &e)
}

/// How many partitions the host holds after its last rebalance (a cooperative one moves
/// only some: the log names the whole assignment as `owned`).
fn assigned(host: &Host) -> usize {
    host.log_text()
        .lines()
        .rfind(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
        .and_then(|l| l.split("owned=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .map_or(0, |p| p.split(',').filter(|s| !s.is_empty()).count())
}

#[test]
fn a_killed_host_hands_its_partitions_to_the_other() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 4);
    let cache = tempfile::tempdir().unwrap();
    let args = group_args(
        "wordcount",
        &brokers,
        &redis,
        &words,
        &g,
        &["--batch-max-records", "50"],
    );
    let a = Host::spawn(&args, cache.path());
    a.wait_for(MINUTE, "host a to get partitions", || assigned(&a) == 4);
    let b = Host::spawn(&args, cache.path());
    b.wait_for(MINUTE, "the group to split the partitions", || {
        assigned(&b) == 2 && assigned(&a) == 2
    });

    let p = producer(&brokers);
    let parts: Vec<Vec<Vec<u8>>> = (0..4).map(|i| text_values(30 + i, 20_000)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, &words, i as i32, v);
    }
    b.wait_for(MINUTE, "progress on both hosts' partitions", || {
        redis.offsets(&g, &words).len() == 4
    });
    a.kill9();
    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, 20_000)).collect();
    b.wait_for(MINUTE, "host b to finish every partition", || {
        redis.offsets(&g, &words) == ends
    });
    assert_eq!(redis.counts(&g), expected_counts(parts.iter().flatten()));
    assert_eq!(assigned(&b), 4);
}

#[test]
fn a_zombies_late_commit_is_fenced() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    produce(
        &producer(&brokers),
        &words,
        0,
        &[b"sleep".to_vec(), b"x".to_vec()],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = group_args(
        "faulty",
        &brokers,
        &redis,
        &words,
        &g,
        &["--batch-max-records", "2"],
    );

    // Host a takes the batch [0, 2) and is frozen while its plugin sleeps.
    let zombie = Host::spawn(&args, cache.path());
    zombie.wait_for(MINUTE, "host a to start the batch", || {
        zombie.log_text().contains("from=0 until=2")
    });
    zombie.signal(libc::SIGSTOP);

    // Host b gets the partition once a's session expires, and commits the same batch.
    let b = Host::spawn(&args, cache.path());
    b.wait_for(MINUTE, "host b to commit the batch", || {
        redis.offsets(&g, &words).get(&0) == Some(&2)
    });
    assert_eq!(redis.counts(&g).get("ok"), Some(&1));

    // The zombie wakes up and tries to commit its copy: refused, nothing applied.
    zombie.signal(libc::SIGCONT);
    zombie.wait_for(MINUTE, "the zombie's commit to be fenced", || {
        zombie.log_text().contains("commit fenced")
    });
    assert_eq!(redis.counts(&g).get("ok"), Some(&1), "not counted twice");
    assert_eq!(redis.offsets(&g, &words).get(&0), Some(&2));
}

/// The partitions a host gave up in its rebalances (from its "partitions revoked" lines).
fn revoked(host: &Host) -> BTreeSet<String> {
    host.log_text()
        .lines()
        .filter(|l| l.contains("partitions revoked"))
        .filter_map(|l| l.split("partitions=").nth(1))
        .filter_map(|p| p.split_whitespace().next())
        .flat_map(|p| p.split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The partitions a host holds now (its last rebalance's `owned`).
fn owned(host: &Host) -> BTreeSet<String> {
    host.log_text()
        .lines()
        .rfind(|l| l.contains("partitions assigned") || l.contains("partitions revoked"))
        .and_then(|l| l.split("owned=").nth(1))
        .and_then(|p| p.split_whitespace().next())
        .map(|p| {
            p.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Three hosts of one group scale 1 -> 3 -> 2 while records keep arriving: counts stay
/// exact, a host keeps the partitions a rebalance does not move (it never revokes one it
/// still owns afterwards), and the longest time each partition went without a commit
/// while its ownership moved is printed (timing is reported, not asserted).
fn scale_one_three_two(protocol: &[&str], label: &str) {
    const PARTITIONS: i32 = 6;
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, PARTITIONS);
    let cache = tempfile::tempdir().unwrap();
    let mut extra = vec!["--batch-max-records", "100"];
    extra.extend_from_slice(protocol);
    let args = plugin_run_args("wordcount", &brokers, &redis.url(), &words, &g, &extra);

    // A steady load: 50 records per partition every 20 ms until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, brokers, words) = (stop.clone(), brokers.clone(), words.clone());
        std::thread::spawn(move || {
            let p = producer(&brokers);
            let mut sent: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, part) in sent.iter_mut().enumerate() {
                    let values = text_values(1000 * round + i as u64, 50);
                    produce(&p, &words, i as i32, &values);
                    part.extend(values);
                }
                round += 1;
                // Pacing the load, not waiting for anything.
                std::thread::sleep(Duration::from_millis(20));
            }
            sent
        })
    };
    // Watches every partition's committed offset: the longest stretch without a commit.
    let stalls = {
        let (stop, url, g, words) = (stop.clone(), redis.url(), g.clone(), words.clone());
        std::thread::spawn(move || {
            let mut conn = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .expect("redis");
            let key = streamhost_tests::services::offsets_key(&g, &g, &words);
            let mut last: BTreeMap<String, (String, Instant)> = BTreeMap::new();
            let mut worst: BTreeMap<String, Duration> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let offsets: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query(&mut conn)
                    .unwrap_or_default();
                for (p, o) in offsets {
                    let entry = last.entry(p.clone()).or_insert((o.clone(), now));
                    if entry.0 != o {
                        *entry = (o, now);
                    }
                    let gap = now - entry.1;
                    let w = worst.entry(p).or_default();
                    *w = (*w).max(gap);
                }
                // The sampling interval of the measurement.
                std::thread::sleep(Duration::from_millis(20));
            }
            worst
        })
    };

    let a = Host::spawn(&args, cache.path());
    a.wait_for(MINUTE, "host a to own every partition", || {
        owned(&a).len() == PARTITIONS as usize
    });
    let b = Host::spawn(&args, cache.path());
    let mut c = Host::spawn(&args, cache.path());
    a.wait_for(MINUTE, "three hosts with two partitions each", || {
        [&a, &b, &c].iter().all(|h| owned(h).len() == 2)
    });
    let a_kept = owned(&a);
    c.signal(libc::SIGTERM);
    assert!(c.wait(MINUTE).success(), "{}", c.log_text());
    a.wait_for(MINUTE, "two hosts with three partitions each", || {
        owned(&a).len() == 3 && owned(&b).len() == 3
    });
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().expect("the load thread");
    let worst = stalls.join().expect("the watch thread");

    let ends: BTreeMap<i32, i64> = sent
        .iter()
        .enumerate()
        .map(|(p, v)| (p as i32, v.len() as i64))
        .collect();
    a.wait_for(MINUTE, "every record committed", || {
        redis.offsets(&g, &words) == ends
    });
    assert_eq!(
        redis.counts(&g),
        expected_counts(sent.iter().flatten()),
        "{label}: exact through three rebalances"
    );
    // Cooperative: what a host keeps, it never gave up in between.
    for (name, host, keeps) in [("a", &a, &a_kept), ("b", &b, &owned(&b))] {
        let lost_and_regained: Vec<String> = revoked(host).intersection(keeps).cloned().collect();
        assert!(
            lost_and_regained.is_empty(),
            "{label}: host {name} revoked {lost_and_regained:?} and got them back: {}",
            host.log_text()
        );
    }
    eprintln!(
        "{label}: {} records; longest time without a commit per partition over 1 -> 3 -> 2 \
         hosts (ms): {:?}",
        ends.values().sum::<i64>(),
        worst
            .iter()
            .map(|(p, d)| (p.clone(), d.as_millis()))
            .collect::<BTreeMap<_, _>>()
    );
}

#[test]
fn one_to_three_to_two_hosts_classic_cooperative_sticky() {
    scale_one_three_two(FAST_GROUP, "classic, cooperative-sticky");
}

#[test]
fn one_to_three_to_two_hosts_kip_848() {
    scale_one_three_two(&["-X", "group.protocol=consumer"], "KIP-848");
}
