//! Command-line interface of the `host` binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::job::JobConfig;
use crate::job::settings::{JobSettings, SandboxSettings};
use crate::runtime::{RuntimeOptions, default_cache_dir};
use crate::telemetry::progress::ProgressMode;
use crate::tools::input::InputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "Runs Kafka stream jobs as sandboxed WebAssembly plugins",
    long_about = "Runs Kafka stream jobs as sandboxed WebAssembly plugins.\n\n\
                  `host --plugin P --topic T` (= `host run ...`) consumes Kafka, runs each batch \
                  through the plugin and commits offsets and state to Redis after success.\n\
                  `host test` runs a plugin over a file, with no Kafka and no Redis.\n\
                  `host offsets` shows and moves the offsets kept in Redis.\n\
                  `host new --lang LANG NAME` starts a plugin project.\n\
                  `host plugin push|list|show|rm` manages the plugin registry in Redis.\n\
                  `host serve` runs the admin HTTP API, the console and the jobs defined through it.\n\
                  `host state get|scan` reads a job's state; `host dlq list|replay` its dead letters."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log output format (logs go to stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "STREAMHOST_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume Kafka topics through a plugin, committing to Redis (the default command).
    Run(Box<RunArgs>),
    /// Run a plugin over a file with no Kafka and no Redis; print emits and state as JSON.
    Test(TestArgs),
    /// Show or move a group's offsets kept in Redis.
    #[command(subcommand)]
    Offsets(OffsetsCommand),
    /// Write the records of a file (text lines or JSON Lines) to a topic.
    Produce(ProduceArgs),
    /// Create a new plugin project (build script, contract, sample input) in a language.
    New(NewArgs),
    /// Push, list, show and remove plugins in the registry (kept in Redis).
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Serve the admin HTTP API and the console: upload plugins, run and swap jobs, /metrics.
    Serve(ServeArgs),
    /// Read a job's state in Redis: one key, or the keys under a prefix.
    #[command(subcommand)]
    State(StateCommand),
    /// List a job's dead letters, or replay them through its current plugin.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// Which job: its name in Redis (`host run --job`, or a `host serve` job's id).
#[derive(Debug, Args)]
pub struct JobTarget {
    /// The job: `host run`'s --job (default there: the group), or a `host serve` job id.
    #[arg(long, env = "STREAMHOST_JOB", value_parser = parse_name)]
    pub job: String,
    #[command(flatten)]
    pub redis: RedisArgs,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print one key's value (text, or base64:… when it is not UTF-8).
    Get {
        #[command(flatten)]
        target: JobTarget,
        key: String,
        /// Only this partition's state (--state-scope partition) [default: every partition's].
        #[arg(long)]
        partition: Option<i32>,
    },
    /// Print the keys starting with a prefix, a `KEY<TAB>VALUE` line each (or JSON Lines).
    Scan {
        #[command(flatten)]
        target: JobTarget,
        #[arg(long, default_value = "")]
        prefix: String,
        /// Stop after this many keys [default: all].
        #[arg(long)]
        limit: Option<u64>,
        /// JSON Lines: {"key", "value", "encoding", "partition"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct DlqTarget {
    #[command(flatten)]
    pub job: JobTarget,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// The dead-letter topic [default: the `host serve` job's settings.dlq_topic].
    #[arg(long, env = "STREAMHOST_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// The job's newest dead letters: where they came from, why they failed, whether replayed.
    List {
        #[command(flatten)]
        target: DlqTarget,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Send the job's dead letters back through its current plugin, exactly once into its
    /// state: an interrupted replay run again goes on where it stopped.
    Replay {
        #[command(flatten)]
        target: DlqTarget,
        /// The plugin to run [default: the `host serve` job's current version].
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Its `init` config (KEY=VALUE, repeatable) [default: the `host serve` job's].
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Where emits go [default: the `host serve` job's output topic].
        #[arg(long)]
        output_topic: Option<String>,
        /// Only dead letters written at or after this time: unix ms, RFC 3339
        /// (2026-12-01T10:00:00Z), or an age (90m, 2h) [default: every one not yet replayed].
        #[arg(long, value_parser = parse_time)]
        from: Option<i64>,
        /// Only dead letters written before this time (same forms as --from).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Dead letters per commit.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_max_records: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's language.
    #[arg(long, value_enum)]
    pub lang: crate::tools::new::Lang,
    /// Where to create the project folder NAME.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The plugin's name: a-z, 0-9 and '-', starting with a letter.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    /// Input file, read as for `host test`.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: InputFormat,
    /// Send every record to this partition [default: keyed records by the murmur2 hash of
    /// the key, as Java producers do; records without a key round robin].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Take each record's key from this field of its value, a JSON object (JSON Lines, or
    /// text lines that are JSON).
    #[arg(long)]
    pub key_field: Option<String>,
    #[command(flatten)]
    pub kafka: KafkaArgs,
}

/// The subcommands; anything else as the first argument means `run`.
pub const SUBCOMMANDS: &[&str] = &[
    "run", "test", "offsets", "produce", "new", "plugin", "serve", "state", "dlq", "help",
];

/// Inserts the default subcommand: `host --plugin P --topic T` is `host run --plugin ...`.
pub fn with_default_command(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    // Global options may come first (`host --log-format json test ...`): look past them.
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        match a {
            "--log-format" => i += 2,
            _ if a.starts_with("--log-format=") => i += 1,
            _ => break,
        }
    }
    let first = args.get(i).and_then(|a| a.to_str()).unwrap_or("");
    let is_top_level = matches!(first, "-h" | "--help" | "-V" | "--version");
    if args.len() > 1 && !is_top_level && !SUBCOMMANDS.contains(&first) {
        let mut out = args;
        out.insert(1, "run".into());
        out
    } else {
        args
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,

    /// Topic to consume (repeatable).
    #[arg(
        long = "topic",
        required = true,
        env = "STREAMHOST_TOPICS",
        value_delimiter = ','
    )]
    pub topics: Vec<String>,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group, the namespace of the offsets in Redis [default: the plugin's file stem].
    #[arg(long, env = "STREAMHOST_GROUP", value_parser = parse_name)]
    pub group: Option<String>,

    /// Job name, the namespace of the state in Redis [default: the group].
    #[arg(long, env = "STREAMHOST_JOB", value_parser = parse_name)]
    pub job: Option<String>,

    #[command(flatten)]
    pub redis: RedisArgs,

    /// Topic for records the plugin emits without naming one.
    #[arg(long, env = "STREAMHOST_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,

    /// Read these partitions of every topic, without joining the consumer group
    /// (comma-separated or repeated).
    #[arg(long, env = "STREAMHOST_PARTITIONS", value_delimiter = ',', value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Option<Vec<i32>>,

    #[command(flatten)]
    pub settings: JobSettings,

    /// Serve Prometheus /metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "STREAMHOST_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Off a terminal, log a progress line (records/s, lag, committed offsets) this often,
    /// in seconds; 0 turns it off. On a terminal the line is live instead.
    #[arg(long, default_value_t = 30, env = "STREAMHOST_PROGRESS_INTERVAL_S")]
    pub progress_interval_s: u64,
}

impl RunArgs {
    /// The job these flags describe, running `plugin` (or `native` logic in its place, for
    /// the benchmarks). Refuses settings as the API does (`JobSettings::validate`).
    pub fn into_job(
        self,
        plugin: crate::runtime::Plugin,
        native: Option<crate::pipeline::executor::NativeFactory>,
    ) -> anyhow::Result<JobConfig> {
        use std::io::IsTerminal;
        let group = self
            .group
            .clone()
            .unwrap_or_else(|| plugin.name().to_owned());
        let job = self.job.clone().unwrap_or_else(|| group.clone());
        let mut config = JobConfig::new(
            plugin,
            self.topics,
            group,
            job,
            self.redis.config(),
            self.settings,
        )?;
        config.progress_mode = if std::io::stderr().is_terminal() {
            ProgressMode::Terminal
        } else if self.progress_interval_s == 0 {
            ProgressMode::Off
        } else {
            ProgressMode::Log(Duration::from_secs(self.progress_interval_s))
        };
        config.plugin_config = self.plugin.config;
        config.brokers = self.kafka.brokers.clone();
        config.kafka = self.kafka.properties()?;
        config.output_topic = self.output_topic;
        config.partitions = self.partitions;
        config.metrics_addr = self.metrics_addr;
        config.native = native;
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a component and store it in the registry as NAME@VERSION; prints the digest.
    Push {
        /// The compiled component (.wasm).
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// [default: the next integer version; pushing the newest bytes again is a no-op]
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Largest component accepted, in MiB.
        #[arg(long, default_value_t = 64)]
        max_upload_mb: u64,
    },
    /// List every plugin version in the registry.
    List {
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show the versions of NAME, or one version (NAME@VERSION, NAME@sha256:...).
    Show {
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove NAME@VERSION from the registry.
    Rm {
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Redis holding the registry.
    #[command(flatten)]
    pub redis: RedisArgs,
}

/// How to reach Kafka; every command that makes Kafka clients takes these, and every
/// client it makes (consumer, producers, the offset mirror, metadata look-ups) gets them.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "localhost:9092", env = "STREAMHOST_BROKERS")]
    pub brokers: String,

    /// A librdkafka properties file (key=value lines, `#` comments), as kcat -F or a Java
    /// client.properties take; -X wins over it. Keeps secrets out of argv.
    #[arg(long, value_name = "FILE", env = "STREAMHOST_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,

    /// A librdkafka property, as key=value (repeatable): security.protocol, sasl.*, ssl.*,
    /// compression.type, ... (the environment variable takes several, separated by `;`).
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_key_value, env = "STREAMHOST_KAFKA_PROPERTIES", hide_env_values = true, value_delimiter = ';')]
    pub kafka: Vec<(String, String)>,
}

impl KafkaArgs {
    /// The properties file's, then -X's (later wins).
    pub fn properties(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut all = match &self.kafka_config {
            Some(path) => crate::kafka::config::read_properties(path)?,
            None => Vec::new(),
        };
        all.extend(self.kafka.iter().cloned());
        Ok(all)
    }
}

/// How to reach Redis; every command that uses Redis takes these.
#[derive(Debug, Clone, Args)]
pub struct RedisArgs {
    /// Redis URL, redis://[USER:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS); several,
    /// comma-separated, with --redis-cluster (seed nodes) or --redis-sentinel (Sentinels).
    #[arg(
        long = "redis",
        default_value = "redis://127.0.0.1:6379",
        env = "STREAMHOST_REDIS",
        hide_env_values = true
    )]
    pub url: String,

    /// --redis names seed nodes of a Redis Cluster.
    #[arg(
        long,
        env = "STREAMHOST_REDIS_CLUSTER",
        conflicts_with = "redis_sentinel"
    )]
    pub redis_cluster: bool,

    /// --redis names Sentinels; use the master they know as MASTER_NAME.
    #[arg(long, value_name = "MASTER_NAME", env = "STREAMHOST_REDIS_SENTINEL")]
    pub redis_sentinel: Option<String>,

    /// PEM file of the CA that signed the Redis server's certificate [default: the
    /// system's roots].
    #[arg(long, value_name = "FILE", env = "STREAMHOST_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// PEM client certificate, for a Redis that asks for one (mutual TLS).
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMHOST_REDIS_CERT_FILE",
        requires = "redis_key_file"
    )]
    pub redis_cert_file: Option<PathBuf>,

    /// PEM private key of --redis-cert-file.
    #[arg(
        long,
        value_name = "FILE",
        env = "STREAMHOST_REDIS_KEY_FILE",
        requires = "redis_cert_file"
    )]
    pub redis_key_file: Option<PathBuf>,

    /// File whose first line is the Redis password (instead of one in the URL, which
    /// `ps` would show); the user, if any, stays in the URL.
    #[arg(long, value_name = "FILE", env = "STREAMHOST_REDIS_PASSWORD_FILE")]
    pub redis_password_file: Option<PathBuf>,
}

