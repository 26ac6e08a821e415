//! librdkafka's mock cluster in a process of its own, for the pipeline benchmark: the
//! broker then runs beside the consumers instead of inside the benchmark's process.
//!
//! `mock-cluster TOPIC PARTITIONS` creates a one-broker cluster with that topic, prints
//! its bootstrap servers as one line on stdout, and serves until stdin reaches end of
//! file (the benchmark holds the pipe, so the broker dies with it).

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

fn main() -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let mut args = std::env::args().skip(1);
        let (Some(topic), Some(partitions), None) = (args.next(), args.next(), args.next()) else {
            anyhow::bail!("usage: mock-cluster TOPIC PARTITIONS");
        };
        let partitions: i32 = partitions
            .parse()
            .with_context(|| format!("partitions: {partitions:?} is not a number"))?;
        let mock = MockCluster::new(1).context("creating the mock cluster")?;
        mock.create_topic(&topic, partitions, 1)
            .with_context(|| format!("creating topic {topic}"))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", mock.bootstrap_servers())?;
        out.flush()?;
        drop(out);
        // Serve until the parent closes our stdin (or dies).
        std::io::stdin()
            .read_to_end(&mut Vec::new())
            .context("reading stdin")?;
        drop(mock);
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mock-cluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}
