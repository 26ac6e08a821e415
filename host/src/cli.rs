//! Command-line interface of the `host` binary.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::input::InputFormat;
use crate::runtime::{Limits, RuntimeOptions, default_cache_dir};

#[derive(Debug, Parser)]
#[command(
    name = "host",
    version,
    about = "Runs Kafka stream jobs as sandboxed WebAssembly plugins",
    long_about = "Runs Kafka stream jobs as sandboxed WebAssembly plugins.\n\n\
                  `host test` runs a plugin over a file, with no Kafka and no Redis."
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
    /// Run a plugin over a file with no Kafka and no Redis; print emits and state as JSON.
    Test(TestArgs),
}

/// Flags every command that runs a plugin shares.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// The plugin: a compiled WebAssembly component (.wasm).
    #[arg(long, env = "STREAMHOST_PLUGIN")]
    pub plugin: PathBuf,

    /// A setting passed to the plugin's `init`, as key=value (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,

    /// Memory cap per plugin instance, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536), env = "STREAMHOST_PLUGIN_MEMORY_MB")]
    pub plugin_memory_mb: u32,

    /// Wall-clock deadline of one `process` call, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), env = "STREAMHOST_PLUGIN_TIMEOUT_MS")]
    pub plugin_timeout_ms: u64,

    /// Cap on the emits and state writes one batch may buffer, in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536), env = "STREAMHOST_MAX_EFFECTS_MB")]
    pub max_effects_mb: u32,

    /// Where compiled plugins are cached [default: ~/.cache/streamhost/compiled].
    #[arg(long, env = "STREAMHOST_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the plugin every time instead of using the on-disk cache.
    #[arg(long)]
    pub no_compile_cache: bool,
}

impl PluginArgs {
    pub fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            cache_dir: if self.no_compile_cache {
                None
            } else {
                Some(self.cache_dir.clone().unwrap_or_else(default_cache_dir))
            },
            limits: Limits {
                memory_bytes: (self.plugin_memory_mb as usize) << 20,
                call_timeout: Duration::from_millis(self.plugin_timeout_ms),
                effects_bytes: (self.max_effects_mb as usize) << 20,
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub plugin: PluginArgs,

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
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
