//! Throughput of the whole pipeline, in one run: 1M records of ~40 bytes over 4
//! partitions, read by
//! * a raw rdkafka consumer (the ceiling: reading and nothing else),
//! * `host` with the WASM wordcount and exactly-once commits to Redis,
//! * `native-host` (bench/src/bin): the same pipeline, the count compiled in,
//! * the same job in Python (confluent-kafka + redis-py, same batch size, same fenced
//!   commit script): bench/python/wordcount.py,
//!
//! first against tansu, then against librdkafka's mock cluster (in this process), where
//! the broker is not the bottleneck. Prints records/s and the ratios.
//!
//! Run with `bench/run pipeline`; `STREAMHOST_BENCH_RECORDS` changes the record count.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamhost_bench::TextGen;
use streamhost_tests::services::{Host, Redis, Tansu, create_topic};
use streamhost_tests::{host_bin, plugin, repo_root};

const TOPIC: &str = "bench";
const TIMEOUT: Duration = Duration::from_secs(300);

fn records() -> usize {
    std::env::var("STREAMHOST_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn produce_all(brokers: &str, partitions: i32, n: usize) -> Duration {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut g = TextGen::new(7, 2000);
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let line = g.line(40);
        let partition = (i % partitions as usize) as i32;
        let mut record = FutureRecord::<(), str>::to(TOPIC)
            .partition(partition)
            .payload(&line);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }
    for r in futures::executor::block_on(futures::future::join_all(pending)) {
        r.expect("delivered").expect("acknowledged");
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    started.elapsed()
}

/// Reads all `n` records the way the host does, minus the work: each partition's queue
/// split off and drained by its own thread. The ceiling for any consumer built on
/// librdkafka's per-message API.
fn raw_read(brokers: &str, partitions: i32, n: usize) -> Duration {
    let consumer: std::sync::Arc<BaseConsumer> = std::sync::Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "raw-read")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer"),
    );
    let mut tpl = TopicPartitionList::new();
    let mut queues = Vec::new();
    for p in 0..partitions {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
        queues.push(
            consumer
                .split_partition_queue(TOPIC, p)
                .expect("partition queue"),
        );
    }
    let started = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let per_partition = n / partitions as usize;
    let threads: Vec<_> = queues
        .into_iter()
        .map(|queue| {
            std::thread::spawn(move || {
                let mut seen = 0usize;
                let mut bytes = 0usize;
                let started = Instant::now();
                while seen < per_partition {
                    if let Some(m) = queue.poll(Duration::from_millis(100)) {
                        bytes +=
                            rdkafka::Message::payload(&m.expect("message")).map_or(0, <[u8]>::len);
                        seen += 1;
                    }
                    assert!(started.elapsed() < TIMEOUT, "raw read stalled at {seen}");
                }
                std::hint::black_box(bytes)
            })
        })
        .collect();
    while threads.iter().any(|t| !t.is_finished()) {
        // The main queue must be served for the partition queues to be fed.
        consumer.poll(Duration::from_millis(10));
    }
    for t in threads {
        t.join().expect("reader thread");
    }
    started.elapsed()
}

fn committed(redis: &Redis, group: &str) -> i64 {
    redis.offsets(group, TOPIC).values().sum()
}

/// Runs the release `host` until it committed `n` records; returns the elapsed time.
#[allow(clippy::too_many_arguments)]
fn host_run(
    brokers: &str,
    partitions: i32,
    batch: usize,
    tuning: &[&str],
    redis: &Redis,
    group: &str,
    native: bool,
    cache: &std::path::Path,
    n: usize,
) -> Duration {
    let wasm = plugin("wordcount");
    let list = (0..partitions)
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut args: Vec<String> = [
        "run",
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--topic",
        TOPIC,
        "--brokers",
        brokers,
        "--redis",
        &redis.url(),
        "--group",
        group,
        "--partitions",
        &list,
        "--batch-max-records",
        &batch.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(tuning.iter().map(|s| s.to_string()));
    let started = Instant::now();
    let mut host = if native {
        // The same flags without the subcommand: native-host is `host run` only.
        Host::spawn_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_native-host")),
            &args[1..],
            cache,
        )
    } else {
        Host::spawn(&args, cache)
    };
    host.wait_for(TIMEOUT, "the host to commit everything", || {
        committed(redis, group) >= n as i64
    });
    let elapsed = started.elapsed();
    host.signal(libc_sigterm());
    assert!(
        host.wait(Duration::from_secs(60)).success(),
        "{}",
        host.log_text()
    );
    elapsed
}

fn libc_sigterm() -> i32 {
    15
}

