//! `host offsets show|set|reset`: the consumer-groups tool for offsets kept in Redis.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::kafka::config::client_config;
use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use crate::store::redis::RedisStore;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `set` moves offsets to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Earliest,
    Latest,
    Offset(i64),
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(Target::Earliest),
            "latest" => Ok(Target::Latest),
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Target::Offset)
                .ok_or_else(|| format!("expected earliest, latest or an offset >= 0, got {s:?}")),
        }
    }
}

pub struct Kafka {
    consumer: BaseConsumer,
    brokers: String,
}

impl Kafka {
    pub fn connect(brokers: &str, overrides: &[(String, String)]) -> anyhow::Result<Self> {
        let c = client_config(
            crate::kafka::config::Client::Consumer,
            brokers,
            &[("enable.auto.commit", "false")],
            overrides,
        );
        Ok(Self {
            consumer: c.create().context("creating a Kafka client")?,
            brokers: brokers.to_owned(),
        })
    }

    pub fn partitions(&self, topic: &str) -> anyhow::Result<Vec<i32>> {
        match self.existing_partitions(topic)? {
            Some(p) => Ok(p),
            None => bail!("topic {topic} does not exist on {}", self.brokers),
        }
    }

    /// The topic's partitions; `None` when the broker says it does not exist.
    pub fn existing_partitions(&self, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), KAFKA_TIMEOUT)
            .with_context(|| format!("reading metadata of topic {topic} from {}", self.brokers))?;
        let t = md.topics().iter().find(|t| t.name() == topic);
        Ok(match t {
            Some(t) if t.error().is_none() => Some(t.partitions().iter().map(|p| p.id()).collect()),
            _ => None,
        })
    }

    /// (earliest, end) offsets of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, KAFKA_TIMEOUT)
            .with_context(|| {
                format!(
                    "reading the offsets of {topic}/{partition} from {}",
                    self.brokers
                )
            })
    }
}

/// One row of `offsets show`.
pub struct Row {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub end: i64,
}

pub fn show(
    store: &RedisStore,
    kafka: &Kafka,
    group: &str,
    topics: &[String],
    as_json: bool,
) -> anyhow::Result<()> {
    let topics = if topics.is_empty() {
        let known = store.topics()?;
        if known.is_empty() {
            bail!(
                "group {group} has no offsets in Redis (its topic set {} is empty): no job \
                 with --group {group} has run against this Redis; check the group name, and \
                 --redis",
                store.keys().topics()
            );
        }
        known
    } else {
        topics.to_vec()
    };
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for topic in &topics {
        // A topic deleted (or mistyped by a job that then stopped) must not hide the rest.
        let Some(mut partitions) = kafka.existing_partitions(topic)? else {
            missing.push(topic.clone());
            continue;
        };
        let committed = store.offsets(topic, &partitions)?;
        for p in committed.keys() {
            if !partitions.contains(p) {
                partitions.push(*p);
            }
        }
        partitions.sort();
        for p in partitions {
            let (_, end) = kafka.watermarks(topic, p).unwrap_or((0, 0));
            rows.push(Row {
                topic: topic.clone(),
                partition: p,
                committed: committed.get(&p).copied(),
                end,
            });
        }
    }
    // An end offset below the committed one is not "no lag": the broker answered wrong
    // (tansu's ListOffsets(latest) does for batches of several records) or the topic was
    // recreated. The lag is shown as unknown, and said why.
    let lag = |r: &Row| r.committed.filter(|&c| c <= r.end).map(|c| r.end - c);
    let behind = |r: &Row| r.committed.is_some_and(|c| c > r.end);
    if as_json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "topic": r.topic, "partition": r.partition, "committed": r.committed,
                    "end": r.end, "lag": lag(r), "end_below_committed": behind(r),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        for topic in &missing {
            eprintln!(
                "skipped topic {topic}: it does not exist on {}",
                kafka.brokers
            );
        }
        return Ok(());
    }
    println!(
        "{:<24} {:>9} {:>12} {:>12} {:>10}",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for r in &rows {
        let committed = r.committed.map_or("-".to_owned(), |c| c.to_string());
        let shown_lag = match (r.committed, lag(r)) {
            (None, _) => "-".to_owned(),
            (Some(_), Some(l)) => l.to_string(),
            (Some(_), None) => "?".to_owned(),
        };
        println!(
            "{:<24} {:>9} {:>12} {:>12} {:>10}",
            r.topic, r.partition, committed, r.end, shown_lag
        );
    }
    for topic in &missing {
        eprintln!(
            "skipped topic {topic}: it does not exist on {} (its offsets stay in Redis, \
             under {}; `host offsets set` moves them should it come back)",
            kafka.brokers,
            store.keys().offsets(topic, 0)
        );
    }
    if rows.iter().any(behind) {
        println!(
            "LAG ?: the broker reports an end offset below the committed one, so the lag is \
             unknown. Some brokers answer the end offset wrongly (tansu does for batches of \
             several records); or the topic was deleted and created again."
        );
    }
    Ok(())
}

