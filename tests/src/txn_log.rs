//! Views of a topic written by transactional producers.
//!
//! What consumers are handed: [`TopicReader`] reads every partition of a topic from the
//! beginning with librdkafka and one `isolation.level` (Apache Kafka sends the
//! aborted-transactions list in Fetch, so `read_committed` drops the records of aborted
//! transactions and stops at the last stable offset); [`open_transactions`] tells from
//! the watermarks whether a partition holds records of a transaction that has not ended.
//! The Java client's view is in `java_consumer`.
//!
//! For diagnostics only, the raw log: [`read_log`] fetches a partition's record batches as
//! they are stored (`isolation_level` 0), with their producer ids, epochs and control
//! records, and [`committed_view`] applies the markers as the Kafka consumer protocol
//! defines them: a producer's transactional records become visible at its COMMIT marker
//! and are dropped at its ABORT marker; records with neither by the end are in doubt.
//! Producers are told apart by producer id alone: the abort marker of a fenced
//! transaction may carry another epoch than its records.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;

/// Fetch v4: the first with isolation levels and raw record batches, not flexible.
const FETCH_VERSION: i16 = 4;

/// One record of the log, with its batch's transaction attributes.
#[derive(Debug, Clone)]
pub struct LogRecord {
    pub offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transactional: bool,
    /// A control record: `Some(true)` COMMIT, `Some(false)` ABORT.
    pub marker: Option<bool>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Option<Vec<u8>>>,
}

impl LogRecord {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)?
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// A partition as its markers make it, worked out from the raw log (a diagnostic: what
/// consumers see is [`TopicReader`]'s and the Java client's).
#[derive(Debug, Default)]
pub struct Committed {
    /// Visible data records, in offset order.
    pub visible: Vec<LogRecord>,
    /// Records of aborted transactions.
    pub aborted: usize,
    /// Records of transactions with no marker yet.
    pub in_doubt: usize,
    /// COMMIT markers by producer id and epoch, in log order.
    pub commits: Vec<(i64, i16, i64)>,
    pub aborts: usize,
}

/// Applies the markers of `log` (all of one partition, in offset order).
pub fn committed_view(log: &[LogRecord]) -> Committed {
    let mut view = Committed::default();
    let mut open: BTreeMap<i64, Vec<LogRecord>> = BTreeMap::new();
    for r in log {
        match (r.transactional, r.marker) {
            (false, _) => view.visible.push(r.clone()),
            (true, Some(commit)) => {
                let records = open.remove(&r.producer_id).unwrap_or_default();
                if commit {
                    view.commits
                        .push((r.producer_id, r.producer_epoch, r.offset));
                    view.visible.extend(records);
                } else {
                    view.aborts += 1;
                    view.aborted += records.len();
                }
            }
            (true, None) => open.entry(r.producer_id).or_default().push(r.clone()),
        }
    }
    view.in_doubt = open.values().map(Vec::len).sum();
    view.visible.sort_by_key(|r| r.offset);
    view
}

/// Every record of `topic`/`partition` up to the high watermark, as stored.
pub fn read_log(brokers: &str, topic: &str, partition: i32) -> Vec<LogRecord> {
    let addr = brokers.split(',').next().expect("a broker address");
    let mut tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut out = Vec::new();
    let mut offset = 0i64;
    for correlation in 1.. {
        let (high_watermark, records) = fetch(&mut tcp, correlation, topic, partition, offset);
        let before = offset;
        let mut buf = records;
        while buf.len() >= 12 {
            // baseOffset i64, batchLength i32: a batch cut off at the fetch size ends it.
            let length = i32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
            if buf.len() < 12 + length {
                break;
            }
            let mut batch = buf.split_to(12 + length);
            let set = RecordBatchDecoder::decode(&mut batch)
                .unwrap_or_else(|e| panic!("{topic}/{partition}: a batch at {offset}: {e}"));
            for r in set.records {
                offset = offset.max(r.offset + 1);
                let marker = r.control.then(|| {
                    let key = r.key.as_ref().expect("a control record has a key");
                    let mut k = key.clone();
                    let _version = k.get_i16();
                    k.get_i16() == 1
                });
                out.push(LogRecord {
                    offset: r.offset,
                    producer_id: r.producer_id,
                    producer_epoch: r.producer_epoch,
                    transactional: r.transactional,
                    marker,
                    key: r.key.map(|b| b.to_vec()),
                    value: r.value.map(|b| b.to_vec()),
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.map(|b| b.to_vec())))
                        .collect(),
                });
            }
        }
        if offset >= high_watermark {
            break;
        }
        assert!(
            offset > before,
            "{topic}/{partition}: no progress reading at {offset} (high watermark {high_watermark})"
        );
    }
    out.sort_by_key(|r| r.offset);
    out
}

fn fetch(
    tcp: &mut TcpStream,
    correlation: i32,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i64, Bytes) {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Fetch as i16)
        .with_request_api_version(FETCH_VERSION)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("txn-log-verifier")));
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(8 << 20)
        .with_isolation_level(0)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(8 << 20),
                ]),
        ]);
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, FetchRequest::header_version(FETCH_VERSION))
        .unwrap();
    request.encode(&mut buf, FETCH_VERSION).unwrap();
    tcp.write_all(&(buf.len() as i32).to_be_bytes()).unwrap();
    tcp.write_all(&buf).unwrap();
    let mut len = [0u8; 4];
    tcp.read_exact(&mut len).expect("fetch response length");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    tcp.read_exact(&mut body).expect("fetch response");
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, FetchResponse::header_version(FETCH_VERSION)).unwrap();
    let response = FetchResponse::decode(&mut body, FETCH_VERSION).unwrap();
    let p = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition)
        .unwrap_or_else(|| panic!("no fetch response for {topic}/{partition}"));
    assert_eq!(p.error_code, 0, "fetch {topic}/{partition} at {offset}");
    (p.high_watermark, p.records.unwrap_or_default())
}
