//! The Redis key layout across releases and scopes: data an older release left (no hash
//! tags) is migrated once, atomically and fenced; a job keeps the state scope it was
//! first run with; the partition scope keeps each partition's state to itself, and the
//! offsets tool reads it.

use std::collections::BTreeMap;
use std::time::Duration;

use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    Host, Redis, create_topic, offsets_key, partition_keys, produce, producer, state_key,
};
use streamhost_tests::{expected_counts, host, run_args, stdout_json, text_values};

const MINUTE: Duration = Duration::from_secs(60);

fn hset(redis: &Redis, key: &str, fields: &[(String, String)]) {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (f, v) in fields {
        cmd.arg(f).arg(v);
    }
    let _: i64 = cmd.query(&mut redis.conn()).expect("HSET");
}

fn key_type(redis: &Redis, key: &str) -> String {
    redis::cmd("TYPE")
        .arg(key)
        .query(&mut redis.conn())
        .expect("TYPE")
}

/// Two partitions of 200 records each, on a topic (`words`) read by a group (`g`, the
/// job's name too) that no other test on the shared broker uses; what an older release
/// left after the first 100 of each: its offsets and its state under the keys it used.
struct OldDeployment {
    redis: Redis,
    brokers: String,
    words: String,
    g: String,
    parts: Vec<Vec<Vec<u8>>>,
}

impl OldDeployment {
    /// The older release's offsets key (no hash tag).
    fn old_offsets(&self) -> String {
        format!("streamhost:{}:offsets:{}", self.g, self.words)
    }

    /// The older release's state key (no hash tag).
    fn old_state(&self) -> String {
        format!("streamhost:{}:state", self.g)
    }

    /// The job's meta hash in the current layout.
    fn meta(&self) -> String {
        format!("streamhost:{{{}}}:meta", self.g)
    }
}

fn old_deployment() -> OldDeployment {
    let redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    let parts: Vec<Vec<Vec<u8>>> = (0..2).map(|i| text_values(70 + i, 200)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, &words, i as i32, v);
    }
    let d = OldDeployment {
        redis,
        brokers,
        words,
        g,
        parts,
    };
    hset(
        &d.redis,
        &d.old_offsets(),
        &[("0".into(), "100".into()), ("1".into(), "100".into())],
    );
    let mut state: Vec<(String, String)> = expected_counts(d.parts.iter().flat_map(|p| &p[..100]))
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    // Only the old state can have put this key there.
    state.push(("from-the-old-release".into(), "1".into()));
    hset(&d.redis, &d.old_state(), &state);
    d
}

fn args(d: &OldDeployment, extra: &[&str]) -> Vec<String> {
    let mut extra = extra.to_vec();
    extra.extend_from_slice(&["--partitions", "0,1"]);
    run_args(&d.brokers, &d.redis.url(), &d.words, &d.g, &extra)
}

#[test]
fn an_older_release_s_offsets_and_state_are_migrated_once_and_fenced() {
    let d = old_deployment();
    let cache = tempfile::tempdir().unwrap();
    let host = Host::spawn(&args(&d, &[]), cache.path());
    let ends: BTreeMap<i32, i64> = [(0, 200), (1, 200)].into();
    host.wait_for(
        MINUTE,
        "the job to finish from the migrated offsets",
        || d.redis.offsets(&d.g, &d.words) == ends,
    );
    // Resumed at 100, on top of the old counts: had the offsets not moved with the state,
    // the first 100 records would count twice; had the state not moved, the marker and
    // the first half would be missing.
    let mut expected = expected_counts(d.parts.iter().flatten());
    expected.insert("from-the-old-release".into(), 1);
    assert_eq!(d.redis.counts(&d.g), expected);
    assert!(
        host.log_text()
            .contains("migrated the job's offsets and state")
    );

    // Fenced: each old key is a string now, so an old host's HGET/commit fails.
    for old in [d.old_offsets(), d.old_state()] {
        assert_eq!(key_type(&d.redis, &old), "string", "{old}");
        let err = redis::cmd("HGET")
            .arg(&old)
            .arg("0")
            .query::<Option<String>>(&mut d.redis.conn())
            .expect_err("an old host's read of its key fails");
        assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    }
    let meta = d.redis.hgetall(&d.meta());
    assert_eq!(meta.get("scope").map(String::as_str), Some("job"));
    assert!(meta.contains_key("migrated_at_ms"), "{meta:?}");
    drop(host);

    // Once: a second start finds the new layout and migrates nothing.
    let second = Host::spawn(&args(&d, &[]), cache.path());
    second.wait_for(MINUTE, "the second host to be ready", || {
        second.log_text().contains("store ready")
    });
    assert!(!second.log_text().contains("migrated the job's"));
    assert_eq!(d.redis.counts(&d.g), expected);
}

