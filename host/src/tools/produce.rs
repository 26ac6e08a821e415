//! `host produce`: writes the records of a file (text lines, `KEY<TAB>VALUE` lines or
//! JSON Lines, as for `host test`) to a topic. For demos and scripts: Debian's kcat
//! cannot talk to every Kafka-protocol broker this project is tested with.
//!
//! Records land where other clients would put them: a keyed record goes to the partition
//! of the murmur2 hash of its key, as the Java producer (and Kafka Streams) choose, so a
//! job reading co-partitioned topics sees each key in one partition whoever wrote it.
//! Records without a key go round robin over the partitions, one after the other, so a
//! file spreads evenly (librdkafka's default would put a burst into one sticky partition).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::kafka::errors::QuietContext;

use crate::kafka::config::client_config;
use crate::tools::input::{InputFormat, InputRecord, read_records};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ProduceRequest<'a> {
    pub brokers: &'a str,
    pub overrides: &'a [(String, String)],
    pub topic: &'a str,
    /// Every record to this partition, instead of by key / round robin.
    pub partition: Option<i32>,
    pub input: &'a Path,
    pub format: InputFormat,
    /// Take each record's key from this field of its value (a JSON object).
    pub key_field: Option<&'a str>,
}

/// Produces every record of the file and waits for the acknowledgements; returns how
/// many were written to each partition.
pub fn produce(req: &ProduceRequest<'_>) -> anyhow::Result<Vec<(i32, usize)>> {
    let mut records = read_records(req.input, req.format)?;
    if let Some(field) = req.key_field {
        for (i, r) in records.iter_mut().enumerate() {
            r.key = Some(key_from_field(r, field).with_context(|| {
                format!(
                    "{} record {}: --key-field {field}",
                    req.input.display(),
                    i + 1
                )
            })?);
        }
    }
    // Kept beside the producer: its errors say why Kafka did not answer.
    let diagnostics = std::sync::Arc::new(crate::kafka::errors::Diagnostics::default());
    let producer: FutureProducer<QuietContext> = client_config(
        crate::kafka::config::Client::Producer,
        req.brokers,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "20"),
            // Java's partitioner for keyed records (librdkafka's default is CRC32).
            ("partitioner", "murmur2_random"),
        ],
        req.overrides,
    )
    .create_with_context(QuietContext(diagnostics.clone()))
    .context("creating the Kafka producer")?;
    let partitions = partition_count(&producer, &diagnostics, req.brokers, req.topic)?;
    if let Some(p) = req.partition
        && p >= partitions
    {
        bail!(
            "--partition {p}: topic {} has {partitions} partitions (0-{})",
            req.topic,
            partitions - 1
        );
    }
    let mut counts = vec![0usize; partitions as usize];
    let mut pending = Vec::with_capacity(records.len());
    let mut round_robin = 0;
    for r in &records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(req.topic).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        let chosen = match (req.partition, &r.key) {
            (Some(p), _) => Some(p),
            (None, None) => {
                round_robin = (round_robin + 1) % partitions;
                Some(round_robin)
            }
            // librdkafka hashes the key (murmur2, as configured above).
            (None, Some(_)) => None,
        };
        if let Some(p) = chosen {
            rec = rec.partition(p);
        }
        if let Some(t) = r.timestamp {
            rec = rec.timestamp(t);
        }
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((e, back)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::error::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("producing to {}: {e}", req.topic);
                    }
                    producer.poll(Duration::from_millis(50));
                    rec = back;
                }
            }
        }
    }
    for result in futures::executor::block_on(join_all(pending)) {
        match result {
            Ok(Ok(delivered)) => {
                if let Some(n) = counts.get_mut(delivered.partition as usize) {
                    *n += 1;
                }
            }
            Ok(Err((e, _))) => bail!("producing to {} on {}: {e}", req.topic, req.brokers),
            Err(_) => bail!("producing to {}: the producer closed", req.topic),
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    Ok((0..partitions).zip(counts).collect())
}

fn partition_count(
    producer: &FutureProducer<QuietContext>,
    diagnostics: &crate::kafka::errors::Diagnostics,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<i32> {
    let md = match producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
    {
        Ok(md) => md,
        Err(e) => {
            if let Some(cause) = diagnostics.configuration_error() {
                bail!("Kafka at {brokers}: {cause}");
            }
            let last = diagnostics.last_error().unwrap_or_else(|| e.to_string());
            bail!(
                "Kafka at {brokers} did not answer within {} s ({last}); check that it is \
                 running and reachable from here, and --brokers (STREAMHOST_BROKERS)",
                METADATA_TIMEOUT.as_secs()
            );
        }
    };
    match md.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().len() as i32)
        }
        _ => bail!("topic {topic} does not exist on {brokers}; create it first"),
    }
}

/// The key a record gets from `--key-field`: that field of its value, a JSON object. A
/// string field is its text; any other JSON value its compact JSON.
fn key_from_field(record: &InputRecord, field: &str) -> anyhow::Result<Vec<u8>> {
    let value = record.value.as_deref().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_slice(value).context("the value is not JSON")?;
    match json.get(field) {
        Some(serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(other) => Ok(other.to_string().into_bytes()),
        None => bail!("the value has no field {field:?}"),
    }
}
