//! `host produce`: writes the records of a file (text lines or JSON Lines, as for
//! `host test`) to a topic. For demos and scripts: Debian's kcat cannot talk to every
//! Kafka-protocol broker this project is tested with.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::input::{InputFormat, read_records};

pub fn produce(
    brokers: &str,
    overrides: &[(String, String)],
    topic: &str,
    partition: Option<i32>,
    input: &Path,
    format: InputFormat,
) -> anyhow::Result<usize> {
    let records = read_records(input, format)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20");
    for (k, v) in overrides {
        config.set(k, v);
    }
    let producer: FutureProducer = config.create().context("creating the Kafka producer")?;
    let mut pending = Vec::with_capacity(records.len());
    for r in &records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(p) = partition {
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
                        anyhow::bail!("producing to {topic}: {e}");
                    }
                    producer.poll(Duration::from_millis(50));
                    rec = back;
                }
            }
        }
    }
    for result in futures::executor::block_on(join_all(pending)) {
        match result {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("producing to {topic} on {brokers}: {e}"),
            Err(_) => anyhow::bail!("producing to {topic}: the producer closed"),
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    Ok(records.len())
}
