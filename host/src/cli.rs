//! Command-line interface of the `host` binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::admin::ServeArgs;
use crate::args::{parse_key_value, parse_name};
use crate::job::JobConfig;
use crate::job::settings::{JobSettings, SandboxSettings};
pub use crate::kafka::config::KafkaArgs;
use crate::runtime::{RuntimeOptions, default_cache_dir};
pub use crate::store::redis::RedisArgs;
use crate::telemetry::progress::ProgressMode;
pub use crate::tools::dlq::{DlqCommand, DlqTarget};
use crate::tools::input::InputFormat;
pub use crate::tools::state::{JobTarget, StateCommand};

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
                  `host state get|scan` reads a job's state; `host dlq list|replay` its dead letters.\n\
                  `host topic list|describe|create|consume` shows topics and their records."
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
    /// List, describe and create topics, and print their records (kcat -L / -C).
    #[command(subcommand)]
    Topic(crate::tools::topic::TopicCommand),
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
    "run", "test", "offsets", "produce", "new", "plugin", "serve", "state", "dlq", "topic", "help",
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
    // Only flags start `run`: a bare word that is no subcommand (`host tset`) goes to
    // clap as it is, which names it and suggests the one meant.
    if args.len() > 1 && !is_top_level && first.starts_with('-') && !SUBCOMMANDS.contains(&first) {
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

    /// Join the group even when a `host serve` job of another plugin owns it (by default
    /// refused: two plugins in one group split its partitions between them).
    #[arg(long, env = "STREAMHOST_FORCE_GROUP")]
    pub force_group: bool,

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

    #[test]
    fn a_mistyped_command_is_named_with_the_one_meant() {
        use clap::CommandFactory;
        let given = with_default_command(args(&["tset", "--plugin", "p"]));
        assert_eq!(given, args(&["tset", "--plugin", "p"]));
        let err = super::Cli::command()
            .try_get_matches_from(given)
            .expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("'tset'") && text.contains("'test'"), "{text}");
    }
}