fn python_run(
    brokers: &str,
    partitions: i32,
    batch: usize,
    redis: &Redis,
    group: &str,
    n: usize,
) -> Option<Duration> {
    let python = std::env::var_os("STREAMHOST_BENCH_PYTHON").map(PathBuf::from)?;
    let script = repo_root().join("bench/python/wordcount.py");
    let started = Instant::now();
    let status = Command::new(python)
        .arg(script)
        .args([
            "--brokers",
            brokers,
            "--redis",
            &redis.url(),
            "--topic",
            TOPIC,
            "--group",
            group,
        ])
        .args([
            "--partitions",
            &partitions.to_string(),
            "--batch",
            &batch.to_string(),
            "--records",
            &n.to_string(),
        ])
        .status()
        .expect("run python");
    assert!(status.success(), "the Python job failed");
    Some(started.elapsed())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn row(name: &str, n: usize, d: Duration) {
    println!(
        "  {name:<44} {:>8.2} s {:>12.0} records/s",
        d.as_secs_f64(),
        rate(n, d)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes every bench target
    }
    let n = records();
    let cache = tempfile::tempdir().expect("cache dir");
    // Compile the plugin once, outside the timings.
    let warm = Command::new(host_bin())
        .args([
            "test",
            "--plugin",
            plugin("wordcount").to_str().unwrap_or_default(),
            "--input",
        ])
        .arg(repo_root().join("examples/words.txt"))
        .env("STREAMHOST_CACHE_DIR", cache.path())
        .output()
        .expect("host test");
    assert!(warm.status.success());

    println!("\npipeline throughput: {n} records of ~40 bytes, batches of up to 1000\n");
    if std::env::var_os("STREAMHOST_BENCH_ONLY_MOCK").is_none() {
        let redis = Redis::start_in_memory();
        let kafka = Tansu::start();
        let brokers = kafka.brokers();
        let parts = 4;
        create_topic(&brokers, TOPIC, parts);
        let produced = produce_all(&brokers, parts, n);
        println!(
            "tansu, {parts} partitions (produced in {:.1} s):",
            produced.as_secs_f64()
        );
        // The first read of fresh data is slower on tansu; measure the second.
        raw_read(&brokers, parts, n);
        let ceiling = raw_read(&brokers, parts, n);
        row("raw rdkafka read (ceiling)", n, ceiling);
        let wasm = host_run(
            &brokers,
            parts,
            1000,
            &[],
            &redis,
            "wasm",
            false,
            cache.path(),
            n,
        );
        row("host, WASM wordcount, exactly-once", n, wasm);
        let native = host_run(
            &brokers,
            parts,
            1000,
            &[],
            &redis,
            "native",
            true,
            cache.path(),
            n,
        );
        row("host, native wordcount, exactly-once", n, native);
        let python = python_run(&brokers, parts, 1000, &redis, "python", n);
        match python {
            Some(d) => row("Python: confluent-kafka + redis-py", n, d),
            None => println!("  Python job skipped: set STREAMHOST_BENCH_PYTHON (bench/run does)"),
        }
        assert_eq!(
            redis.counts("wasm"),
            redis.counts("native"),
            "same counts both ways"
        );
        if python.is_some() {
            assert_eq!(
                redis.counts("wasm"),
                redis.counts("python"),
                "same counts as the Python job"
            );
        }
        println!(
            "  ratio host WASM / ceiling:  {:.2}x (target >= 0.9x)",
            ceiling.as_secs_f64() / wasm.as_secs_f64()
        );
        println!(
            "  ratio host WASM / native:   {:.2}x",
            native.as_secs_f64() / wasm.as_secs_f64()
        );
        if let Some(p) = python {
            println!(
                "  ratio host WASM / Python:   {:.2}x",
                p.as_secs_f64() / wasm.as_secs_f64()
            );
        }
    }
    let mock = MockCluster::new(1).expect("mock cluster");
    // The mock cluster keeps only ~100k records per partition: spread 1M over 16.
    let parts = 16;
    mock.create_topic(TOPIC, parts, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    let produced = produce_all(&brokers, parts, n);
    println!(
        "\nlibrdkafka mock cluster, {parts} partitions (produced in {:.1} s):",
        produced.as_secs_f64()
    );
    raw_read(&brokers, parts, n);
    let ceiling = raw_read(&brokers, parts, n);
    row("raw rdkafka read (ceiling)", n, ceiling);
    // librdkafka's own prefetch defaults: more memory (see docs/operating.md), more speed.
    const BIG_PREFETCH: &[&str] = &[
        "-X",
        "queued.min.messages=100000",
        "-X",
        "fetch.max.bytes=52428800",
    ];
    let configs: [(usize, &[&str], &str); 3] = [
        (1000, &[], "batches of 1000"),
        (10_000, &[], "batches of 10000"),
        (10_000, BIG_PREFETCH, "batches of 10000, large prefetch"),
    ];
    for (batch, tuning, label) in configs {
        let redis = Redis::start_in_memory();
        let wasm = host_run(
            &brokers,
            parts,
            batch,
            tuning,
            &redis,
            "wasm",
            false,
            cache.path(),
            n,
        );
        row(&format!("host, WASM wordcount, {label}"), n, wasm);
        let native = host_run(
            &brokers,
            parts,
            batch,
            tuning,
            &redis,
            "native",
            true,
            cache.path(),
            n,
        );
        row(&format!("host, native wordcount, {label}"), n, native);
        assert_eq!(
            redis.counts("wasm"),
            redis.counts("native"),
            "same counts both ways"
        );
        println!(
            "  {label}: host WASM {:.0} records/s (target >= 1M/s), WASM / native {:.2}x (target >= 0.7x), WASM / ceiling {:.2}x",
            rate(n, wasm),
            native.as_secs_f64() / wasm.as_secs_f64(),
            ceiling.as_secs_f64() / wasm.as_secs_f64()
        );
    }
}
