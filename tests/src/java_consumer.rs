//! What the Java Kafka client (kafka-clients 4.4.0, from the broker's classpath) sees and
//! does, from single-file source programs in `tests/java/` that `java` compiles and runs at
//! once:
//!
//! - `ReadCommitted.java`: what a consumer with `isolation.level=read_committed` hands out
//!   of a topic ([`read_committed_java`]);
//! - `Produce.java`: where the producer's default partitioner puts keyed records
//!   ([`produce_java`]);
//! - `GroupOffsets.java`: a group's committed offsets as `Admin.listConsumerGroupOffsets`
//!   reports them, what lag tools read ([`group_offsets_java`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use crate::reader::ConsumedRecord;
use crate::repo_root;

/// A record as the Java consumer handed it out. A null key or value and an empty one
/// both read as `None`.
pub type JavaRecord = ConsumedRecord;

/// Every partition of `topic` read from the beginning by the Java client with
/// `isolation.level=read_committed`, until its positions reach the last stable offsets
/// and at least `expected` records arrived, or `timeout` passed (the program then says so
/// on stderr, shown here). By partition, then offset. Panics with the program's stderr if
/// it fails.
pub fn read_committed_java(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<JavaRecord> {
    let stdout = run_java(
        "ReadCommitted.java",
        &[
            brokers,
            topic,
            &expected.to_string(),
            &timeout.as_millis().to_string(),
        ],
        None,
    );
    let mut records: Vec<JavaRecord> = stdout.lines().map(parse_line).collect();
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Produces `records` (key, value) to `topic` with the Java producer's default
/// partitioner (no partition given: a key's UTF-8 bytes hashed with murmur2), acks=all,
/// and returns each record's key with the partition its acknowledgement names, in the
/// order of `records`. A key holds no tab and no line break, a value no line break.
/// Panics with the program's stderr if a send fails.
pub fn produce_java(
    brokers: &str,
    topic: &str,
    records: &[(String, String)],
) -> Vec<(String, i32)> {
    for (key, value) in records {
        assert!(
            !key.contains(['\t', '\n', '\r']) && !value.contains(['\n', '\r']),
            "Produce.java reads KEY<TAB>VALUE lines: {key:?}, {value:?}"
        );
    }
    let input: String = records
        .iter()
        .map(|(key, value)| format!("{key}\t{value}\n"))
        .collect();
    let stdout = run_java("Produce.java", &[brokers, topic], Some(input.as_bytes()));
    let placed: Vec<(String, i32)> = stdout
        .lines()
        .map(|line| {
            let (key, partition) = line
                .rsplit_once('\t')
                .unwrap_or_else(|| panic!("a line of Produce.java: {line:?}"));
            (key.to_owned(), partition.parse().expect("a partition"))
        })
        .collect();
    assert_eq!(
        placed.len(),
        records.len(),
        "Produce.java prints a line per record"
    );
    placed
}

/// `group`'s committed offsets by (topic, partition), as the Java Admin client's
/// `listConsumerGroupOffsets` reports them: what lag tools built on it read (Burrow,
/// KEDA's Kafka scaler, kafka-consumer-groups). Partitions without a committed offset are
/// left out: a group with none (or unknown to the broker) gives an empty map.
pub fn group_offsets_java(brokers: &str, group: &str) -> BTreeMap<(String, i32), i64> {
    let stdout = run_java("GroupOffsets.java", &[brokers, group], None);
    stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "a line of GroupOffsets.java: {line:?}");
            (
                (
                    fields[0].to_owned(),
                    fields[1].parse().expect("a partition"),
                ),
                fields[2].parse().expect("an offset"),
            )
        })
        .collect()
}

/// Runs `tests/java/PROGRAM` (a single-file source program) on the Kafka classpath with
/// `args` and, if given, `stdin` as its input; returns its stdout. Panics with its stderr
/// if it fails; when it succeeds, whatever it wrote to stderr (warnings) is shown.
fn run_java(program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let path = repo_root().join("tests/java").join(program);
    let mut child = Command::new("java")
        .arg("-cp")
        .arg(crate::kafka::kafka_classpath())
        // A short-lived client: quick to start, light on a busy machine.
        .args([
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repo_root().join("tests/java/log4j2.properties").display()
        ))
        .arg(&path)
        .args(args)
        .stdin(stdin.map_or_else(Stdio::null, |_| Stdio::piped()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run java (scripts/install-kafka installs it)");
    // The input is written while the output is read, so that no full pipe blocks either
    // side; a program that exits early closes its end (its exit status tells why).
    let pipe = child.stdin.take();
    let out = std::thread::scope(|scope| {
        if let (Some(input), Some(mut pipe)) = (stdin, pipe) {
            scope.spawn(move || {
                let _ = pipe.write_all(input);
            });
        }
        child.wait_with_output()
    })
    .expect("wait for java");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "java {} {} failed with {}:\n{stderr}",
        path.display(),
        args.join(" "),
        out.status
    );
    if !stderr.trim().is_empty() {
        eprint!("{stderr}");
    }
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{program} prints UTF-8: {e}"))
}

/// `PARTITION<TAB>OFFSET<TAB>base64(KEY)<TAB>base64(VALUE)<TAB>HEADERS`, HEADERS
/// comma-separated `base64(NAME)[:base64(VALUE)]`.
fn parse_line(line: &str) -> JavaRecord {
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 5, "a line of ReadCommitted.java: {line:?}");
    let bytes = |s: &str| {
        STANDARD
            .decode(s)
            .unwrap_or_else(|e| panic!("base64 {s:?} in {line:?}: {e}"))
    };
    let text = |s: &str| String::from_utf8(bytes(s)).expect("a UTF-8 header name");
    let optional = |s: &str| (!s.is_empty()).then(|| bytes(s));
    let headers = fields[4]
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| match h.split_once(':') {
            Some((name, value)) => (text(name), Some(bytes(value))),
            None => (text(h), None),
        })
        .collect();
    JavaRecord {
        partition: fields[0].parse().expect("a partition"),
        offset: fields[1].parse().expect("an offset"),
        key: optional(fields[2]),
        value: optional(fields[3]),
        headers,
    }
}
