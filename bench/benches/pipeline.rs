//! Throughput of the whole pipeline, in one run (issue 14). 1M records of ~40 bytes
//! (`STREAMHOST_BENCH_RECORDS` changes the count), the host at its default settings:
//!
//! * `kafka`: Apache Kafka 4.4 (a broker of the benchmark's own), 16 partitions. A plain
//!   consumer (one rdkafka `BaseConsumer`, librdkafka's defaults, one poll loop: what a
//!   new user writes), the raw per-partition read (each partition's queue drained by its
//!   own thread, one message per call and in bulk as the host reads: the ceiling), `host`
//!   with the WASM wordcount and exactly-once commits to Redis, `native-host`
//!   (bench/src/bin: the count compiled in) and the same job in Python
//!   (bench/python/wordcount.py).
//! * `mock-process`: the same five against librdkafka's mock cluster running in a process
//!   of its own (bench/src/bin/mock-cluster.rs).
//! * `mock`: the mock cluster inside this process, 16 partitions: host WASM, native, and
//!   native without state writes (what exactly-once state costs).
//! * `latency`: produce-to-commit latency (the host's `streamhost_commit_latency_seconds`
//!   histogram) at 10%, 50% and 90% of the `mock` section's WASM rate.
//! * `scale`: host WASM at 1, 4, 16, 64 and 256 partitions: records/s and peak RSS.
//!
//! `STREAMHOST_BENCH_ONLY=kafka,mock-process,mock,latency,scale` picks sections (default
//! all); `STREAMHOST_BENCH_HOST_ARGS="-X fetch.wait.max.ms=10"` adds flags to every host
//! run (experiments: the figures are then not the defaults'). Run with `bench/run pipeline`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamhost::kafka::bulk::{BulkQueue, SourceRecord};
use streamhost::kafka::consumer::SourceContext;
use streamhost_bench::{Loader, TextGen, histogram_buckets, histogram_quantile, vm_hwm_kib};
use streamhost_tests::http;
use streamhost_tests::kafka::Kafka;
use streamhost_tests::services::{Host, Redis, create_topic, free_port};
use streamhost_tests::{host_bin, plugin, repo_root};

const TOPIC: &str = "bench";
const PARTITIONS: i32 = 16;
const TIMEOUT: Duration = Duration::from_secs(300);
const SECTIONS: [&str; 5] = ["kafka", "mock-process", "mock", "latency", "scale"];
const LATENCY_HISTOGRAM: &str = "streamhost_commit_latency_seconds";
const SIGTERM: i32 = 15;

type Mock = MockCluster<'static, DefaultProducerContext>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sections `STREAMHOST_BENCH_ONLY` names, in the order they run; all by default.
fn selected_sections() -> Vec<&'static str> {
    let Ok(list) = std::env::var("STREAMHOST_BENCH_ONLY") else {
        return SECTIONS.to_vec();
    };
    let chosen: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for name in &chosen {
        assert!(
            SECTIONS.contains(name),
            "STREAMHOST_BENCH_ONLY: unknown section {name:?}; known: {}",
            SECTIONS.join(",")
        );
    }
    SECTIONS
        .into_iter()
        .filter(|s| chosen.contains(s))
        .collect()
}

/// Where the benchmark's data lives: a broker, a topic and its partition count.
struct Target<'a> {
    brokers: &'a str,
    topic: &'a str,
    partitions: i32,
}

