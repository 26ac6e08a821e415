//! Apache Kafka 4.4 for the tests: one combined broker + controller in KRaft mode, its jars
//! resolved from Maven Central by `scripts/install-kafka`, started by `scripts/kafka/start`
//! on free loopback ports with its log in a temporary folder.
//!
//! A JVM broker takes seconds to start and hundreds of MB, so the tests of a run share one
//! ([`Kafka::shared`]), each with its own topics, groups and transactional ids
//! ([`unique`]). A test that kills, restarts or reconfigures the broker starts its own
//! ([`Kafka::start`]).

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::repo_root;
use crate::services::{Process, free_port, wait_until};

/// Where the run's shared broker is: set by `scripts/test`, which starts one broker for
/// all test binaries. Without it each test binary starts one of its own.
const SHARED_ENV: &str = "STREAMHOST_TEST_KAFKA";

/// A name no other test of this run uses: `base-<pid>-<n>`. On a shared broker every
/// topic, group and transactional id a test makes must be one.
pub fn unique(base: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{base}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A broker the test owns: SIGKILL and restart it, or give it settings of its own.
pub struct Kafka {
    /// The PLAINTEXT listener's port, with no authentication (and, with an authorizer,
    /// the principal `User:ANONYMOUS`).
    pub port: u16,
    controller_port: u16,
    settings: Vec<String>,
    format_args: Vec<String>,
    /// Before `dir`: fields drop in order, and the broker dies before its folder goes.
    process: Option<Process>,
    dir: tempfile::TempDir,
}

impl Kafka {
    /// The broker every test of this run shares (see the module's doc).
    pub fn shared() -> &'static SharedKafka {
        static SHARED: OnceLock<SharedKafka> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var(SHARED_ENV) {
            Ok(brokers) if !brokers.is_empty() => {
                wait_ready(&brokers);
                SharedKafka {
                    brokers,
                    _guard: None,
                }
            }
            _ => SharedKafka::start_for_this_process(),
        })
    }

    /// A broker of this test's own, with the default settings.
    pub fn start() -> Kafka {
        Self::start_with(&[])
    }

    /// A broker of this test's own; each of `settings` is a `server.properties` line that
    /// overrides the defaults of `scripts/kafka/start`.
    pub fn start_with(settings: &[&str]) -> Kafka {
        Self::start_custom(|_, _| settings.iter().map(|s| s.to_string()).collect(), &[])
    }

    /// A broker of this test's own: `settings(port, controller_port)` gives the
    /// `server.properties` lines that override the defaults (e.g. listeners beside the
    /// PLAINTEXT one), `format_args` more arguments of the storage format (SCRAM users).
    pub fn start_custom(
        settings: impl FnOnce(u16, u16) -> Vec<String>,
        format_args: &[String],
    ) -> Kafka {
        let (port, controller_port) = (free_port(), free_port());
        let mut kafka = Kafka {
            port,
            controller_port,
            settings: settings(port, controller_port),
            format_args: format_args.to_vec(),
            process: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        kafka.spawn();
        kafka
    }

    fn spawn(&mut self) {
        let child = start_command(self.dir.path(), self.port, self.controller_port)
            .args(&self.settings)
            .env("KAFKA_FORMAT_ARGS", self.format_args.join("\n"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/kafka/start");
        self.process = Some(Process(child));
        wait_ready(&self.brokers());
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id (`None`: not running).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.0.id())
    }

    /// SIGKILLs the broker; its log stays on disk for `restart`.
    pub fn kill9(&mut self) {
        self.process = None;
    }

    /// Starts the broker again on the same ports and log (SIGKILLing it first if it runs).
    pub fn restart(&mut self) {
        self.process = None;
        self.spawn();
    }

    /// The broker's own log, for a failing test's message.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A folder that lives as long as the broker (for its key store, say).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// The run's shared broker.
pub struct SharedKafka {
    brokers: String,
    /// Held for as long as this process lives: when it exits, however it exits, the pipe
    /// closes and the broker's watchdog stops the broker and removes its folder.
    _guard: Option<(Child, ChildStdin)>,
}

impl SharedKafka {
    pub fn brokers(&self) -> String {
        self.brokers.clone()
    }

    fn start_for_this_process() -> SharedKafka {
        let (port, controller_port) = (free_port(), free_port());
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let start = repo_root().join("scripts/kafka/start");
        // The watchdog waits for its stdin to close: a static is never dropped, and a
        // test binary may end by a panic or a signal.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$1" "$2" "$3" & pid=$!; cat >/dev/null; exec 2>/dev/null; kill -9 "$pid"; wait "$pid"; rm -rf "$1""#)
            .arg(&start)
            .arg(&dir)
            .arg(port.to_string())
            .arg(controller_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/kafka/start");
        let stdin = child.stdin.take().expect("the watchdog's stdin");
        let brokers = format!("127.0.0.1:{port}");
        wait_ready(&brokers);
        SharedKafka {
            brokers,
            _guard: Some((child, stdin)),
        }
    }
}

fn start_command(dir: &std::path::Path, port: u16, controller_port: u16) -> Command {
    let mut cmd = Command::new(repo_root().join("scripts/kafka/start"));
    cmd.arg(dir)
        .arg(port.to_string())
        .arg(controller_port.to_string());
    cmd
}

/// Waits until the broker answers a metadata request naming itself, then until its group
/// coordinator answers: a new broker's first group join otherwise waits ~3 s for
/// `__consumer_offsets` to load ("not coordinator"), a delay no later group sees.
fn wait_ready(brokers: &str) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "streamhost-tests-warm-up")
        .set("log_level", "0")
        .create()
        .expect("metadata client");
    let what = format!("Apache Kafka at {brokers} to serve (scripts/kafka/start)");
    wait_until(Duration::from_secs(120), &what, || {
        client
            .fetch_metadata(None, Duration::from_secs(1))
            .is_ok_and(|m| !m.brokers().is_empty())
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("streamhost-tests-warm-up", 0);
    wait_until(Duration::from_secs(60), &what, || {
        client
            .committed_offsets(tpl.clone(), Duration::from_secs(5))
            .is_ok()
    });
}

/// Runs one of Apache Kafka's own command-line tools (a main class of kafka-tools, e.g.
/// `org.apache.kafka.tools.AclCommand`) with the broker's classpath; panics with its
/// output when it fails.
pub fn kafka_tool(main_class: &str, args: &[&str]) -> String {
    let out = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp"])
        .arg(kafka_classpath())
        .arg(main_class)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run java");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{main_class} {args:?}: {text}");
    text
}

/// The classpath of Apache Kafka's jars (broker, clients, tools), from Maven's local
/// repository (`scripts/install-kafka` resolves them once).
pub fn kafka_classpath() -> String {
    static CLASSPATH: OnceLock<String> = OnceLock::new();
    CLASSPATH
        .get_or_init(|| {
            let install = Command::new(repo_root().join("scripts/install-kafka"))
                .output()
                .expect("run scripts/install-kafka");
            assert!(
                install.status.success(),
                "scripts/install-kafka: {}",
                String::from_utf8_lossy(&install.stderr)
            );
            let file = String::from_utf8_lossy(&install.stdout).trim().to_owned();
            std::fs::read_to_string(&file)
                .expect("the Kafka classpath file")
                .trim()
                .to_owned()
        })
        .clone()
}