impl RedisArgs {
    pub fn config(&self) -> crate::store::redis::RedisConfig {
        use crate::store::redis::Topology;
        crate::store::redis::RedisConfig {
            urls: self.url.clone(),
            topology: match (&self.redis_sentinel, self.redis_cluster) {
                (Some(master), _) => Topology::Sentinel {
                    master: master.clone(),
                },
                (None, true) => Topology::Cluster,
                (None, false) => Topology::Single,
            },
            ca_file: self.redis_ca_file.clone(),
            cert_file: self.redis_cert_file.clone(),
            key_file: self.redis_key_file.clone(),
            password_file: self.redis_password_file.clone(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the admin API, /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STREAMHOST_ADMIN_ADDR")]
    pub admin_addr: std::net::SocketAddr,
    /// Bearer token that mutating calls (PUT, POST, PATCH, DELETE) must present. Without
    /// one the server only binds to a loopback address.
    #[arg(long, env = "STREAMHOST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Redis: registry, job definitions, offsets and state.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Kafka for every job (a job's settings.kafka add to these).
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// How long to wait for an unreachable Redis at start-up before giving up, in
    /// milliseconds (each job waits as long for its commits: settings.redis_give_up_ms).
    #[arg(long, default_value_t = 300_000, env = "STREAMHOST_REDIS_GIVE_UP_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_give_up_ms: u64,
    /// Largest plugin upload accepted, in MiB.
    #[arg(long, default_value_t = 64, env = "STREAMHOST_MAX_UPLOAD_MB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_upload_mb: u64,
    /// Where compiled plugins are cached [default: ~/.cache/streamhost/compiled].
    #[arg(long, env = "STREAMHOST_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OffsetsTarget {
    /// Consumer group.
    #[arg(long, env = "STREAMHOST_GROUP", value_parser = parse_name)]
    pub group: String,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Job name, the namespace of the state and offsets in Redis [default: the group].
    #[arg(long, env = "STREAMHOST_JOB", value_parser = parse_name)]
    pub job: Option<String>,

    #[command(flatten)]
    pub redis: RedisArgs,
}

#[derive(Debug, Subcommand)]
pub enum OffsetsCommand {
    /// Committed offset, end offset and lag per partition.
    Show {
        #[command(flatten)]
        target: OffsetsTarget,
        /// Only this topic (repeatable) [default: every topic the group has offsets for].
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move offsets to earliest, latest or a given offset.
    Set {
        #[command(flatten)]
        args: MoveArgs,
        /// earliest, latest, or an offset.
        #[arg(long)]
        to: crate::tools::offsets::Target,
    },
    /// Move offsets back to the earliest.
    Reset {
        #[command(flatten)]
        args: MoveArgs,
    },
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    #[command(flatten)]
    pub target: OffsetsTarget,
    #[arg(long)]
    pub topic: String,
    /// Only these partitions (repeatable) [default: all of the topic's partitions].
    #[arg(long = "partition", value_parser = clap::value_parser!(i32).range(0..))]
    pub partitions: Vec<i32>,
    /// Move offsets even while hosts of the group are running, or backwards on `--to latest`.
    #[arg(long)]
    pub force: bool,
}

/// Flags every command that runs a plugin shares.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// The plugin: a compiled WebAssembly component (.wasm) or a plugin in the registry:
    /// NAME (its newest version), NAME@VERSION or NAME@sha256:<digest>.
    #[arg(long, env = "STREAMHOST_PLUGIN")]
    pub plugin: PathBuf,

    /// A setting passed to the plugin's `init`, as key=value (repeatable; the environment
    /// variable takes several, separated by `;`).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value, env = "STREAMHOST_CONFIG", value_delimiter = ';')]
    pub config: Vec<(String, String)>,

    /// Where compiled plugins are cached [default: ~/.cache/streamhost/compiled].
    #[arg(long, env = "STREAMHOST_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the plugin every time instead of using the on-disk cache.
    #[arg(long)]
    pub no_compile_cache: bool,
}

impl PluginArgs {
    /// The runtime for plugins in `sandbox` (checked: out-of-range limits are refused).
    pub fn runtime_options(&self, sandbox: &SandboxSettings) -> anyhow::Result<RuntimeOptions> {
        sandbox.validate()?;
        Ok(RuntimeOptions {
            cache_dir: if self.no_compile_cache {
                None
            } else {
                Some(self.cache_dir.clone().unwrap_or_else(default_cache_dir))
            },
            limits: sandbox.limits(),
        })
    }
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,

    /// Redis holding the plugin registry, when --plugin names a registry plugin.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The state scope to run with (see `host run --help`): under `partition` the plugin
    /// sees only the state its partition wrote.
    #[arg(long, default_value = "job")]
    pub state_scope: crate::store::StateScope,

    /// Input file: text (one record per line) or JSON Lines.
    #[arg(long)]
    pub input: PathBuf,

    /// How to read the input file.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: InputFormat,

    /// Records per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_size: u64,

    /// Topic name the plugin sees.
    #[arg(long, default_value = "test")]
    pub topic: String,

    /// Partition number the plugin sees.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: i32,

    /// Leave event-time timers pending at the end of the input, instead of moving the
    /// watermark to the end of time (which closes every window).
    #[arg(long)]
    pub no_final_watermark: bool,

    #[command(flatten)]
    pub sandbox: SandboxSettings,

    #[command(flatten)]
    pub time: crate::pipeline::time::TimeSettings,
}

/// `host --version`: what this build can talk to, as `curl -V` says it. The Kafka lines
/// come from the linked librdkafka itself (`builtin.features`), not from a list kept here.
pub fn version_text() -> String {
    let features = crate::kafka::config::builtin_features();
    let has = |f: &str| features.iter().any(|x| x == f);
    let pick = |pairs: &[(&str, &str)]| -> String {
        let names: Vec<&str> = pairs
            .iter()
            .filter(|(f, _)| has(f))
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(" ")
        }
    };
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    format!(
        "{version}\n\
         Kafka: librdkafka {librdkafka}\n\
         \x20 TLS: {tls}\n\
         \x20 SASL: {sasl}\n\
         \x20 compression: {codecs}\n\
         \x20 librdkafka builtin.features: {all}\n\
         Redis: single server, Cluster, Sentinel; TLS (rustls), client certificates, ACL users\n\
         Plugins: WebAssembly components (wasmtime), WIT streamhost:plugin@{wit}",
        version = env!("CARGO_PKG_VERSION"),
        tls = if has("ssl") { "OpenSSL" } else { "none" },
        sasl = pick(&[
            ("sasl_plain", "PLAIN"),
            ("sasl_scram", "SCRAM-SHA-256 SCRAM-SHA-512"),
            ("sasl_oauthbearer", "OAUTHBEARER"),
            ("oidc", "OAUTHBEARER-OIDC"),
            ("sasl_gssapi", "GSSAPI"),
        ]),
        codecs = pick(&[
            ("gzip", "gzip"),
            ("snappy", "snappy"),
            ("lz4", "lz4"),
            ("zstd", "zstd")
        ]),
        all = features.join(","),
        wit = crate::runtime::CONTRACT_VERSION,
    )
}

/// Group and job names become parts of Redis keys: keep them to a safe set.
fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: use 1-200 characters of A-Z a-z 0-9 - _ ."))
    }
}

