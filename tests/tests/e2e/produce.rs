//! `host produce` puts records where other Kafka clients would: keyed records by the
//! murmur2 hash of the key (as Java producers and Kafka Streams choose), records without
//! a key spread evenly. The expected partitions are computed here from murmur2 itself,
//! and compared with where the Java producer (kafka-clients) puts the same keys.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use streamhost_tests::host;
use streamhost_tests::java_consumer::produce_java;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{create_topic, wait_until};

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), written from its definition.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition a Java producer's default partitioner picks for a key.
fn java_partition(key: &[u8], partitions: u32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions) as i32
}

#[test]
fn murmur2_matches_the_java_clients_test_vectors() {
    // From the Java client's UtilsTest.testMurmur2.
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        (b"abc", 479470107),
    ];
    for (input, expected) in cases {
        assert_eq!(murmur2(input) as i32, expected, "{input:?}");
    }
}

/// Every record of the topic: (partition, key, value), read until `n` arrived. The
/// consumer only assigns partitions: its group is never joined.
fn read_all(brokers: &str, topic: &str, partitions: i32, n: usize) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "produce-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    wait_until(Duration::from_secs(60), "every record on the topic", || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            out.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
        out.len() >= n
    });
    assert_eq!(out.len(), n, "no more records than produced");
    out
}

fn produce_file(brokers: &str, topic: &str, file: &std::path::Path, extra: &[&str]) {
    let cache = tempfile::tempdir().unwrap();
    let mut args = vec![
        "produce",
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--input",
        file.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    let out = host(&args, cache.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn records_without_a_key_spread_evenly() {
    let brokers = Kafka::shared().brokers();
    let lines = unique("lines");
    create_topic(&brokers, &lines, 4);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    let text: String = (0..4000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    produce_file(&brokers, &lines, &file, &[]);
    let mut per_partition = BTreeMap::new();
    for (p, _, _) in read_all(&brokers, &lines, 4, 4000) {
        *per_partition.entry(p).or_insert(0) += 1;
    }
    assert_eq!(per_partition.len(), 4, "{per_partition:?}");
    for (p, n) in &per_partition {
        assert!(
            (800..=1200).contains(n),
            "partition {p} got {n}: {per_partition:?}"
        );
    }
}

#[test]
fn keyed_records_land_where_a_java_producer_puts_them() {
    let brokers = Kafka::shared().brokers();
    let (tsv_topic, json_topic) = (unique("tsv"), unique("json"));
    create_topic(&brokers, &tsv_topic, 4);
    create_topic(&brokers, &json_topic, 4);
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();

    // KEY<TAB>VALUE lines.
    let tsv = dir.path().join("keyed.tsv");
    let text: String = keys
        .iter()
        .map(|k| format!("{k}\tvalue of {k}\n"))
        .collect();
    std::fs::write(&tsv, text).unwrap();
    produce_file(&brokers, &tsv_topic, &tsv, &["--format", "key-value"]);
    // JSON Lines with the key taken from a field of the value.
    let jsonl = dir.path().join("keyed.jsonl");
    let text: String = keys
        .iter()
        .map(|k| format!("{{\"value\": {{\"user\": \"{k}\", \"n\": 1}}}}\n"))
        .collect();
    std::fs::write(&jsonl, text).unwrap();
    produce_file(&brokers, &json_topic, &jsonl, &["--key-field", "user"]);

    for topic in [&tsv_topic, &json_topic] {
        let records = read_all(&brokers, topic, 4, keys.len());
        let mut seen: Vec<String> = Vec::new();
        for (partition, key, _) in records {
            assert_eq!(
                partition,
                java_partition(&key, 4),
                "{topic}: key {:?}",
                String::from_utf8_lossy(&key)
            );
            seen.push(String::from_utf8_lossy(&key).into_owned());
        }
        seen.sort();
        let mut expected = keys.clone();
        expected.sort();
        assert_eq!(seen, expected, "{topic}: every key once");
        // The keys must really spread, or the check above proves little.
        let used: std::collections::BTreeSet<i32> = keys
            .iter()
            .map(|k| java_partition(k.as_bytes(), 4))
            .collect();
        assert_eq!(used.len(), 4);
    }
}

/// Each key of the topic with the partition it is in (the topic holds `n` records, each
/// key once).
fn key_partitions(brokers: &str, topic: &str, partitions: i32, n: usize) -> BTreeMap<String, i32> {
    let keys: BTreeMap<String, i32> = read_all(brokers, topic, partitions, n)
        .into_iter()
        .map(|(partition, key, _)| (String::from_utf8(key).expect("a UTF-8 key"), partition))
        .collect();
    assert_eq!(keys.len(), n, "{topic}: every key once");
    keys
}

#[test]
fn keyed_records_land_in_the_partitions_the_java_producer_picks() {
    let brokers = Kafka::shared().brokers();
    let (host_topic, java_topic) = (unique("keyed-host"), unique("keyed-java"));
    create_topic(&brokers, &host_topic, 6);
    create_topic(&brokers, &java_topic, 6);
    // Distinct keys of every length murmur2 treats apart (0 to 3 bytes past its 4-byte
    // blocks), some not ASCII.
    const PREFIXES: [&str; 6] = ["", "k", "user-", "clé/", "Straße:", "订单-"];
    let records: Vec<(String, String)> = (0..200)
        .map(|i| {
            let key = format!("{}{i}", PREFIXES[i % PREFIXES.len()]);
            let value = format!("value of {key}");
            (key, value)
        })
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("keyed.tsv");
    let text: String = records
        .iter()
        .map(|(key, value)| format!("{key}\t{value}\n"))
        .collect();
    std::fs::write(&tsv, text).unwrap();
    produce_file(&brokers, &host_topic, &tsv, &["--format", "key-value"]);
    // The Java producer with its default partitioner: no partition given.
    let acknowledged: BTreeMap<String, i32> = produce_java(&brokers, &java_topic, &records)
        .into_iter()
        .collect();

    let by_host = key_partitions(&brokers, &host_topic, 6, records.len());
    let by_java = key_partitions(&brokers, &java_topic, 6, records.len());
    assert_eq!(
        by_java, acknowledged,
        "the Java producer's records are where its acknowledgements say"
    );
    assert_eq!(
        by_host, by_java,
        "host produce puts each key where the Java producer does"
    );
    // The keys must really spread, or the comparison proves little.
    let used: BTreeSet<i32> = by_java.values().copied().collect();
    assert_eq!(used.len(), 6, "{used:?}");
}

#[test]
fn a_missing_key_field_names_the_record() {
    let brokers = Kafka::shared().brokers();
    let json = unique("json");
    create_topic(&brokers, &json, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        "{\"value\": {\"user\": \"a\"}}\n{\"value\": {\"other\": 1}}\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = host(
        &[
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            &json,
            "--input",
            file.to_str().unwrap_or_default(),
            "--key-field",
            "user",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("record 2: --key-field user") && err.contains("no field \"user\""),
        "{err}"
    );
}

/// No broker at the address: one error that says what to check, not librdkafka's
/// transport failures repeated.
#[test]
fn an_unreachable_broker_is_named_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "a\nb\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = host(
        &[
            "produce",
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--input",
            file.to_str().unwrap_or_default(),
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Kafka at 127.0.0.1:1 did not answer") && err.contains("--brokers"),
        "{err}"
    );
    let transport_lines = err.lines().filter(|l| l.contains("Transport")).count();
    assert!(transport_lines <= 1, "{err}");
}