pub struct SetRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partitions: &'a [i32],
    pub to: Target,
    pub force: bool,
}

pub fn set(store: &RedisStore, kafka: &Kafka, req: &SetRequest<'_>) -> anyhow::Result<()> {
    let live = store.live_members()?;
    if !live.is_empty() && !req.force {
        bail!(
            "group {} has {} live member(s) ({}); stop its hosts before moving offsets, or pass --force",
            req.group,
            live.len(),
            live.join(", ")
        );
    }
    let partitions = if req.partitions.is_empty() {
        kafka.partitions(req.topic)?
    } else {
        req.partitions.to_vec()
    };
    let committed = store.offsets(req.topic, &partitions)?;
    let mut new = BTreeMap::new();
    let mut backwards = Vec::new();
    for &p in &partitions {
        let offset = match req.to {
            Target::Offset(n) => n,
            Target::Earliest => kafka.watermarks(req.topic, p)?.0,
            Target::Latest => kafka.watermarks(req.topic, p)?.1,
        };
        if let (Target::Latest, Some(&c)) = (&req.to, committed.get(&p))
            && offset < c
        {
            backwards.push(format!("{}/{p}: end {offset} < committed {c}", req.topic));
        }
        new.insert(p, offset);
    }
    // "latest" should never re-read: an end offset below the committed one means the broker
    // answered wrong (tansu does) or the topic was recreated. Moving back silently would
    // re-process records into exactly-once state.
    if !backwards.is_empty() {
        if !req.force {
            bail!(
                "--to latest would move offsets backwards ({}): the broker reports an end offset \
                 below the committed one, so the records in between would be processed again. \
                 Some brokers answer the end offset wrongly (tansu does). Nothing was changed; \
                 pass --force to move anyway, or --to OFFSET",
                backwards.join(", ")
            );
        }
        eprintln!(
            "warning: moving offsets backwards although --to latest was asked ({}); --force given",
            backwards.join(", ")
        );
    }
    store.set_offsets(req.topic, &new)?;
    for (p, o) in &new {
        println!("{}/{p} -> {o}", req.topic);
    }
    // Replayed records would all be older than the watermark the partition had reached.
    let back: Vec<i32> = new
        .iter()
        .filter(|(p, o)| committed.get(p).is_some_and(|c| *o < c))
        .map(|(p, _)| *p)
        .collect();
    if !back.is_empty() {
        store.forget_clocks(req.topic, &back)?;
        println!(
            "watermark restarted for {}: the records read again are not late",
            back.iter()
                .map(|p| format!("{}/{p}", req.topic))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut keys: Vec<String> = new
        .keys()
        .map(|p| store.keys().offsets(req.topic, *p))
        .collect();
    keys.dedup();
    println!("stored in Redis key {}", keys.join(", "));
    Ok(())
}