impl Target<'_> {
    /// How many of `n` records `produce_all` puts in partition `p` (round robin).
    fn share(&self, n: usize, p: i32) -> usize {
        let parts = self.partitions as usize;
        n / parts + usize::from((p as usize) < n % parts)
    }

    fn partition_list(&self) -> String {
        (0..self.partitions)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn produce_all(t: &Target, n: usize) -> Duration {
    let mut loader = Loader::new(t.brokers);
    let started = Instant::now();
    let mut g = TextGen::new(7, 2000);
    for i in 0..n {
        let line = g.line(40);
        let partition = (i % t.partitions as usize) as i32;
        let record = FutureRecord::<(), str>::to(t.topic)
            .partition(partition)
            .payload(&line);
        loader.send(record);
    }
    loader.finish();
    started.elapsed()
}

/// What a new user writes: one consumer with librdkafka's defaults, every partition
/// assigned from the beginning, one poll loop. Returns the whole time and the time to
/// the first record.
fn plain_consume(t: &Target, n: usize) -> (Duration, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", t.brokers)
        .set("group.id", "plain-consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..t.partitions {
        tpl.add_partition_offset(t.topic, p, Offset::Beginning)
            .expect("tpl");
    }
    let started = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let (mut seen, mut bytes) = (0usize, 0usize);
    let mut first = None;
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            bytes += rdkafka::Message::payload(&m.expect("message")).map_or(0, <[u8]>::len);
            seen += 1;
            first.get_or_insert_with(|| started.elapsed());
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "plain consumer stalled at {seen}"
        );
    }
    std::hint::black_box(bytes);
    (started.elapsed(), first.unwrap_or_default())
}

