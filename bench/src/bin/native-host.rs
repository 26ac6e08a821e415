//! `host run` with the word count compiled in instead of the WASM plugin: the
//! benchmarks' native baseline, so that they measure what the sandbox costs with
//! everything else (Kafka, batching, the Redis commit) the same. Takes `host run`'s
//! flags; `--plugin` still names the wordcount component (its name becomes the default
//! group) but it is never run. `--native-stateless` counts the same way but writes no
//! state (offsets are still committed): the baseline for what the state commit costs.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use streamhost::batch::Batch;
use streamhost::batch::effects::Effects;
use streamhost::cli::RunArgs;
use streamhost::pipeline::executor::{NativeFactory, NativeLogic};
use streamhost::runtime::{ProcessError, Runtime};

#[derive(Parser)]
#[command(name = "native-host")]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// Count the words but write no state: each batch commits its offsets only.
    #[arg(long)]
    native_stateless: bool,
}

struct NativeWordcount;

impl NativeLogic for NativeWordcount {
    fn name(&self) -> &str {
        "native-wordcount"
    }

    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        Ok(streamhost_bench::native_process(batch))
    }
}

/// The same count, no state writes.
struct NativeCountOnly;

impl NativeLogic for NativeCountOnly {
    fn name(&self) -> &str {
        "native-wordcount-stateless"
    }

    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        Ok(streamhost_bench::native_count_only(batch))
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STREAMHOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let run = || -> anyhow::Result<()> {
        let stop = streamhost::job::stop_on_signals()?;
        let runtime = Runtime::new(cli.run.plugin.runtime_options(&cli.run.settings.sandbox)?)?;
        let plugin = runtime.load_file(&cli.run.plugin.plugin)?;
        let native: NativeFactory = if cli.native_stateless {
            Arc::new(|| Box::new(NativeCountOnly))
        } else {
            Arc::new(|| Box::new(NativeWordcount))
        };
        streamhost::job::run(cli.run.into_job(plugin, Some(native))?, stop)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
