//! Timers at scale (issue 15): the window-count plugin (`plugins/window-count`) on
//! librdkafka's mock cluster in this process, 4 partitions, one-hour windows, Redis
//! in memory, the host at its default settings otherwise.
//!
//! * `fill`: 1M records, each of its own key: 1M windows, so 1M pending timers.
//! * `steady, 1M pending` and, as the baseline in the same run, `steady, 1,000 pending`
//!   (a fresh job): the same records over 1,000 keys. Records/s, and Redis commands per
//!   batch (`INFO commandstats`, which counts the commands the scripts run too, over the
//!   batches the host's metrics counted; `evalsha` is the script runs): timer bookkeeping
//!   must not grow with the number pending.
//! * `fire`: one record per partition an hour later closes every window: 1M timers fire,
//!   1M records are emitted, 1M counts are deleted.
//!
//! `STREAMHOST_BENCH_RECORDS` changes 1M. Run with `bench/run timers`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureRecord};
use streamhost_bench::Loader;
use streamhost_tests::http;
use streamhost_tests::services::{Host, Redis, free_port};
use streamhost_tests::{host_bin, plugin};

const PARTITIONS: i32 = 4;
const WINDOW_MS: i64 = 3_600_000;
const BASE_MS: i64 = 1_700_000_000_000 / WINDOW_MS * WINDOW_MS;
const TIMEOUT: Duration = Duration::from_secs(600);

type Mock = MockCluster<'static, DefaultProducerContext>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Produces `n` records round robin; record i has key `key(i)` and event time `ts(i)`.
fn produce(
    brokers: &str,
    topic: &str,
    n: usize,
    key: impl Fn(usize) -> String,
    ts: impl Fn(usize) -> i64,
) {
    let mut loader = Loader::new(brokers);
    for i in 0..n {
        let k = key(i);
        let record = FutureRecord::to(topic)
            .partition((i % PARTITIONS as usize) as i32)
            .key(k.as_bytes())
            .payload("x".as_bytes())
            .timestamp(ts(i));
        loader.send(record);
    }
    loader.finish();
}

/// Redis commands run so far, by name (`INFO commandstats`: the scripts' own commands
/// count too), without those this benchmark sends to watch progress.
fn commands(redis: &Redis) -> BTreeMap<String, u64> {
    redis
        .command_stats()
        .into_iter()
        .filter(|(name, _)| !["info", "hgetall", "zcard", "hlen"].contains(&name.as_str()))
        .map(|(name, (calls, _))| (name, calls))
        .collect()
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The sum of a counter family's samples in a metrics exposition (`_total` samples).
fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Phase {
    elapsed: Duration,
    batches: f64,
    commands: BTreeMap<String, u64>,
    fired: f64,
}

/// Runs the job `group` on `topic` until `done`, then stops it.
fn run(
    brokers: &str,
    redis: &Redis,
    group: &str,
    topic: &str,
    cache: &Path,
    mut done: impl FnMut(&Redis) -> bool,
) -> Phase {
    let wasm = plugin("window-count");
    let metrics = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "run",
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--topic",
        topic,
        "--brokers",
        brokers,
        "--redis",
        &redis.url(),
        "--group",
        group,
        "--partitions",
        "0,1,2,3",
        "--config",
        &format!("window-ms={WINDOW_MS}"),
        "--output-topic",
        "windows",
        "--metrics-addr",
        &metrics,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let before = commands(redis);
    let started = Instant::now();
    let mut host = Host::spawn(&args, cache);
    host.wait_for(TIMEOUT, "the phase to finish", || done(redis));
    let elapsed = started.elapsed();
    let after = commands(redis);
    let text = http::request(&metrics, "GET", "/metrics", None, &[])
        .map(|r| r.text())
        .unwrap_or_default();
    host.signal(15);
    let status = host.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "host exited {status}: {}",
        host.log_text()
    );
    Phase {
        elapsed,
        batches: metric_sum(&text, "streamhost_batches_total", "outcome=\"ok\""),
        commands: delta(&after, &before),
        fired: metric_sum(&text, "streamhost_timers_fired_total", ""),
    }
}

fn committed(redis: &Redis, group: &str, topic: &str) -> usize {
    redis.offsets(group, topic).values().sum::<i64>() as usize
}

fn pending(redis: &Redis, group: &str, topic: &str) -> usize {
    (0..PARTITIONS)
        .map(|p| {
            redis::cmd("ZCARD")
                .arg(format!(
                    "streamhost:{{{group}}}:timers:{group}:{topic}:{p}:event"
                ))
                .query::<usize>(&mut redis.conn())
                .expect("ZCARD")
        })
        .sum()
}

