//! Real services for the tests, started on free loopback ports and stopped on drop:
//! Debian's `redis-server` and the `host` binary (Apache Kafka: `kafka.rs`).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// Polls `condition` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private `redis-server`.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    durable: bool,
    process: Option<Process>,
}

impl Redis {
    /// A server that fsyncs every write (append-only file), so a restart keeps the data.
    pub fn start() -> Redis {
        Self::start_with(true)
    }

    /// A server that keeps data in memory only.
    pub fn start_in_memory() -> Redis {
        Self::start_with(false)
    }

    /// A port and data directory for a server that is not running yet: `restart` starts it
    /// (for tests of a host that must wait for Redis).
    pub fn not_started() -> Redis {
        Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            durable: true,
            process: None,
        }
    }

    fn start_with(durable: bool) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            durable,
            process: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let log = File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(if self.durable {
                ["--appendonly", "yes", "--appendfsync", "always", "--dir"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no", "--dir"]
            })
            .arg(self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup installs it)");
        self.process = Some(Process(child));
        // Listening is not serving: a restarted server answers LOADING while it reads its
        // append-only file back.
        let url = self.url();
        wait_until(Duration::from_secs(20), "redis-server to serve", || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok()
        });
    }

    /// Stops the server (SIGKILL); `restart` brings it back.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Stops the server (SIGKILL) if it runs and starts it (again) on the same port, data
    /// kept.
    pub fn restart(&mut self) {
        self.process = None;
        self.spawn();
    }

    /// The server's process id (`None`: not running).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.0.id())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to redis")
    }

    pub fn hgetall(&self, key: &str) -> BTreeMap<String, String> {
        redis::cmd("HGETALL")
            .arg(key)
            .query(&mut self.conn())
            .expect("HGETALL")
    }

    /// A group's committed offsets of a topic, by partition (the job named as the group,
    /// state scope job).
    pub fn offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        self.hgetall(&offsets_key(group, group, topic))
            .into_iter()
            .map(|(p, o)| (p.parse().expect("partition"), o.parse().expect("offset")))
            .collect()
    }

    /// Writes `n` fields into hash `key`, `field(i)` for i in 0..n, 10,000 per HSET.
    pub fn fill_hash(&self, key: &str, n: usize, field: impl Fn(usize) -> (String, String)) {
        let mut conn = self.conn();
        for chunk in (0..n).step_by(10_000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(key);
            for i in chunk..(chunk + 10_000).min(n) {
                let (k, v) = field(i);
                cmd.arg(k).arg(v);
            }
            cmd.query::<i64>(&mut conn).expect("HSET");
        }
    }

    /// Per Redis command: (calls so far, microseconds per call), from INFO commandstats
    /// (the commands scripts run count too).
    pub fn command_stats(&self) -> BTreeMap<String, (u64, f64)> {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut self.conn())
            .expect("INFO commandstats");
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let field = |f: &str| {
                    rest.split(',')
                        .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                };
                let calls = field("calls")?.parse().ok()?;
                let usec = field("usec_per_call")?.parse().ok()?;
                Some((name.to_owned(), (calls, usec)))
            })
            .collect()
    }

    /// A job's state, values parsed as integers.
    pub fn counts(&self, job: &str) -> BTreeMap<String, i64> {
        self.hgetall(&state_key(job))
            .into_iter()
            .map(|(k, v)| (k, v.parse().expect("integer state")))
            .collect()
    }
}

/// Where a job's offsets of `topic` live (docs/operating.md, "Redis keys"; scope job).
pub fn offsets_key(job: &str, group: &str, topic: &str) -> String {
    format!("streamhost:{{{job}}}:offsets:{group}:{topic}")
}

/// Where a job's state lives (scope job).
pub fn state_key(job: &str) -> String {
    format!("streamhost:{{{job}}}:state")
}

/// Counts by namespace: `None` for a job's one state, `Some(p)` for partition p's.
pub type StateByPartition = BTreeMap<Option<i32>, BTreeMap<String, i64>>;

/// Where partition `p`'s offsets of `topic` and its state live (scope partition).
pub fn partition_keys(job: &str, group: &str, topic: &str, p: i32) -> (String, String) {
    (
        format!("streamhost:{{{job}:{p}}}:offsets:{group}:{topic}"),
        format!("streamhost:{{{job}:{p}}}:state"),
    )
}

/// Creates a topic through the Kafka admin API.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    create_topic_with(brokers, topic, partitions, &[]);
}

/// Creates a topic with topic-level settings (`max.message.bytes`, say).
pub fn create_topic_with(brokers: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .expect("create topic");
    for r in results {
        r.expect("topic created");
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .create()
        .expect("producer")
}

/// Produces `values` to one partition and waits for every acknowledgement.
pub fn produce(producer: &FutureProducer, topic: &str, partition: i32, values: &[Vec<u8>]) {
    let mut pending = Vec::new();
    for v in values {
        loop {
            match producer.send_result(
                FutureRecord::<(), [u8]>::to(topic)
                    .partition(partition)
                    .payload(v.as_slice()),
            ) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, _)) => producer.poll(Duration::from_millis(20)),
            }
        }
    }
    for r in futures::executor::block_on(futures::future::join_all(pending)) {
        r.expect("delivery").expect("acknowledged");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Kafka settings that let a killed host's partitions move on quickly (the classic
/// protocol's session timeout at the broker's minimum).
pub const FAST_GROUP: &[&str] = &[
    "-X",
    "session.timeout.ms=6000",
    "-X",
    "max.poll.interval.ms=8000",
];

/// A running `host` process; its stderr goes to a log file.
pub struct Host {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Host {
    pub fn spawn(args: &[String], cache: &Path) -> Host {
        Self::spawn_bin(&crate::host_bin(), args, cache)
    }

    /// Like `spawn`, for another binary that takes `host`'s flags.
    pub fn spawn_bin(bin: &Path, args: &[String], cache: &Path) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("host.log");
        let child = Command::new(bin)
            .args(args)
            .env("STREAMHOST_CACHE_DIR", cache)
            .env(
                "STREAMHOST_LOG",
                "info,streamhost::pipeline=debug,librdkafka=warn",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("host log"))
            .spawn()
            .expect("start host");
        Host {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "host did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `wait_until`, but a timeout shows this host's log.
    pub fn wait_for(&self, timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; host log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads partition 0 of `topic` from the beginning until `n` records arrived.
pub fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    wait_until(Duration::from_secs(60), "records on the topic", || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.expect("message").detach());
        }
        out.len() >= n
    });
    out
}
