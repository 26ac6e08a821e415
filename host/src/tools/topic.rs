//! `host topic list|describe|create|consume`: what kcat's `-L` and `-C` and
//! kafka-topics do, through the host's own Kafka client settings (`-X`, `--kafka-config`),
//! so a job's output and dead letters can be looked at as raw records on any broker the
//! host can reach.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::kafka::config::{Client, KafkaArgs, client_config};
use crate::kafka::errors::QuietContext;
use crate::tools::input::bytes_to_json;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// The topics, with their partition counts (kcat -L).
    List {
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// One topic's partitions: leader, replicas, in-sync replicas, first and end offsets.
    Describe {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[arg(short = 't', long)]
        topic: String,
    },
    /// Create a topic.
    Create {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[arg(short = 't', long)]
        topic: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
        replication_factor: i32,
        /// A topic setting, as key=value (repeatable): retention.ms, cleanup.policy, ...
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = crate::args::parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Print a topic's records (kcat -C): key, value, headers, partition and offset.
    Consume(ConsumeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[arg(short = 't', long)]
    pub topic: String,
    /// Only this partition [default: all].
    #[arg(short = 'p', long, value_parser = clap::value_parser!(i32).range(0..))]
    pub partition: Option<i32>,
    /// Where to start: beginning, end, an offset, or -N (the last N records of each
    /// partition).
    #[arg(
        short = 'o',
        long,
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub offset: String,
    /// Start at the first record at or after this time: unix ms, RFC 3339 or an age
    /// (90m); overrides --offset.
    #[arg(long, value_parser = crate::args::parse_time)]
    pub from_time: Option<i64>,
    /// Stop at the end of the partitions (as they are when it gets there) instead of
    /// waiting for more.
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// One JSON object per record instead of text.
    #[arg(short = 'J', long)]
    pub json: bool,
    /// read-committed shows only records of committed transactions (what an
    /// exactly-once job's consumers see); read-uncommitted shows every record.
    #[arg(long, value_enum, default_value = "read-committed")]
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

fn consumer(
    kafka: &KafkaArgs,
    extra: &[(&str, &str)],
) -> anyhow::Result<BaseConsumer<QuietContext>> {
    let mut defaults = vec![
        ("group.id", "streamhost-topic-reader"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "true"),
    ];
    defaults.extend_from_slice(extra);
    client_config(
        Client::Consumer,
        &kafka.brokers,
        &defaults,
        &kafka.properties()?,
    )
    .create_with_context(QuietContext::default())
    .context("creating a Kafka client")
}

/// The topic's partitions, or an error naming the topic and the broker.
fn partitions(
    c: &BaseConsumer<QuietContext>,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<Vec<i32>> {
    let md = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| unreachable_hint(brokers))?;
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => bail!(
            "topic {topic} does not exist on {brokers}; `host topic list` shows the topics, \
             `host topic create -t {topic}` makes it"
        ),
    }
}

fn unreachable_hint(brokers: &str) -> String {
    format!(
        "Kafka at {brokers} did not answer; check that it is running and reachable from \
         here, and --brokers (-b, STREAMHOST_BROKERS)"
    )
}

pub fn run(cmd: TopicCommand) -> anyhow::Result<()> {
    match cmd {
        TopicCommand::List { kafka } => {
            let c = consumer(&kafka, &[])?;
            let md = c
                .fetch_metadata(None, TIMEOUT)
                .with_context(|| unreachable_hint(&kafka.brokers))?;
            let mut topics: Vec<(String, usize)> = md
                .topics()
                .iter()
                .filter(|t| !t.name().starts_with("__"))
                .map(|t| (t.name().to_owned(), t.partitions().len()))
                .collect();
            topics.sort();
            for (name, n) in topics {
                println!("{name}\t{n} partitions");
            }
        }
        TopicCommand::Describe { kafka, topic } => {
            let c = consumer(&kafka, &[])?;
            partitions(&c, &kafka.brokers, &topic)?;
            let md = c
                .fetch_metadata(Some(&topic), TIMEOUT)
                .with_context(|| unreachable_hint(&kafka.brokers))?;
            println!("topic {topic}");
            println!("PARTITION\tLEADER\tREPLICAS\tISR\tFIRST\tEND");
            for t in md.topics().iter().filter(|t| t.name() == topic) {
                for p in t.partitions() {
                    let (low, high) = c
                        .fetch_watermarks(&topic, p.id(), TIMEOUT)
                        .with_context(|| format!("reading the offsets of {topic}/{}", p.id()))?;
                    let list =
                        |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                    println!(
                        "{}\t{}\t{}\t{}\t{low}\t{high}",
                        p.id(),
                        p.leader(),
                        list(p.replicas()),
                        list(p.isr())
                    );
                }
            }
        }
        TopicCommand::Create {
            kafka,
            topic,
            partitions,
            replication_factor,
            config,
        } => {
            let admin: AdminClient<QuietContext> =
                client_config(Client::Consumer, &kafka.brokers, &[], &kafka.properties()?)
                    .create_with_context(QuietContext::default())
                    .context("creating a Kafka admin client")?;
            let mut new = NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(replication_factor),
            );
            for (k, v) in &config {
                new = new.set(k, v);
            }
            let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            let results = block_on(admin.create_topics([&new], &options))?
                .with_context(|| unreachable_hint(&kafka.brokers))?;
            for r in results {
                if let Err((name, code)) = r {
                    bail!("creating topic {name} on {}: {code}", kafka.brokers);
                }
            }
            println!(
                "created {topic}: partitions {partitions}, replication factor {replication_factor}"
            );
        }
        TopicCommand::Consume(args) => consume(&args)?,
    }
    Ok(())
}

/// Runs an admin future to completion on this thread (the CLI has no async runtime).
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the Kafka admin call")?;
    Ok(rt.block_on(f))
}

