use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use streamhost::cli::{Cli, Command, LogFormat};
use streamhost::runtime::Runtime;
use streamhost::testrun;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Test(args) => {
            let runtime = Runtime::new(args.plugin.runtime_options())
                .context("starting the WebAssembly runtime")?;
            let plugin = runtime.load_file(&args.plugin.plugin)?;
            let report = testrun::run(
                plugin,
                &testrun::TestRun {
                    input: args.input,
                    format: args.format,
                    batch_size: args.batch_size as usize,
                    topic: args.topic,
                    partition: args.partition,
                    config: args.plugin.config,
                },
            )?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("STREAMHOST_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
