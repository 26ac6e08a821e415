//! What exactly-once output costs (issue 18): the same job over the same data, with
//! `--delivery at-least-once` (the baseline: emits produced and acknowledged before each
//! batch commits) and `--delivery exactly-once` (emits committed to the Redis outbox with
//! the batch, published by the relays in one Kafka transaction per partition per
//! `--transaction-interval-ms`, default 100 ms). Apache Kafka 4.4 (a broker of the
//! benchmark's own), 4 partitions, the echo plugin (one emit per record, so the output is
//! as large as the input), 2M records of ~40 bytes (`STREAMHOST_BENCH_RECORDS`). A run
//! ends when Redis holds every offset and, for exactly-once, the outbox is empty (every
//! emit is in a committed transaction). Five rounds, alternating; the medians and their
//! ratio are printed. Run with `bench/run delivery`.
//!
//! Each run gets a broker and a Redis of its own, holding only the input, so every run
//! starts from the same state. The CPU seconds each run took of the host, the broker
//! (column `kafka`) and Redis are printed with it: on the 2 cores they share they explain
//! most differences between runs.
//!
//! History: before the move to Apache Kafka this benchmark ran on tansu 0.6. There, on one
//! broker shared by all runs (what `STREAMHOST_BENCH_SHARED_BROKER=1` measures), the
//! exactly-once runs after the first were slower and more variable: in one such invocation
//! they took 2.9 to 3.9 CPU seconds of tansu and 16 to 21 of the host, against 2.2 to 2.8
//! and 14 to 18 for at-least-once; what in tansu's filling storage cost that was not
//! known. Those figures are tansu's; the ones on Apache Kafka, fresh and shared broker
//! alike, are still to be measured (`bench/run delivery`).

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use streamhost_bench::{Loader, TextGen};
use streamhost_tests::kafka::Kafka;
use streamhost_tests::services::{Host, Redis, create_topic, free_port};
use streamhost_tests::{http, plugin};

const PARTITIONS: i32 = 4;
const ROUNDS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(600);

fn produce_input(brokers: &str, n: usize) {
    let mut loader = Loader::new(brokers);
    let mut g = TextGen::new(11, 2000);
    for i in 0..n {
        let line = g.line(40);
        let key = format!("k{}", i % 1000);
        let record = FutureRecord::to("in")
            .partition((i % PARTITIONS as usize) as i32)
            .key(key.as_str())
            .payload(line.as_str());
        loader.send(record);
    }
    loader.finish();
}

fn outbox_len(redis: &Redis, group: &str) -> usize {
    let mut c = redis.conn();
    (0..PARTITIONS)
        .map(|p| {
            redis::cmd("XLEN")
                .arg(format!("streamhost:{{{group}}}:outbox:{group}:in:{p}"))
                .query::<usize>(&mut c)
                .unwrap_or(0)
        })
        .sum()
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Run {
    elapsed: Duration,
    transactions: f64,
    /// CPU seconds the run took of the host, the broker and Redis: on 2 cores they share,
    /// what one of them spends the others lack.
    cpu: [f64; 3],
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn run(kafka: &Kafka, redis: &Redis, delivery: &str, round: usize, n: usize, cache: &Path) -> Run {
    let group = format!("{delivery}-{round}");
    let output = format!("out-{group}");
    create_topic(&kafka.brokers(), &output, PARTITIONS);
    let metrics = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "run",
        "--plugin",
        &plugin("echo").to_string_lossy(),
        "--topic",
        "in",
        "--brokers",
        &kafka.brokers(),
        "--redis",
        &redis.url(),
        "--group",
        &group,
        "--partitions",
        "0,1,2,3",
        "--output-topic",
        &output,
        "--delivery",
        delivery,
        "--metrics-addr",
        &metrics,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let services = [
        kafka.pid().expect("kafka runs"),
        redis.pid().expect("redis runs"),
    ];
    let before = services.map(cpu_seconds);
    let started = Instant::now();
    let mut host = Host::spawn(&args, cache);
    host.wait_for(TIMEOUT, "every record committed and published", || {
        let committed: i64 = redis.offsets(&group, "in").values().sum();
        committed >= n as i64 && (delivery != "exactly-once" || outbox_len(redis, &group) == 0)
    });
    let elapsed = started.elapsed();
    let host_cpu = cpu_seconds(host.pid() as u32);
    let after = services.map(cpu_seconds);
    let transactions = http::request(&metrics, "GET", "/metrics", None, &[])
        .map(|r| metric_sum(&r.text(), "streamhost_relay_transactions_total"))
        .unwrap_or(0.0);
    host.signal(15);
    host.wait(Duration::from_secs(60));
    // A run that retried (an aborted transaction, a produce error) says so: its time
    // measures the retries, not the delivery mode.
    let log = host.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    if !warnings.is_empty() {
        println!(
            "  ({delivery}, round {round}: {} warnings; the first: {})",
            warnings.len(),
            warnings[0]
        );
    }
    Run {
        elapsed,
        transactions,
        cpu: [host_cpu, after[0] - before[0], after[1] - before[1]],
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("STREAMHOST_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let shared = std::env::var("STREAMHOST_BENCH_SHARED_BROKER").is_ok_and(|v| v == "1");
    let services = || {
        let (kafka, redis) = (Kafka::start(), Redis::start_in_memory());
        create_topic(&kafka.brokers(), "in", PARTITIONS);
        produce_input(&kafka.brokers(), n);
        (kafka, redis)
    };
    let kept = shared.then(services);
    let cache = tempfile::tempdir().expect("tempdir");
    println!(
        "delivery: {n} records, {PARTITIONS} partitions, echo plugin, Apache Kafka 4.4 ({}), defaults",
        if shared {
            "one broker for every run"
        } else {
            "a fresh broker and Redis per run"
        }
    );
    let (mut alo, mut eos) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for delivery in ["at-least-once", "exactly-once"] {
            let fresh = if shared { None } else { Some(services()) };
            let (kafka, redis) = fresh.as_ref().or(kept.as_ref()).expect("services");
            let r = run(kafka, redis, delivery, round, n, cache.path());
            drop(fresh);
            let txns = if delivery == "exactly-once" {
                format!(
                    "  {:.0} transactions ({:.1} records each)",
                    r.transactions,
                    n as f64 / r.transactions.max(1.0)
                )
            } else {
                String::new()
            };
            println!(
                "  round {round} {delivery:<14} {:>7.2} s {:>10.0} records/s  cpu s: host {:.1} kafka {:.1} redis {:.1}{txns}",
                r.elapsed.as_secs_f64(),
                n as f64 / r.elapsed.as_secs_f64(),
                r.cpu[0],
                r.cpu[1],
                r.cpu[2]
            );
            if delivery == "exactly-once" {
                eos.push(r.elapsed);
            } else {
                alo.push(r.elapsed);
            }
        }
    }
    let (a, e) = (median(alo), median(eos));
    println!(
        "  median at-least-once {:>10.0} records/s, exactly-once {:>10.0} records/s: exactly-once/at-least-once = {:.2}x",
        n as f64 / a.as_secs_f64(),
        n as f64 / e.as_secs_f64(),
        a.as_secs_f64() / e.as_secs_f64()
    );
}