#[test]
fn migration_waits_for_the_old_hosts_to_stop() {
    let d = old_deployment();
    let old_member = format!("streamhost:{}:member:old-host-1", d.g);
    let _: () = redis::cmd("SET")
        .arg(&old_member)
        .arg("1")
        .arg("PX")
        .arg(60_000)
        .query(&mut d.redis.conn())
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(&args(&d, &[]), cache.path());
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!(
            "hosts of an older release still run group {}",
            d.g
        )) && log.contains(&old_member),
        "{log}"
    );
    // Nothing moved.
    assert_eq!(key_type(&d.redis, &d.old_state()), "hash");
    assert_eq!(key_type(&d.redis, &d.meta()), "none");
}

#[test]
fn old_per_job_state_is_not_silently_dropped_by_the_partition_scope() {
    let d = old_deployment();
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(&args(&d, &["--state-scope", "partition"]), cache.path());
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains("from an older release") && log.contains("--state-scope job"),
        "{log}"
    );
    assert_eq!(key_type(&d.redis, &d.old_state()), "hash");
}

#[test]
fn a_job_keeps_its_scope_and_the_partition_scope_keeps_state_per_partition() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    let parts: Vec<Vec<Vec<u8>>> = (0..2).map(|i| text_values(80 + i, 150)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, &words, i as i32, v);
    }
    let cache = tempfile::tempdir().unwrap();
    let args = |scope: &str| {
        run_args(
            &brokers,
            &redis.url(),
            &words,
            &g,
            &["--partitions", "0,1", "--state-scope", scope],
        )
    };
    let running = Host::spawn(&args("partition"), cache.path());
    running.wait_for(MINUTE, "both partitions committed", || {
        (0..2).all(|p| {
            let (offsets, _) = partition_keys(&g, &g, &words, p);
            redis
                .hgetall(&offsets)
                .get(&p.to_string())
                .map(String::as_str)
                == Some("150")
        })
    });
    drop(running);
    for p in 0..2 {
        let (_, state) = partition_keys(&g, &g, &words, p);
        let counts: BTreeMap<String, i64> = redis
            .hgetall(&state)
            .into_iter()
            .map(|(k, v)| (k, v.parse().unwrap()))
            .collect();
        assert_eq!(
            counts,
            expected_counts(parts[p as usize].iter()),
            "partition {p}"
        );
    }
    assert!(redis.hgetall(&state_key(&g)).is_empty());
    assert!(redis.hgetall(&offsets_key(&g, &g, &words)).is_empty());

    // The offsets tool finds them under the recorded scope.
    let out = host(
        &[
            "offsets",
            "show",
            "--group",
            &g,
            "--brokers",
            &brokers,
            "--redis",
            &redis.url(),
            "--json",
        ],
        cache.path(),
    );
    let shown = stdout_json(&out);
    let committed: Vec<(i64, i64)> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["partition"].as_i64().unwrap(),
                r["committed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(committed, [(0, 150), (1, 150)]);

    // The other scope would start from empty state: refused, saying how to go on.
    let mut other = Host::spawn(&args("job"), cache.path());
    assert_eq!(other.wait(MINUTE).code(), Some(1));
    let log = other.log_text();
    assert!(
        log.contains("stored per partition (--state-scope partition)")
            && log.contains("start it with --state-scope partition"),
        "{log}"
    );
}

#[test]
fn host_test_shows_what_a_plugin_sees_under_the_partition_scope() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\nb c\n").unwrap();
    let wasm = streamhost_tests::plugin("wordcount");
    let out = host(
        &[
            "test",
            "--plugin",
            wasm.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--state-scope",
            "partition",
            "--partition",
            "3",
        ],
        dir.path(),
    );
    let report = stdout_json(&out);
    assert_eq!(report["state_scope"], "partition");
    assert_eq!(report["state"]["a"], "2");
    assert_eq!(report["state"]["c"], "1");
}
