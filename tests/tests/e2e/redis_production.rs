//! The word count is exact against Redis as production runs it — TLS, mutual TLS, an ACL
//! user with the smallest documented ACL, a Cluster (job and partition scope) through a
//! slot migration and a master failover, Sentinel through a failover that loses the newest
//! commits — every server started here on loopback. Each test also prints the commit
//! latency (p50/p99 of 300 commits through the host's own store) of its topology, for the
//! record: a measurement, not an assertion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamhost::batch::effects::Effects;
use streamhost::store::redis::{Redis, RedisConfig, RedisStore, Topology};
use streamhost::store::{Commit, CommitOutcome, StateScope, StateStore};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::redis_topologies::{AclRedis, Certs, RedisCluster, RedisSentinel, TlsRedis};
use streamhost_tests::services::{
    Host, StateByPartition, create_topic, offsets_key, partition_keys, produce, producer, state_key,
};
use streamhost_tests::{expected_counts, repo_root, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

/// 300 commits of 20 counter increments each; prints p50 and p99.
/// Returns how many commits the replicas did not confirm (with `--redis-wait-replicas`).
fn commit_latency(label: &str, config: &RedisConfig, scope: StateScope) -> u64 {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let redis = Arc::new(Redis::new(config).expect("redis config"));
    let job = format!("latency-{scope}-{run}");
    let store = RedisStore::open(redis, "latency", &job, Some(scope)).expect("open store");
    let mut took = Vec::new();
    for i in 0..300i64 {
        let mut e = Effects::new(1 << 20);
        for k in 0..20 {
            e.add(format!("word-{k}"), 1).unwrap();
        }
        let partition = (i % 4) as i32;
        let from = i / 4 * 10;
        let started = Instant::now();
        let outcome = store
            .commit(&Commit {
                topic: "t",
                partition,
                expected: (from > 0).then_some(from),
                from_offset: from,
                until_offset: from + 10,
                writes: &e.state,
                time: &e.time,
                outbox: None,
            })
            .expect("commit");
        took.push(started.elapsed());
        assert_eq!(outcome, CommitOutcome::Committed);
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "commit latency {label} ({scope} scope): p50 {:.2} ms, p99 {:.2} ms",
        ms(took[took.len() / 2]),
        ms(took[took.len() * 99 / 100])
    );
    store.unreplicated_commits()
}

fn config(urls: &str) -> RedisConfig {
    RedisConfig::single(urls)
}

/// The job's name in Redis (`--job`). Each test has Redis servers of its own, so it needs
/// no unique name (only the Kafka-side topic and group do); a fixed one keeps the Cluster
/// slots of the job's keys, so which shards hold the partition scope's state, the same in
/// every run.
const JOB: &str = "g";

/// Four partitions of words on a topic of their own, read by a group of its own, produced
/// in `phases` equal parts so a test can act between them; `produce_phase(i)` writes
/// part i.
struct Words {
    brokers: String,
    topic: String,
    group: String,
    parts: Vec<Vec<Vec<u8>>>,
    phases: usize,
}

impl Words {
    fn new(per_partition: usize, phases: usize) -> Words {
        let brokers = Kafka::shared().brokers();
        let topic = unique("words");
        create_topic(&brokers, &topic, 4);
        let parts = (0..4).map(|i| text_values(90 + i, per_partition)).collect();
        Words {
            brokers,
            topic,
            group: unique("g"),
            parts,
            phases,
        }
    }

    fn per_phase(&self) -> usize {
        self.parts[0].len() / self.phases
    }

    fn produce_phase(&self, phase: usize) {
        let p = producer(&self.brokers);
        let n = self.per_phase();
        for (i, values) in self.parts.iter().enumerate() {
            produce(
                &p,
                &self.topic,
                i as i32,
                &values[phase * n..(phase + 1) * n],
            );
        }
    }

    /// What the offsets must be once `phases` parts were committed.
    fn ends_after(&self, phases: usize) -> BTreeMap<i32, i64> {
        (0..4)
            .map(|p| (p, (phases * self.per_phase()) as i64))
            .collect()
    }

    fn args(&self, redis_url: &str, extra: &[&str]) -> Vec<String> {
        let mut extra = extra.to_vec();
        extra.extend_from_slice(&[
            "--job",
            JOB,
            "--partitions",
            "0,1,2,3",
            "--batch-max-records",
            "50",
        ]);
        run_args(&self.brokers, redis_url, &self.topic, &self.group, &extra)
    }

    /// The keys of partition `p`'s offsets and state (or of the job's) in the scope.
    fn keys_of(&self, scope: StateScope, p: i32) -> (String, String) {
        match scope {
            StateScope::Job => (offsets_key(JOB, &self.group, &self.topic), state_key(JOB)),
            StateScope::Partition => partition_keys(JOB, &self.group, &self.topic, p),
        }
    }
}

/// The job's offsets and state read through `hgetall`, under the job scope.
fn job_scope_view(
    words: &Words,
    mut hgetall: impl FnMut(&str) -> BTreeMap<String, String>,
) -> (BTreeMap<i32, i64>, BTreeMap<String, i64>) {
    let (offsets_hash, state_hash) = words.keys_of(StateScope::Job, 0);
    let offsets = hgetall(&offsets_hash)
        .into_iter()
        .map(|(p, o)| (p.parse().unwrap(), o.parse().unwrap()))
        .collect();
    let counts = hgetall(&state_hash)
        .into_iter()
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    (offsets, counts)
}

fn wordcount_over(
    redis_url: &str,
    hgetall: impl Fn(&str) -> BTreeMap<String, String>,
    extra: &[&str],
) {
    let words = Words::new(400, 1);
    words.produce_phase(0);
    let cache = tempfile::tempdir().unwrap();
    let host = Host::spawn(&words.args(redis_url, extra), cache.path());
    host.wait_for(MINUTE, "every record committed", || {
        job_scope_view(&words, &hgetall).0 == words.ends_after(1)
    });
    assert_eq!(
        job_scope_view(&words, &hgetall).1,
        expected_counts(words.parts.iter().flatten())
    );
}

#[test]
fn word_count_is_exact_over_tls_and_mutual_tls() {
    let certs = Certs::generate();
    let ca = certs.ca().display().to_string();
    let server = TlsRedis::start(&certs, false);
    wordcount_over(
        &server.url(),
        |k| server.hgetall(k),
        &["--redis-ca-file", &ca],
    );
    let mut tls = config(&server.url());
    tls.ca_file = Some(certs.ca());
    commit_latency("TLS", &tls, StateScope::Job);

    let mutual = TlsRedis::start(&certs, true);
    let (cert, key) = (
        certs.client_cert().display().to_string(),
        certs.client_key().display().to_string(),
    );
    wordcount_over(
        &mutual.url(),
        |k| mutual.hgetall(k),
        &[
            "--redis-ca-file",
            &ca,
            "--redis-cert-file",
            &cert,
            "--redis-key-file",
            &key,
        ],
    );
    let mut mtls = config(&mutual.url());
    mtls.ca_file = Some(certs.ca());
    mtls.cert_file = Some(certs.client_cert());
    mtls.key_file = Some(certs.client_key());
    commit_latency("mutual TLS", &mtls, StateScope::Job);
}

#[test]
fn an_untrusted_server_or_a_missing_client_certificate_stops_the_host_at_once() {
    let certs = Certs::generate();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let cache = tempfile::tempdir().unwrap();
    let server = TlsRedis::start(&certs, false);
    let mutual = TlsRedis::start(&certs, true);
    let wrong = certs.wrong_ca().display().to_string();
    let ca = certs.ca().display().to_string();
    for (url, ca_file) in [(server.url(), &wrong), (mutual.url(), &ca)] {
        // Waiting would not fix a certificate: the give-up time is not what ends this.
        let args = run_args(
            &brokers,
            &url,
            &words,
            &g,
            &["--redis-ca-file", ca_file, "--redis-give-up-ms", "600000"],
        );
        let mut host = Host::spawn(&args, cache.path());
        assert_eq!(host.wait(MINUTE).code(), Some(1));
        let log = host.log_text();
        assert!(
            log.contains(&format!("Redis at {url}")) && log.contains("TLS handshake failed"),
            "{log}"
        );
        let hint = if ca_file == &wrong {
            "--redis-ca-file"
        } else {
            "--redis-cert-file"
        };
        assert!(log.contains(hint), "{log}");
    }
    assert!(mutual.hgetall(&offsets_key(&g, &g, &words)).is_empty());
}

/// The ACL that docs/operating.md gives, read from there so the docs stay what is tested.
fn documented_acl() -> String {
    let text = std::fs::read_to_string(repo_root().join("docs/operating.md")).unwrap();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ACL SETUSER streamhost on >PASSWORD "))
        .expect("docs/operating.md gives the ACL");
    line.trim_start_matches("ACL SETUSER streamhost on >PASSWORD ")
        .to_owned()
}

#[test]
fn word_count_is_exact_as_a_user_with_the_smallest_documented_acl() {
    const PASSWORD: &str = "pw-9f3c2a71-not-in-logs";
    let redis = AclRedis::start("streamhost", PASSWORD, &documented_acl());
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("redis-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let url = format!("redis://streamhost@127.0.0.1:{}", redis.port);

    let words = Words::new(400, 1);
    words.produce_phase(0);
    let cache = tempfile::tempdir().unwrap();
    let pw = password_file.display().to_string();
    let host = Host::spawn(
        &words.args(&url, &["--redis-password-file", &pw]),
        cache.path(),
    );
    host.wait_for(MINUTE, "every record committed", || {
        job_scope_view(&words, |k| redis.hgetall(k)).0 == words.ends_after(1)
    });
    assert_eq!(
        job_scope_view(&words, |k| redis.hgetall(k)).1,
        expected_counts(words.parts.iter().flatten())
    );
    drop(host);
    // The registry works under the same ACL.
    let wasm = streamhost_tests::plugin("wordcount");
    let out = host_with_env(
        &["plugin", "push", wasm.to_str().unwrap(), "--name", "wc"],
        &[("STREAMHOST_REDIS", &redis.url())],
        cache.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong password is a refusal, said at once, and never printed.
    let bad = format!(
        "redis://streamhost:wrong-{PASSWORD}@127.0.0.1:{}",
        redis.port
    );
    let args = words.args(&bad, &["--redis-give-up-ms", "600000"]);
    let mut refused = Host::spawn(&args, cache.path());
    assert_eq!(refused.wait(MINUTE).code(), Some(1));
    let log = refused.log_text();
    assert!(log.contains("refused the host"), "{log}");
    assert!(log.contains("streamhost:***@127.0.0.1"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is in the log: {log}");

    // --help does not echo the environment's URL (with its password).
    let help = host_with_env(
        &["run", "--help"],
        &[("STREAMHOST_REDIS", &redis.url())],
        cache.path(),
    );
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--redis-password-file"), "{help}");
    assert!(!help.contains(PASSWORD), "{help}");
    commit_latency(
        "ACL user",
        &RedisConfig {
            password_file: Some(password_file),
            ..config(&url)
        },
        StateScope::Job,
    );
}

fn host_with_env(
    args: &[&str],
    env: &[(&str, &str)],
    cache: &std::path::Path,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(streamhost_tests::host_bin());
    cmd.args(args).env("STREAMHOST_CACHE_DIR", cache);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run host")
}

fn cluster_view(
    cluster: &RedisCluster,
    words: &Words,
    scope: StateScope,
) -> (BTreeMap<i32, i64>, StateByPartition) {
    let mut offsets = BTreeMap::new();
    let mut state = BTreeMap::new();
    for p in 0..4 {
        let (o, s) = words.keys_of(scope, p);
        if let Some(v) = cluster.hgetall(&o).get(&p.to_string()) {
            offsets.insert(p, v.parse().unwrap());
        }
        let ns = (scope == StateScope::Partition).then_some(p);
        if scope == StateScope::Partition || p == 0 {
            let counts = cluster
                .hgetall(&s)
                .into_iter()
                .map(|(k, v)| (k, v.parse().unwrap()))
                .collect();
            state.insert(ns, counts);
        }
    }
    (offsets, state)
}

/// A 3-master cluster with a replica each. The job runs while (1) the slot of its
/// (partition 0's) keys is half migrated (keys moved, slot still MIGRATING: ASK
/// redirects), (2) after the migration (MOVED), (3) after that slot's master is
/// SIGKILLed and its replica promoted. Counts are exact at the end.
fn cluster_run(scope: StateScope) {
    let mut cluster = RedisCluster::start(3, 1);
    // WAIT goes to the master of each commit's slot: with a replica per shard, every
    // commit is confirmed.
    let mut waiting = config(&cluster.seed_urls());
    waiting.topology = Topology::Cluster;
    waiting.wait_replicas = 1;
    waiting.wait_timeout = Duration::from_secs(5);
    assert_eq!(
        commit_latency("Cluster, --redis-wait-replicas 1", &waiting, scope),
        0,
        "commits the replicas did not confirm"
    );
    let words = Words::new(400, 4);
    let cache = tempfile::tempdir().unwrap();
    let seeds = cluster.seed_urls();
    let host = Host::spawn(
        &words.args(
            &seeds,
            &["--redis-cluster", "--state-scope", scope.as_str()],
        ),
        cache.path(),
    );
    let wait_phase = |cluster: &RedisCluster, phase: usize, what: &str| {
        host.wait_for(Duration::from_secs(120), what, || {
            cluster_view(cluster, &words, scope).0 == words.ends_after(phase)
        });
    };
    words.produce_phase(0);
    wait_phase(&cluster, 1, "phase 1 committed");

    let (offsets0, _) = words.keys_of(scope, 0);
    let slot = RedisCluster::slot_of(offsets0.as_bytes());
    let from = cluster.master_of_slot(slot);
    let to = cluster.other_master(&from);
    let migration = cluster.begin_migration(slot, &to);
    while cluster.move_keys(&migration, 100) > 0 {}
    words.produce_phase(1);
    wait_phase(
        &cluster,
        2,
        "phase 2 committed while the slot is migrating (ASK)",
    );
    cluster.finish_migration(migration);
    words.produce_phase(2);
    wait_phase(&cluster, 3, "phase 3 committed after the migration (MOVED)");

    let killed = cluster.kill_master_of_slot(slot);
    assert_eq!(killed, to, "the slot had moved to {}", to.port);
    words.produce_phase(3);
    wait_phase(&cluster, 4, "phase 4 committed after the failover");

    let expected: StateByPartition = match scope {
        StateScope::Job => [(None, expected_counts(words.parts.iter().flatten()))].into(),
        StateScope::Partition => (0..4)
            .map(|p| (Some(p), expected_counts(words.parts[p as usize].iter())))
            .collect(),
    };
    assert_eq!(cluster_view(&cluster, &words, scope).1, expected);
    if scope == StateScope::Partition {
        let state_keys: Vec<String> = (0..4).map(|p| words.keys_of(scope, p).1).collect();
        let shards = cluster.masters_holding(&state_keys);
        eprintln!("partition scope: 4 partitions' state on {shards} of 3 shards");
        assert!(shards >= 2, "the partitions' state spread over the shards");
    }
    drop(host);
    let mut cluster_config = config(&cluster.seed_urls());
    cluster_config.topology = Topology::Cluster;
    commit_latency("Cluster", &cluster_config, scope);
}

#[test]
fn cluster_job_scope_survives_a_slot_migration_and_a_failover() {
    cluster_run(StateScope::Job);
}

#[test]
fn cluster_partition_scope_spreads_over_shards_and_survives_a_migration_and_a_failover() {
    cluster_run(StateScope::Partition);
}

/// Sentinel: the replica is cut off (its link killed on the master, the process stopped so
/// it cannot reconnect), the host commits a phase only the master has, the master is
/// SIGKILLed and the replica promoted: the newest commits are lost, offsets and state
/// together. The host must find the new master, see its stored offsets moved backwards,
/// replay, and end exact.
#[test]
fn sentinel_failover_that_loses_commits_is_replayed_exactly() {
    let mut sentinel = RedisSentinel::start();
    let waiting = RedisConfig {
        topology: Topology::Sentinel {
            master: sentinel.master_name().to_owned(),
        },
        wait_replicas: 1,
        wait_timeout: Duration::from_secs(5),
        ..config(&sentinel.sentinel_urls())
    };
    assert_eq!(
        commit_latency(
            "Sentinel, --redis-wait-replicas 1",
            &waiting,
            StateScope::Job
        ),
        0,
        "commits the replica did not confirm"
    );
    let words = Words::new(300, 3);
    let cache = tempfile::tempdir().unwrap();
    let extra = [
        "--redis-sentinel",
        sentinel.master_name(),
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout-ms",
        "200",
        "--retry-backoff-ms",
        "50",
        "--retry-backoff-max-ms",
        "500",
    ];
    let host = Host::spawn(&words.args(&sentinel.sentinel_urls(), &extra), cache.path());
    let on_master = |s: &RedisSentinel| {
        let mut conn = s.conn_to_master();
        job_scope_view(&words, |k| {
            redis::cmd("HGETALL")
                .arg(k)
                .query(&mut conn)
                .unwrap_or_default()
        })
    };
    words.produce_phase(0);
    host.wait_for(MINUTE, "phase 1 committed and replicated", || {
        on_master(&sentinel).0 == words.ends_after(1)
    });

    // Stopped first, so it cannot reconnect once its link is cut.
    sentinel.pause_replica();
    let cut: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query(&mut sentinel.conn_to_master())
        .expect("CLIENT KILL TYPE replica");
    assert_eq!(cut, 1, "the replica's link was cut");
    words.produce_phase(1);
    host.wait_for(MINUTE, "phase 2 committed on the master alone", || {
        on_master(&sentinel).0 == words.ends_after(2)
    });
    host.wait_for(MINUTE, "the unconfirmed commits to be reported", || {
        host.log_text().contains("not confirmed by replicas")
    });

    let old = sentinel.kill_master();
    sentinel.resume_replica();
    sentinel.wait_for_failover(old);
    assert_eq!(
        on_master(&sentinel).0,
        words.ends_after(1),
        "the promoted replica lacks phase 2"
    );
    words.produce_phase(2);
    host.wait_for(
        Duration::from_secs(120),
        "every record committed on the new master",
        || on_master(&sentinel).0 == words.ends_after(3),
    );
    assert_eq!(
        on_master(&sentinel).1,
        expected_counts(words.parts.iter().flatten())
    );
    assert!(
        host.log_text()
            .contains("the stored offset moved backwards")
    );
    drop(host);
    let sentinel_config = RedisConfig {
        topology: Topology::Sentinel {
            master: sentinel.master_name().to_owned(),
        },
        ..config(&sentinel.sentinel_urls())
    };
    commit_latency("Sentinel", &sentinel_config, StateScope::Job);
}

#[test]
fn plain_redis_commit_latency_for_comparison() {
    // The TLS and ACL servers keep data in memory; the cluster and Sentinel nodes fsync
    // every write (append-only file): one baseline of each.
    let memory = streamhost_tests::services::Redis::start_in_memory();
    commit_latency(
        "single server, in memory",
        &config(&memory.url()),
        StateScope::Job,
    );
    let fsync = streamhost_tests::services::Redis::start();
    commit_latency(
        "single server, fsync always",
        &config(&fsync.url()),
        StateScope::Job,
    );
    commit_latency(
        "single server, fsync always",
        &config(&fsync.url()),
        StateScope::Partition,
    );
}