/// A point in time as unix ms: a number of ms, an RFC 3339 time, or an age before now.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let unix_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| e.to_string())
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return unix_ms(t);
    }
    match humantime::parse_duration(s) {
        Ok(age) => unix_ms(std::time::SystemTime::now() - age),
        Err(_) => Err(format!(
            "{s:?} is not a time: use unix milliseconds, RFC 3339 (2026-12-01T10:00:00Z) or an age (90m, 2h)"
        )),
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::with_default_command;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        std::iter::once("host")
            .chain(a.iter().copied())
            .map(Into::into)
            .collect()
    }

    #[test]
    fn run_is_the_default_command_even_after_global_options() {
        let cases: [(&[&str], &[&str]); 5] = [
            (
                &["--plugin", "p", "--topic", "t"],
                &["run", "--plugin", "p", "--topic", "t"],
            ),
            (&["test", "--plugin", "p"], &["test", "--plugin", "p"]),
            (
                &["--log-format", "json", "test"],
                &["--log-format", "json", "test"],
            ),
            (
                &["--log-format=json", "serve"],
                &["--log-format=json", "serve"],
            ),
            (
                &["--log-format", "json", "--plugin", "p"],
                &["run", "--log-format", "json", "--plugin", "p"],
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(
                with_default_command(args(given)),
                args(expected),
                "{given:?}"
            );
        }
        assert_eq!(with_default_command(args(&["--help"])), args(&["--help"]));
    }
}
