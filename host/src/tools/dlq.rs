//! `host dlq list|replay`: a job's dead letters read back from its dead-letter topic, and
//! their replay through its current plugin (`pipeline::replay`, exactly once into state).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::admin::JobSpec;
use crate::admin::registry::{Reference, Registry};
use crate::kafka::dead_letters::DeadLetterReader;
use crate::pipeline::replay::{ReplayConfig, ReplayedCheck, replay};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::store::redis::{Redis, RedisStore};

struct Resolved {
    redis: Arc<Redis>,
    /// The job's namespace in Redis, and its `host serve` definition if it has one.
    namespace: String,
    spec: Option<JobSpec>,
    dlq_topic: String,
    kafka: Vec<(String, String)>,
}

fn resolve(target: &DlqTarget) -> anyhow::Result<Resolved> {
    let redis = Arc::new(Redis::new(&target.job.redis.config())?);
    let spec = crate::admin::stored_job(&redis, &target.job.job)?;
    let namespace = spec
        .as_ref()
        .map_or_else(|| target.job.job.clone(), |s| s.namespace().to_owned());
    let dlq_topic = target
        .dlq_topic
        .clone()
        .or_else(|| spec.as_ref().and_then(|s| s.settings.dlq_topic.clone()))
        .with_context(|| {
            format!(
                "job {} has no dead-letter topic here: pass --dlq-topic (a `host serve` job \
                 takes it from its settings.dlq_topic)",
                target.job.job
            )
        })?;
    let mut kafka = target.kafka.properties()?;
    if let Some(s) = &spec {
        kafka.extend(s.settings.kafka.clone());
    }
    Ok(Resolved {
        redis,
        namespace,
        spec,
        dlq_topic,
        kafka,
    })
}

fn store(r: &Resolved) -> anyhow::Result<Arc<RedisStore>> {
    Ok(Arc::new(
        RedisStore::open(r.redis.clone(), &r.namespace, &r.namespace, None)
            .with_context(|| format!("opening the state of job {}", r.namespace))?,
    ))
}

pub fn run(cmd: DlqCommand) -> anyhow::Result<()> {
    match cmd {
        DlqCommand::List {
            target,
            limit,
            json,
        } => list(&target, limit, json),
        DlqCommand::Replay {
            target,
            plugin,
            config,
            output_topic,
            from,
            until,
            batch_max_records,
            json,
        } => {
            let r = resolve(&target)?;
            let runtime = Runtime::new(RuntimeOptions::default())
                .context("starting the WebAssembly runtime")?;
            let (plugin, plugin_config, output_topic) = match (&plugin, &r.spec) {
                (Some(path), spec) => (
                    runtime.load_file(path)?,
                    config,
                    output_topic.or_else(|| spec.as_ref().and_then(|s| s.output_topic.clone())),
                ),
                (None, Some(spec)) => {
                    let (_, p) = Registry::new(r.redis.clone())
                        .load(&runtime, &Reference::parse(&spec.plugin)?)
                        .with_context(|| format!("loading {} from the registry", spec.plugin))?;
                    let config = if config.is_empty() {
                        spec.config.clone().into_iter().collect()
                    } else {
                        config
                    };
                    (
                        p,
                        config,
                        output_topic.or_else(|| spec.output_topic.clone()),
                    )
                }
                (None, None) => anyhow::bail!(
                    "job {} is not a `host serve` job: name the plugin to replay through with --plugin",
                    target.job.job
                ),
            };
            let replay_config = ReplayConfig {
                job: r.namespace.clone(),
                dlq_topic: r.dlq_topic.clone(),
                brokers: target.kafka.brokers.clone(),
                kafka: r.kafka.clone(),
                output_topic,
                plugin,
                plugin_config,
                from_ms: from,
                until_ms: until,
                batch_max_records: batch_max_records as usize,
            };
            let stop = crate::job::stop_on_signals()?;
            let report = replay(&replay_config, store(&r)?, &stop)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "replayed {} dead letters of job {} from {} through {} ({} already replayed, {} not this replay's)",
                    report.replayed,
                    r.namespace,
                    r.dlq_topic,
                    report.plugin_version,
                    report.already_replayed,
                    report.skipped
                );
            }
            Ok(())
        }
    }
}

fn list(target: &DlqTarget, limit: usize, json: bool) -> anyhow::Result<()> {
    let r = resolve(target)?;
    let reader = DeadLetterReader::new(&target.kafka.brokers, &r.kafka, &r.dlq_topic)?;
    let store = store(&r)?;
    let mut check = ReplayedCheck::new(&store, &r.dlq_topic);
    for l in reader.newest(&r.namespace, limit)? {
        let replayed = check.replayed(&l)?;
        let source = l.source.as_ref().map_or_else(
            || "?".to_owned(),
            |s| format!("{}/{}@{}", s.topic, s.partition, s.offset),
        );
        if json {
            let line = serde_json::json!({
                "dlq_partition": l.partition, "dlq_offset": l.offset, "timestamp_ms": l.timestamp_ms,
                "source": source, "error": l.error, "plugin_version": l.plugin_version,
                "replayed": replayed,
            });
            println!("{line}");
        } else {
            println!(
                "{}/{}@{}\t{source}\t{}\t{}\t{}",
                r.dlq_topic,
                l.partition,
                l.offset,
                if replayed { "replayed" } else { "pending" },
                l.plugin_version,
                l.error
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DlqTarget {
    #[command(flatten)]
    pub job: crate::tools::state::JobTarget,
    #[command(flatten)]
    pub kafka: crate::kafka::config::KafkaArgs,
    /// The dead-letter topic [default: the `host serve` job's settings.dlq_topic].
    #[arg(long, env = "STREAMHOST_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
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
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::args::parse_key_value)]
        config: Vec<(String, String)>,
        /// Where emits go [default: the `host serve` job's output topic].
        #[arg(long)]
        output_topic: Option<String>,
        /// Only dead letters written at or after this time: unix ms, RFC 3339
        /// (2026-12-01T10:00:00Z), or an age (90m, 2h) [default: every one not yet replayed].
        #[arg(long, value_parser = crate::args::parse_time)]
        from: Option<i64>,
        /// Only dead letters written before this time (same forms as --from).
        #[arg(long, value_parser = crate::args::parse_time)]
        until: Option<i64>,
        /// Dead letters per commit.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_max_records: u64,
        #[arg(long)]
        json: bool,
    },
}