fn report(name: &str, records: usize, p: &Phase) {
    let total: u64 = p.commands.values().sum();
    let per_batch = total as f64 / p.batches.max(1.0);
    let detail: Vec<String> = p
        .commands
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / p.batches.max(1.0)))
        .collect();
    println!(
        "  {name:<24} {records:>9} records in {:>6.2} s = {:>9.0} records/s; {:>6.0} batches, {per_batch:.2} Redis commands per batch ({})",
        p.elapsed.as_secs_f64(),
        records as f64 / p.elapsed.as_secs_f64(),
        p.batches,
        detail.join(", ")
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_number("STREAMHOST_BENCH_RECORDS", 1_000_000);
    let steady = n.max(1000);
    let cache = tempfile::tempdir().expect("cache dir");
    // Compile the plugin once, outside the timings.
    let warm = std::process::Command::new(host_bin())
        .args(["test", "--plugin"])
        .arg(plugin("window-count"))
        .arg("--input")
        .arg("/dev/null")
        .env("STREAMHOST_CACHE_DIR", cache.path())
        .output()
        .expect("host test");
    assert!(
        warm.status.success(),
        "{}",
        String::from_utf8_lossy(&warm.stderr)
    );

    let mock: Mock = MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    for topic in ["clicks", "fresh", "windows"] {
        mock.create_topic(topic, PARTITIONS, 1).expect("topic");
    }
    let redis = Redis::start_in_memory();
    println!(
        "\ntimers: window-count, {PARTITIONS} partitions, one-hour windows, mock cluster in this process, Redis in memory\n"
    );

    // 1M keys in one window: 1M pending timers.
    produce(
        &brokers,
        "clicks",
        n,
        |i| format!("user-{i}"),
        |i| BASE_MS + (i / 1000) as i64,
    );
    let fill = run(&brokers, &redis, "wc", "clicks", cache.path(), |r| {
        committed(r, "wc", "clicks") >= n
    });
    let timers = pending(&redis, "wc", "clicks");
    assert_eq!(timers, n, "one pending timer per key");
    report(&format!("fill ({n} new timers)"), n, &fill);

    // The same records over 1,000 keys, with the 1M pending and, as the baseline, with
    // none (a fresh job on a fresh topic).
    let hot = |i: usize| format!("hot-{}", i % 1000);
    let later = |i: usize| BASE_MS + 1_000_000 + (i / 1000) as i64;
    produce(&brokers, "clicks", steady, hot, later);
    produce(&brokers, "fresh", steady, hot, later);
    let with = run(&brokers, &redis, "wc", "clicks", cache.path(), |r| {
        committed(r, "wc", "clicks") >= n + steady
    });
    let without = run(&brokers, &redis, "fresh", "fresh", cache.path(), |r| {
        committed(r, "fresh", "fresh") >= steady
    });
    let pending_now = pending(&redis, "wc", "clicks");
    report(&format!("steady, {pending_now} pending"), steady, &with);
    report(
        &format!("steady, {} pending", pending(&redis, "fresh", "fresh")),
        steady,
        &without,
    );
    let per = |p: &Phase| p.commands.values().sum::<u64>() as f64 / p.batches.max(1.0);
    println!(
        "  ratio records/s with {pending_now} pending / 1,000 pending: {:.2}x; Redis commands per batch: {:.2} vs {:.2}",
        without.elapsed.as_secs_f64() / with.elapsed.as_secs_f64(),
        per(&with),
        per(&without)
    );

    // An hour later: every window closes.
    produce(
        &brokers,
        "clicks",
        PARTITIONS as usize,
        |i| format!("flush-{i}"),
        |_| BASE_MS + 3 * WINDOW_MS,
    );
    let total = n + steady + PARTITIONS as usize;
    let fire = run(&brokers, &redis, "wc", "clicks", cache.path(), |r| {
        committed(r, "wc", "clicks") >= total && pending(r, "wc", "clicks") == PARTITIONS as usize
    });
    let left: usize = redis::cmd("HLEN")
        .arg("streamhost:{wc}:state")
        .query(&mut redis.conn())
        .expect("HLEN");
    assert_eq!(
        left, PARTITIONS as usize,
        "only the flush windows are left in state"
    );
    println!(
        "  fire: {:.0} timers fired in {:.2} s = {:.0} timers/s (each a state read, an emitted record and a delete); {:.0} batches, {:.2} Redis commands per batch",
        fire.fired,
        fire.elapsed.as_secs_f64(),
        fire.fired / fire.elapsed.as_secs_f64(),
        fire.batches,
        per(&fire)
    );
    let memory: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut redis.conn())
        .expect("INFO");
    let used = memory
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_peak_human:"))
        .unwrap_or("?");
    println!("  Redis peak memory: {used}");
}