/// Reads all `n` records the way the host does, minus the work: each partition's queue
/// split off and drained by its own thread, one message per call (rust-rdkafka's API) or
/// in bulk (the host's `BulkQueue`): the ceiling of a reader built on librdkafka.
fn raw_read(t: &Target, n: usize, bulk: bool) -> Duration {
    let consumer: std::sync::Arc<BaseConsumer<SourceContext>> = std::sync::Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", t.brokers)
            .set("group.id", "raw-read")
            .set("enable.auto.commit", "false")
            .create_with_context(SourceContext::default())
            .expect("consumer"),
    );
    let mut tpl = TopicPartitionList::new();
    let mut queues = Vec::new();
    for p in 0..t.partitions {
        tpl.add_partition_offset(t.topic, p, Offset::Beginning)
            .expect("tpl");
        let queue = consumer
            .split_partition_queue(t.topic, p)
            .expect("partition queue");
        let bulk = bulk.then(|| BulkQueue::new(&consumer, t.topic, p).expect("bulk queue"));
        queues.push((t.share(n, p), queue, bulk));
    }
    // Connected before the clock starts: assigned before its broker connection is up, a
    // consumer waits ~0.5 s for its first records (the plain consumer shows it).
    consumer
        .fetch_metadata(Some(t.topic), Duration::from_secs(30))
        .expect("metadata");
    let started = Instant::now();
    consumer.assign(&tpl).expect("assign");
    let threads: Vec<_> = queues
        .into_iter()
        .map(|(expected, queue, bulk)| {
            std::thread::spawn(move || {
                let mut seen = 0usize;
                let mut bytes = 0usize;
                let started = Instant::now();
                let mut taken = Vec::new();
                while seen < expected {
                    if let Some(bulk) = &bulk {
                        bulk.consume(Duration::from_millis(100), 10_000, &mut taken);
                        for m in taken.drain(..) {
                            bytes += m.payload().map_or(0, <[u8]>::len);
                            seen += 1;
                        }
                    } else if let Some(m) = queue.poll(Duration::from_millis(100)) {
                        bytes +=
                            rdkafka::Message::payload(&m.expect("message")).map_or(0, <[u8]>::len);
                        seen += 1;
                    }
                    assert!(started.elapsed() < TIMEOUT, "raw read stalled at {seen}");
                }
                drop(queue);
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

fn committed(redis: &Redis, group: &str, topic: &str) -> i64 {
    redis.offsets(group, topic).values().sum()
}

#[derive(Clone, Copy)]
enum Logic {
    Wasm,
    Native,
    NativeStateless,
}

/// Starts the release `host` (or `native-host`) on `t` at its default settings plus
/// `extra`. The partitions are assigned (`--partitions`), as the consumers above do, so
/// no run's time includes a group join.
fn spawn_host(
    t: &Target,
    logic: Logic,
    redis: &Redis,
    group: &str,
    extra: &[&str],
    cache: &Path,
) -> Host {
    let wasm = plugin("wordcount");
    let mut args: Vec<String> = vec![
        "--plugin".into(),
        wasm.to_string_lossy().into_owned(),
        "--topic".into(),
        t.topic.into(),
        "--brokers".into(),
        t.brokers.into(),
        "--redis".into(),
        redis.url(),
        "--group".into(),
        group.into(),
        "--partitions".into(),
        t.partition_list(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // For experiments: flags for every host run of the benchmark (not defaults then).
    if let Ok(more) = std::env::var("STREAMHOST_BENCH_HOST_ARGS") {
        args.extend(more.split_whitespace().map(str::to_owned));
    }
    let native = Path::new(env!("CARGO_BIN_EXE_native-host"));
    match logic {
        Logic::Wasm => {
            args.insert(0, "run".into());
            Host::spawn(&args, cache)
        }
        // native-host is `host run` only: the same flags without the subcommand.
        Logic::Native => Host::spawn_bin(native, &args, cache),
        Logic::NativeStateless => {
            args.push("--native-stateless".into());
            Host::spawn_bin(native, &args, cache)
        }
    }
}

fn stop_host(mut host: Host) {
    host.signal(SIGTERM);
    let status = host.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "host exited {status}: {}",
        host.log_text()
    );
}

struct HostRun {
    /// From process start until Redis shows every offset committed.
    elapsed: Duration,
    /// `VmHWM` of the host process right before it was stopped.
    peak_rss_kib: Option<u64>,
}

/// Runs a host until it committed all `n` records of `t`.
fn host_run(
    t: &Target,
    logic: Logic,
    redis: &Redis,
    group: &str,
    n: usize,
    extra: &[&str],
    cache: &Path,
) -> HostRun {
    let started = Instant::now();
    let host = spawn_host(t, logic, redis, group, extra, cache);
    host.wait_for(TIMEOUT, "the host to commit everything", || {
        committed(redis, group, t.topic) >= n as i64
    });
    let elapsed = started.elapsed();
    let peak_rss_kib = std::fs::read_to_string(format!("/proc/{}/status", host.pid()))
        .ok()
        .as_deref()
        .and_then(vm_hwm_kib);
    stop_host(host);
    HostRun {
        elapsed,
        peak_rss_kib,
    }
}

fn python_run(t: &Target, batch: usize, redis: &Redis, group: &str, n: usize) -> Option<Duration> {
    let python = std::env::var_os("STREAMHOST_BENCH_PYTHON").map(PathBuf::from)?;
    let script = repo_root().join("bench/python/wordcount.py");
    let started = Instant::now();
    let status = Command::new(python)
        .arg(script)
        .args(["--brokers", t.brokers, "--redis", &redis.url()])
        .args(["--topic", t.topic, "--group", group])
        .args(["--partitions", &t.partitions.to_string()])
        .args(["--batch", &batch.to_string(), "--records", &n.to_string()])
        .status()
        .expect("run python");
    assert!(status.success(), "the Python job failed");
    Some(started.elapsed())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// How many times faster `this` ran than `base` over the same records.
fn speedup(this: Duration, base: Duration) -> f64 {
    base.as_secs_f64() / this.as_secs_f64()
}

fn row(name: &str, n: usize, d: Duration) {
    println!(
        "  {name:<48} {:>8.2} s {:>12.0} records/s",
        d.as_secs_f64(),
        rate(n, d)
    );
}

/// Sections `kafka` and `mock-process`: the same data read by a plain consumer, the
/// ceiling, the host with WASM and native logic, and the Python job.
fn readers_section(t: &Target, n: usize, cache: &Path) {
    let redis = Redis::start_in_memory();
    // A warm-up read, so that every variant reads the data alike: from the page cache,
    // through a broker that has served it once.
    raw_read(t, n, false);
    // Single runs of a second move a lot on these two shared cores: the plain consumer and
    // the host WASM job run twice each, apart, and the faster run counts.
    let plain_a = plain_consume(t, n);
    let per_message = raw_read(t, n, false);
    let ceiling = raw_read(t, n, true);
    let plain_b = plain_consume(t, n);
    let (plain, first) = if plain_a.0 <= plain_b.0 {
        plain_a
    } else {
        plain_b
    };
    row(
        "plain consumer (one BaseConsumer, defaults), best of 2",
        n,
        plain,
    );
    println!(
        "    (its first record came {:.2} s after assign)",
        first.as_secs_f64()
    );
    row(
        "raw per-partition read, one message per call",
        n,
        per_message,
    );
    row("raw per-partition read in bulk (ceiling)", n, ceiling);
    let wasm_a = host_run(t, Logic::Wasm, &redis, "wasm", n, &[], cache).elapsed;
    let native = host_run(t, Logic::Native, &redis, "native", n, &[], cache).elapsed;
    let wasm_b = host_run(t, Logic::Wasm, &redis, "wasm-1", n, &[], cache).elapsed;
    let wasm = wasm_a.min(wasm_b);
    row("host, WASM wordcount, exactly-once, best of 2", n, wasm);
    row("host, native wordcount, exactly-once", n, native);
    let python = python_run(t, 1000, &redis, "python", n);
    match python {
        Some(d) => row("Python: confluent-kafka + redis-py, batch 1000", n, d),
        None => println!("  Python job skipped: set STREAMHOST_BENCH_PYTHON (bench/run does)"),
    }
    let counts = redis.counts("wasm");
    assert!(!counts.is_empty(), "the WASM job counted words");
    assert_eq!(
        counts,
        redis.counts("native"),
        "same counts WASM and native"
    );
    if python.is_some() {
        assert_eq!(counts, redis.counts("python"), "same counts as Python");
    }
    println!(
        "  ratio host WASM / plain consumer: {:.2}x (target >= 0.95x, goal >= 1.2x)",
        speedup(wasm, plain)
    );
    // The host's time includes its own start-up; the plain consumer's wait for its first
    // fetch is taken out here, so this ratio does not flatter the host.
    println!(
        "  ratio host WASM / plain consumer from its first record: {:.2}x",
        speedup(wasm, plain.saturating_sub(first))
    );
    println!(
        "  ratio host WASM / ceiling:        {:.2}x",
        speedup(wasm, ceiling)
    );
    println!(
        "  ratio bulk / per-message read:    {:.2}x",
        speedup(ceiling, per_message)
    );
    println!(
        "  ratio WASM / native:              {:.2}x",
        speedup(wasm, native)
    );
    if let Some(p) = python {
        println!(
            "  ratio host WASM / Python:         {:.2}x",
            speedup(wasm, p)
        );
    }
}

/// librdkafka's mock cluster in its own process (bench/src/bin/mock-cluster.rs), killed
/// on drop. It also exits by itself when our end of its stdin closes.
struct MockProcess {
    child: Child,
    brokers: String,
}

impl MockProcess {
    fn start(topic: &str, partitions: i32) -> MockProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-cluster"))
            .args([topic, &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start mock-cluster");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the mock cluster's bootstrap servers");
        let brokers = line.trim().to_owned();
        assert!(
            !brokers.is_empty(),
            "mock-cluster printed no bootstrap servers"
        );
        MockProcess { child, brokers }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Section `mock`: returns the host WASM rate (the latency section's 100%).
fn mock_section(mock: &Mock, n: usize, cache: &Path) -> f64 {
    let brokers = mock.bootstrap_servers();
    let t = Target {
        brokers: &brokers,
        topic: TOPIC,
        partitions: PARTITIONS,
    };
    mock.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    let produced = produce_all(&t, n);
    println!(
        "\nlibrdkafka mock cluster in this process, {PARTITIONS} partitions (produced in {:.1} s):",
        produced.as_secs_f64()
    );
    raw_read(&t, n, false);
    // Single runs here last about a second and move by up to a quarter: each variant
    // runs twice, interleaved, and the faster run counts.
    let redis = Redis::start_in_memory();
    let (mut wasm, mut native, mut stateless) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..2 {
        let suffix = if round == 0 {
            String::new()
        } else {
            format!("-{round}")
        };
        let run = |logic, name: &str| {
            host_run(&t, logic, &redis, &format!("{name}{suffix}"), n, &[], cache).elapsed
        };
        wasm = wasm.min(run(Logic::Wasm, "wasm"));
        native = native.min(run(Logic::Native, "native"));
        stateless = stateless.min(run(Logic::NativeStateless, "stateless"));
    }
    row("host, WASM wordcount, exactly-once (best of 2)", n, wasm);
    row(
        "host, native wordcount, exactly-once (best of 2)",
        n,
        native,
    );
    row(
        "host, native wordcount, no state (offsets only) (best of 2)",
        n,
        stateless,
    );
    let counts = redis.counts("wasm");
    assert!(!counts.is_empty(), "the WASM job counted words");
    assert_eq!(
        counts,
        redis.counts("native"),
        "same counts WASM and native"
    );
    assert!(
        redis.counts("stateless").is_empty(),
        "the stateless job wrote no state"
    );
    println!(
        "  host WASM: {:.0} records/s (target >= 1M/s)",
        rate(n, wasm)
    );
    println!(
        "  ratio native exactly-once / native stateless: {:.2}x (target >= 0.9x)",
        speedup(native, stateless)
    );
    println!(
        "  ratio WASM / native:                          {:.2}x",
        speedup(wasm, native)
    );
    // Not the default: the previous default batch size (ten times more commits).
    const SMALL_BATCH: &[&str] = &["--batch-max-records", "1000"];
    let redis = Redis::start_in_memory();
    let wasm1k = host_run(&t, Logic::Wasm, &redis, "wasm", n, SMALL_BATCH, cache).elapsed;
    let native1k = host_run(&t, Logic::Native, &redis, "native", n, SMALL_BATCH, cache).elapsed;
    assert_eq!(
        redis.counts("wasm"),
        redis.counts("native"),
        "same counts WASM and native, batches of 1000"
    );
    println!(
        "  (not default) --batch-max-records 1000: host WASM {:.0} records/s, native {:.0} records/s",
        rate(n, wasm1k),
        rate(n, native1k)
    );
    rate(n, wasm)
}

/// Produces ~40-byte records round robin at `per_second` for `duration`, pacing in
/// 10 ms slices; returns the records sent and the time sending took.
fn produce_at_rate(
    brokers: &str,
    topic: &str,
    partitions: i32,
    per_second: f64,
    duration: Duration,
) -> (usize, Duration) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let total = (per_second * duration.as_secs_f64()) as usize;
    let slice = Duration::from_millis(10);
    let mut g = TextGen::new(11, 2000);
    let started = Instant::now();
    let mut next = started;
    let mut sent = 0usize;
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * per_second) as usize).min(total);
        while sent < due {
            let line = g.line(40);
            let mut record = BaseRecord::<(), str>::to(topic)
                .partition((sent % partitions as usize) as i32)
                .payload(&line);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        // Queue full: serve delivery reports, then try again.
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                }
            }
            sent += 1;
        }
        // Serve delivery reports until the next slice is due.
        next += slice;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            producer.poll(left);
        }
    }
    let elapsed = started.elapsed();
    producer.flush(Duration::from_secs(60)).expect("flush");
    (sent, elapsed)
}

/// Polls `condition` until it holds or `timeout` passes; tells which.
fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metrics_text(addr: &str) -> Option<String> {
    http::request(addr, "GET", "/metrics", None, &[])
        .filter(|r| r.status == 200)
        .map(|r| r.text())
}

/// Section `latency`: produce-to-commit latency at fractions of `max_rate`.
fn latency_section(mock: &Mock, max_rate: f64, cache: &Path) {
    let seconds = env_number("STREAMHOST_BENCH_LATENCY_SECS", 8);
    let brokers = mock.bootstrap_servers();
    let redis = Redis::start_in_memory();
    println!(
        "\nlatency, mock cluster in this process, {PARTITIONS} partitions, host WASM at defaults, {seconds} s per rate (max rate {max_rate:.0} records/s):"
    );
    println!(
        "  {:>5} {:>12} {:>12} {:>9} {:>9}",
        "rate", "records/s", "achieved/s", "p50 ms", "p99 ms"
    );
    for percent in [10u32, 50, 90] {
        let topic = format!("latency-{percent}");
        mock.create_topic(&topic, PARTITIONS, 1).expect("topic");
        let t = Target {
            brokers: &brokers,
            topic: &topic,
            partitions: PARTITIONS,
        };
        let addr = format!("127.0.0.1:{}", free_port());
        let group = format!("latency-{percent}");
        let host = spawn_host(
            &t,
            Logic::Wasm,
            &redis,
            &group,
            &["--metrics-addr", &addr],
            cache,
        );
        host.wait_for(TIMEOUT, "the host to be ready (/readyz)", || {
            http::request(&addr, "GET", "/readyz", None, &[]).is_some_and(|r| r.status == 200)
        });
        let target_rate = max_rate * f64::from(percent) / 100.0;
        let producer = {
            let (brokers, topic) = (brokers.clone(), topic.clone());
            let duration = Duration::from_secs(seconds as u64);
            std::thread::spawn(move || {
                produce_at_rate(&brokers, &topic, PARTITIONS, target_rate, duration)
            })
        };
        host.wait_for(TIMEOUT, "the paced producer to finish", || {
            producer.is_finished()
        });
        let (sent, took) = producer.join().expect("producer thread");
        host.wait_for(TIMEOUT, "the host to commit everything", || {
            committed(&redis, &group, &topic) >= sent as i64
        });
        // Each record is observed at its commit: let the last ones land.
        let mut exposition = None;
        let mut buckets = None;
        poll_until(Duration::from_secs(10), || {
            exposition = metrics_text(&addr);
            buckets = exposition
                .as_deref()
                .and_then(|m| histogram_buckets(m, LATENCY_HISTOGRAM));
            match &buckets {
                Some(b) => b.last().is_some_and(|&(_, c)| c >= sent as f64),
                None => exposition.is_some(),
            }
        });
        stop_host(host);
        let achieved = rate(sent, took);
        let Some(buckets) = buckets else {
            let why = if exposition.is_some() {
                format!("histogram {LATENCY_HISTOGRAM} not exported by this host")
            } else {
                format!("no answer from http://{addr}/metrics")
            };
            println!("  {percent:>4}% {target_rate:>12.0} {achieved:>12.0}   {why}");
            continue;
        };
        let ms = |q| histogram_quantile(&buckets, q).map_or(f64::NAN, |s| s * 1000.0);
        println!(
            "  {percent:>4}% {target_rate:>12.0} {achieved:>12.0} {:>9.1} {:>9.1}",
            ms(0.5),
            ms(0.99)
        );
    }
}

/// Section `scale`: host WASM at defaults over more and more partitions.
fn scale_section(mock: &Mock, n: usize, cache: &Path) {
    let brokers = mock.bootstrap_servers();
    let redis = Redis::start_in_memory();
    println!("\nscale, mock cluster in this process, host WASM at defaults:");
    println!(
        "  {:>10} {:>9} {:>8} {:>12} {:>14}",
        "partitions", "records", "s", "records/s", "peak RSS MiB"
    );
    for partitions in [1i32, 4, 16, 64, 256] {
        let topic = format!("scale-{partitions}");
        mock.create_topic(&topic, partitions, 1).expect("topic");
        let t = Target {
            brokers: &brokers,
            topic: &topic,
            partitions,
        };
        // The mock cluster keeps only ~100k records per partition.
        let records = n.min(50_000 * partitions as usize);
        produce_all(&t, records);
        let run = host_run(&t, Logic::Wasm, &redis, &topic, records, &[], cache);
        println!(
            "  {partitions:>10} {records:>9} {:>8.2} {:>12.0} {:>14}",
            run.elapsed.as_secs_f64(),
            rate(records, run.elapsed),
            run.peak_rss_kib
                .map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0))
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes every bench target
    }
    let n = env_number("STREAMHOST_BENCH_RECORDS", 1_000_000);
    let sections = selected_sections();
    let cache = tempfile::tempdir().expect("cache dir");
    // Compile the plugin once, outside the timings.
    let warm = Command::new(host_bin())
        .args(["test", "--plugin"])
        .arg(plugin("wordcount"))
        .arg("--input")
        .arg(repo_root().join("examples/words.txt"))
        .env("STREAMHOST_CACHE_DIR", cache.path())
        .output()
        .expect("host test");
    assert!(
        warm.status.success(),
        "host test failed: {}",
        String::from_utf8_lossy(&warm.stderr)
    );

    println!(
        "\npipeline throughput: {n} records of ~40 bytes, host at its default settings; sections: {}\n",
        sections.join(",")
    );
    if sections.contains(&"kafka") {
        let kafka = Kafka::start();
        let brokers = kafka.brokers();
        let t = Target {
            brokers: &brokers,
            topic: TOPIC,
            partitions: PARTITIONS,
        };
        create_topic(&brokers, TOPIC, PARTITIONS);
        let produced = produce_all(&t, n);
        println!(
            "Apache Kafka 4.4, {PARTITIONS} partitions (produced in {:.1} s):",
            produced.as_secs_f64()
        );
        readers_section(&t, n, cache.path());
    }
    if sections.contains(&"mock-process") {
        let mock = MockProcess::start(TOPIC, PARTITIONS);
        let t = Target {
            brokers: &mock.brokers,
            topic: TOPIC,
            partitions: PARTITIONS,
        };
        let produced = produce_all(&t, n);
        println!(
            "\nlibrdkafka mock cluster in its own process, {PARTITIONS} partitions (produced in {:.1} s):",
            produced.as_secs_f64()
        );
        readers_section(&t, n, cache.path());
    }
    let mut max_rate = None;
    if sections.contains(&"mock") {
        let mock = MockCluster::new(1).expect("mock cluster");
        max_rate = Some(mock_section(&mock, n, cache.path()));
    }
    if sections.contains(&"latency") {
        let mock = MockCluster::new(1).expect("mock cluster");
        let max_rate = max_rate.unwrap_or_else(|| {
            // Section `mock` did not run: measure its host WASM rate here.
            let brokers = mock.bootstrap_servers();
            let t = Target {
                brokers: &brokers,
                topic: "max-rate",
                partitions: PARTITIONS,
            };
            mock.create_topic(t.topic, PARTITIONS, 1).expect("topic");
            produce_all(&t, n);
            let redis = Redis::start_in_memory();
            let run = host_run(&t, Logic::Wasm, &redis, "max-rate", n, &[], cache.path());
            rate(n, run.elapsed)
        });
        latency_section(&mock, max_rate, cache.path());
    }
    if sections.contains(&"scale") {
        let mock = MockCluster::new(1).expect("mock cluster");
        scale_section(&mock, n, cache.path());
    }
}