fn consume(args: &ConsumeArgs) -> anyhow::Result<()> {
    let isolation = match args.isolation {
        Isolation::ReadCommitted => "read_committed",
        Isolation::ReadUncommitted => "read_uncommitted",
    };
    let c = consumer(&args.kafka, &[("isolation.level", isolation)])?;
    let all = partitions(&c, &args.kafka.brokers, &args.topic)?;
    let chosen: Vec<i32> = match args.partition {
        Some(p) if all.contains(&p) => vec![p],
        Some(p) => bail!(
            "topic {} has no partition {p} (it has {})",
            args.topic,
            all.len()
        ),
        None => all,
    };
    let mut tpl = TopicPartitionList::new();
    for &p in &chosen {
        let start = match (args.from_time, args.offset.as_str()) {
            (Some(_), _) => Offset::Beginning,
            (None, "beginning") => Offset::Beginning,
            (None, "end") => Offset::End,
            (None, o) => match o.parse::<i64>() {
                Ok(n) if n >= 0 => Offset::Offset(n),
                Ok(n) => Offset::OffsetTail(-n),
                Err(_) => bail!("--offset {o:?}: use beginning, end, an offset or -N"),
            },
        };
        tpl.add_partition_offset(&args.topic, p, start)
            .context("setting the start offsets")?;
    }
    if let Some(t) = args.from_time {
        let mut times = TopicPartitionList::new();
        for &p in &chosen {
            times.add_partition_offset(&args.topic, p, Offset::Offset(t))?;
        }
        tpl = c
            .offsets_for_times(times, TIMEOUT)
            .with_context(|| format!("finding the offsets at {t} ms"))?;
    }
    c.assign(&tpl).context("assigning the partitions")?;
    let mut open: std::collections::BTreeSet<i32> = chosen.into_iter().collect();
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) if args.exit_at_end => {
                open.remove(&p);
                if open.is_empty() {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => bail!("consuming {}: {e}", args.topic),
            Some(Ok(m)) => {
                let line = if args.json {
                    json_line(&m)
                } else {
                    text_line(&m)
                };
                // A closed pipe (`| head`) ends the read quietly.
                if writeln!(out, "{line}").is_err() {
                    return Ok(());
                }
                printed += 1;
            }
        }
    }
    Ok(())
}

fn headers_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, Option<Vec<u8>>)> {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

fn text_of(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "(null)".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            Err(_) => format!(
                "base64:{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            ),
        },
    }
}

/// `partition@offset<TAB>key<TAB>value<TAB>name=value,...`
fn text_line(m: &rdkafka::message::BorrowedMessage<'_>) -> String {
    let headers: Vec<String> = headers_of(m)
        .iter()
        .map(|(k, v)| format!("{k}={}", text_of(v.as_deref())))
        .collect();
    format!(
        "{}@{}\t{}\t{}\t{}",
        m.partition(),
        m.offset(),
        text_of(m.key()),
        text_of(m.payload()),
        headers.join(",")
    )
}

fn json_line(m: &rdkafka::message::BorrowedMessage<'_>) -> String {
    let headers: Vec<serde_json::Value> = headers_of(m)
        .iter()
        .map(|(k, v)| json!([k, bytes_to_json(v.as_deref())]))
        .collect();
    json!({
        "topic": m.topic(),
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": m.timestamp().to_millis(),
        "key": bytes_to_json(m.key()),
        "value": bytes_to_json(m.payload()),
        "headers": headers,
    })
    .to_string()
}
