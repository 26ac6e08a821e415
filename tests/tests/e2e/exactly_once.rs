//! `--delivery exactly-once` under faults: SIGKILLs of the host at random moments and
//! between a batch's Redis commit and its Kafka transaction, a Redis SIGKILL and restart,
//! and a paused host whose partitions moved on. Each time, what plain `read_committed`
//! consumers of Apache Kafka get of the output (librdkafka's and the Java client's, read
//! from the beginning to the last stable offsets) holds every input record exactly once,
//! in source order per key, and no transaction of the output is left open. The raw log
//! (`txn_log::read_log`: batches as stored, with their markers) only adds figures, and
//! the order of the producers' epochs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::bindings::{rd_kafka_handle_mock_cluster, rd_kafka_mock_set_apiversion};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streamhost_tests::java_consumer::read_committed_java;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::kafka_secure::{SecureBroker, Security};
use streamhost_tests::plugin_run_args;
use streamhost_tests::reader::{
    ConsumedRecord, Isolation, TopicReader, librdkafka_read, librdkafka_read_committed,
    open_transactions,
};
use streamhost_tests::redis_topologies::{Certs, RedisCluster};
use streamhost_tests::services::{FAST_GROUP, Host, Redis, create_topic, produce, producer};
use streamhost_tests::txn_log::{Committed, committed_view, read_log};

const MINUTE: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;
const KEYS_PER_PARTITION: usize = 7;

/// A test's input and output topics and its group (which also names the job, its Redis
/// keys and its relay's transactional ids): unique on the shared broker.
struct Names {
    input: String,
    output: String,
    group: String,
}

impl Names {
    fn new() -> Names {
        Names {
            input: unique("in"),
            output: unique("out"),
            group: unique("g"),
        }
    }

    /// Creates both topics, `PARTITIONS` partitions each.
    fn create_topics(&self, brokers: &str) {
        create_topic(brokers, &self.input, PARTITIONS);
        create_topic(brokers, &self.output, PARTITIONS);
    }

    /// The Redis outbox of input partition `p` (state scope job).
    fn outbox(&self, p: i32) -> String {
        let (g, input) = (&self.group, &self.input);
        format!("streamhost:{{{g}}}:outbox:{g}:{input}:{p}")
    }
}

/// Produces `n` records to each partition of `topic`, numbered on from `next[p]`: key
/// `pP-kK`, value `P:I:` and `pad` bytes, so every value is unique and each key lives in
/// one partition.
fn produce_chunk(p: &FutureProducer, topic: &str, next: &mut [usize], n: usize, pad: usize) {
    let mut pending = Vec::new();
    let padding = "x".repeat(pad);
    for (partition, start) in next.iter_mut().enumerate() {
        for i in *start..*start + n {
            let key = format!("p{partition}-k{}", i % KEYS_PER_PARTITION);
            let value = format!("{partition}:{i}:{padding}");
            loop {
                match p.send_result(
                    FutureRecord::to(topic)
                        .partition(partition as i32)
                        .key(key.as_bytes())
                        .payload(value.as_bytes()),
                ) {
                    Ok(f) => {
                        pending.push(f);
                        break;
                    }
                    Err(_) => p.poll(Duration::from_millis(20)),
                }
            }
        }
        *start += n;
    }
    for r in futures::executor::block_on(futures::future::join_all(pending)) {
        r.expect("delivery").expect("acknowledged");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn args(brokers: &str, redis: &Redis, names: &Names, extra: &[&str]) -> Vec<String> {
    job_args(brokers, &redis.url(), names, extra)
}

fn job_args(brokers: &str, redis: &str, names: &Names, extra: &[&str]) -> Vec<String> {
    let mut e = FAST_GROUP.to_vec();
    e.extend_from_slice(&[
        "--output-topic",
        &names.output,
        "--delivery",
        "exactly-once",
        "--batch-max-records",
        "50",
        "--retry-backoff-ms",
        "50",
    ]);
    e.extend_from_slice(extra);
    plugin_run_args("echo", brokers, redis, &names.input, &names.group, &e)
}

/// Entries committed in Redis and not yet published (or not yet trimmed).
fn outbox_len(redis: &Redis, names: &Names) -> usize {
    let mut c = redis.conn();
    (0..PARTITIONS)
        .map(|p| {
            redis::cmd("XLEN")
                .arg(names.outbox(p))
                .query::<usize>(&mut c)
                .unwrap_or(0)
        })
        .sum()
}

fn committed_records(redis: &Redis, names: &Names) -> i64 {
    redis.offsets(&names.group, &names.input).values().sum()
}

/// The verdict: the output as librdkafka's and as the Java client's `read_committed`
/// consumer get it holds every input record exactly once, in source order per key, and
/// no transaction of the output is left open. Returns librdkafka's records.
fn assert_exactly_once(brokers: &str, names: &Names, next: &[usize]) -> Vec<ConsumedRecord> {
    let open = open_transactions(brokers, &names.output);
    assert!(
        open.is_empty(),
        "{}: transactions that never ended (partition, last stable offset, high \
         watermark): {open:?}",
        names.output
    );
    let total: usize = next.iter().sum();
    let librdkafka = librdkafka_read_committed(brokers, &names.output, total, MINUTE);
    assert_each_once("librdkafka's read_committed consumer", &librdkafka, next);
    let java = read_committed_java(brokers, &names.output, total, MINUTE);
    assert_each_once("the Java client's read_committed consumer", &java, next);
    librdkafka
}

/// Every input record exactly once in `records` (by partition, then offset), in source
/// order per key.
fn assert_each_once(reader: &str, records: &[ConsumedRecord], next: &[usize]) {
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        let value = String::from_utf8(r.value.clone().expect("a value")).expect("utf-8");
        let key = String::from_utf8(r.key.clone().expect("a key")).expect("utf-8");
        let mut fields = value.split(':');
        let (p, i) = (fields.next(), fields.next());
        let i: usize = i.and_then(|i| i.parse().ok()).expect("value P:I:PAD");
        let value = format!("{}:{i}", p.unwrap_or_default());
        seen.entry(key).or_default().push(i);
        *count.entry(value).or_default() += 1;
    }
    let dups: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(
        dups.is_empty(),
        "{reader}: duplicates in the committed output: {dups:?}"
    );
    let expected: usize = next.iter().sum();
    let missing: Vec<String> = next
        .iter()
        .enumerate()
        .flat_map(|(p, n)| (0..*n).map(move |i| format!("{p}:{i}")))
        .filter(|v| !count.contains_key(v))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "{reader}: missing from the committed output ({} of {expected} records): {missing:?}",
        records.len()
    );
    assert_eq!(count.len(), expected, "{reader}");
    for (key, order) in &seen {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{reader}: key {key}: out of source order: {:?}",
            &order[..order.len().min(20)]
        );
    }
}

/// Records of aborted transactions in the output: what a `read_uncommitted` consumer gets
/// beyond what a `read_committed` one gets (`committed`), no transaction being open.
fn aborted_records(brokers: &str, names: &Names, committed: &[ConsumedRecord]) -> usize {
    let all = librdkafka_read(
        brokers,
        &names.output,
        Isolation::ReadUncommitted,
        committed.len(),
        MINUTE,
    );
    let everything: BTreeSet<(i32, i64)> = all.iter().map(|r| (r.partition, r.offset)).collect();
    assert!(
        committed
            .iter()
            .all(|r| everything.contains(&(r.partition, r.offset))),
        "read_uncommitted gets every record read_committed gets"
    );
    all.len() - committed.len()
}

/// The output's raw log, per partition, markers applied (figures, not the verdict).
fn raw_log(brokers: &str, names: &Names) -> Vec<Committed> {
    (0..PARTITIONS)
        .map(|p| committed_view(&read_log(brokers, &names.output, p)))
        .collect()
}

/// Whether a relay of the host whose log this is has begun a transaction it did not
/// finish.
fn mid_transaction(log: &str) -> bool {
    let mut open: BTreeMap<String, bool> = BTreeMap::new();
    for line in log.lines() {
        let partition = || {
            line.split("partition=")
                .nth(1)
                .and_then(|p| p.split_whitespace().next())
                .unwrap_or_default()
                .to_owned()
        };
        if line.contains("relay: publishing") {
            open.insert(partition(), true);
        } else if line.contains("relay: published") {
            open.insert(partition(), false);
        }
    }
    open.values().any(|o| *o)
}

/// Freezes `host` (SIGSTOP) while the broker holds records of a transaction of its that
/// has no marker yet (a last stable offset below the high watermark). Large records make
/// a transaction long enough to catch.
fn freeze_in_transaction(
    host: &Host,
    brokers: &str,
    names: &Names,
    input: &FutureProducer,
    next: &mut [usize],
) {
    for _ in 0..20 {
        produce_chunk(input, &names.input, next, 300, 8 << 10);
        let seen = host.log_text().matches("relay: publishing").count();
        host.wait_for(MINUTE, "the host to begin a transaction", || {
            host.log_text().matches("relay: publishing").count() > seen
        });
        host.signal(libc::SIGSTOP);
        if mid_transaction(&host.log_text())
            && !open_transactions(brokers, &names.output).is_empty()
        {
            return;
        }
        host.signal(libc::SIGCONT);
    }
    panic!("the host was never frozen inside a transaction");
}

/// Waits until librdkafka's `read_committed` consumer has at least `total` records of the
/// output and the outbox is trimmed.
fn wait_published(host: &Host, brokers: &str, redis: &Redis, names: &Names, total: usize) {
    let mut output = TopicReader::new(brokers, &names.output, Isolation::ReadCommitted);
    host.wait_for(3 * MINUTE, "every emit to be published", || {
        output.catch_up(Duration::ZERO);
        output.records().len() >= total && outbox_len(redis, names) == 0
    });
}

#[test]
fn kills_and_a_redis_restart_publish_every_emit_exactly_once() {
    let mut redis = Redis::start();
    let brokers = Kafka::shared().brokers();
    let names = Names::new();
    names.create_topics(&brokers);
    let cache = tempfile::tempdir().unwrap();
    // A long interval keeps committed entries waiting in the outbox: the window between
    // the Redis commit and the Kafka commit, where half of the kills land.
    let args = args(
        &brokers,
        &redis,
        &names,
        &["--transaction-interval-ms", "400"],
    );
    let input = producer(&brokers);
    let mut next = vec![0usize; PARTITIONS as usize];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut random = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    eprintln!("seed {seed}");
    let (mut between, mut inside) = (0, 0);
    for kill in 0..12 {
        let host = Host::spawn(&args, cache.path());
        let before = committed_records(&redis, &names);
        produce_chunk(&input, &names.input, &mut next, 1000, 0);
        if kill == 6 {
            host.wait_for(MINUTE, "progress before the Redis restart", || {
                committed_records(&redis, &names) > before
            });
            redis.restart();
            let after = committed_records(&redis, &names);
            host.wait_for(MINUTE, "progress after the Redis restart", || {
                committed_records(&redis, &names) > after
            });
        }
        match kill % 3 {
            0 => {
                host.wait_for(
                    MINUTE,
                    "a batch committed in Redis, not yet in Kafka",
                    || committed_records(&redis, &names) > before && outbox_len(&redis, &names) > 0,
                );
                between += 1;
            }
            1 => {
                freeze_in_transaction(&host, &brokers, &names, &input, &mut next);
                inside += 1;
            }
            _ => {
                // A random moment: before the group join, mid-batch, mid-transaction.
                let until = Instant::now() + Duration::from_millis(300 + random(4000));
                host.wait_for(MINUTE, "the random moment", || Instant::now() >= until);
            }
        }
        host.kill9();
    }
    let host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &names.input, &mut next, 500, 0);
    let total: usize = next.iter().sum();
    wait_published(&host, &brokers, &redis, &names, total);
    let committed = assert_exactly_once(&brokers, &names, &next);
    let aborted = aborted_records(&brokers, &names, &committed);
    let log = raw_log(&brokers, &names);
    let (commits, aborts): (usize, usize) = log
        .iter()
        .fold((0, 0), |a, c| (a.0 + c.commits.len(), a.1 + c.aborts));
    eprintln!(
        "{total} records; 12 kills ({between} between a Redis commit and its Kafka commit, \
         {inside} inside an open transaction), one Redis restart; {aborted} records of \
         aborted transactions that read_committed consumers skipped; log: {commits} commit \
         markers, {aborts} abort markers"
    );
    assert!(aborted > 0, "the transactions open at a kill were aborted");
    let ends: BTreeMap<i32, i64> = next
        .iter()
        .enumerate()
        .map(|(p, n)| (p as i32, *n as i64))
        .collect();
    assert_eq!(redis.offsets(&names.group, &names.input), ends);
}

#[test]
fn a_paused_host_cannot_commit_a_transaction_after_the_hand_over() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let names = Names::new();
    names.create_topics(&brokers);
    let cache = tempfile::tempdir().unwrap();
    let args = args(
        &brokers,
        &redis,
        &names,
        &["--transaction-interval-ms", "1000"],
    );
    let input = producer(&brokers);
    let mut next = vec![0usize; PARTITIONS as usize];

    // Host a is frozen in the middle of a transaction: records produced, not committed.
    let zombie = Host::spawn(&args, cache.path());
    freeze_in_transaction(&zombie, &brokers, &names, &input, &mut next);

    // Host b gets the partitions once a's session expires; taking over a's transactional
    // ids aborts a's open transaction; b publishes everything.
    let b = Host::spawn(&args, cache.path());
    produce_chunk(&input, &names.input, &mut next, 300, 0);
    wait_published(&b, &brokers, &redis, &names, next.iter().sum());

    // The zombie wakes up in its transaction, tries to finish it, and loses the group.
    zombie.signal(libc::SIGCONT);
    zombie.wait_for(MINUTE, "the zombie to lose its partitions", || {
        zombie.log_text().contains("partitions revoked")
    });
    produce_chunk(&input, &names.input, &mut next, 300, 0);
    wait_published(&b, &brokers, &redis, &names, next.iter().sum());
    let committed = assert_exactly_once(&brokers, &names, &next);
    let aborted = aborted_records(&brokers, &names, &committed);
    let log = raw_log(&brokers, &names);
    let aborts: usize = log.iter().map(|c| c.aborts).sum();
    eprintln!(
        "the zombie's transaction: {aborted} records that read_committed consumers skipped; \
         log: {aborts} abort markers"
    );
    assert!(aborted > 0, "the frozen transaction was aborted");
    // No commit marker of an older epoch after a newer one of the same producer.
    for (p, partition) in log.iter().enumerate() {
        let mut newest: BTreeMap<i64, i16> = BTreeMap::new();
        for (pid, epoch, offset) in &partition.commits {
            let seen = newest.entry(*pid).or_insert(*epoch);
            assert!(
                *epoch >= *seen,
                "{}/{p} offset {offset}: producer {pid} committed with epoch {epoch} after epoch {seen}",
                names.output
            );
            *seen = *epoch;
        }
    }
}

#[test]
fn exactly_once_over_mutual_tls_and_a_redis_cluster() {
    let certs = Certs::generate();
    let broker = SecureBroker::start(Security::Tls {
        certs: &certs,
        mutual: true,
    });
    let names = Names::new();
    broker.create_topic(&names.input, PARTITIONS);
    broker.create_topic(&names.output, PARTITIONS);
    let cluster = RedisCluster::start(3, 0);
    let mut extra: Vec<String> = broker.x_args();
    extra.extend(
        [
            "--redis-cluster",
            "--state-scope",
            "partition",
            "--transaction-interval-ms",
            "400",
        ]
        .map(String::from),
    );
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let args = job_args(&broker.brokers(), &cluster.seed_urls(), &names, &extra);
    // The tests' own readers use the PLAINTEXT listener.
    let plain = broker.kafka.brokers();
    let outbox_keys = || -> Vec<String> {
        let (g, input) = (&names.group, &names.input);
        (0..PARTITIONS)
            .map(|p| format!("streamhost:{{{g}:{p}}}:outbox:{g}:{input}:{p}"))
            .collect()
    };
    let outboxes = outbox_keys();
    let mut conn = cluster
        .client()
        .get_connection()
        .expect("cluster connection");
    let mut pending = move || -> usize {
        outboxes
            .iter()
            .map(|k| {
                redis::cmd("XLEN")
                    .arg(k)
                    .query::<usize>(&mut conn)
                    .unwrap_or(0)
            })
            .sum()
    };
    let input = broker.producer();
    let mut next = vec![0usize; PARTITIONS as usize];
    let cache = tempfile::tempdir().unwrap();

    // Killed once with entries committed in Redis and not yet in Kafka.
    let host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &names.input, &mut next, 2000, 0);
    host.wait_for(MINUTE, "entries waiting in the outbox", || pending() > 0);
    host.kill9();
    let host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &names.input, &mut next, 1000, 0);
    let total: usize = next.iter().sum();
    let mut output = TopicReader::new(&plain, &names.output, Isolation::ReadCommitted);
    host.wait_for(3 * MINUTE, "every emit to be published", || {
        output.catch_up(Duration::ZERO);
        output.records().len() >= total && pending() == 0
    });
    assert_exactly_once(&plain, &names, &next);
    assert!(
        cluster.masters_holding(&outbox_keys()) > 1,
        "the partitions' outboxes spread over the shards"
    );
}

#[test]
fn a_stopped_job_publishes_what_it_committed() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let names = Names::new();
    names.create_topics(&brokers);
    let cache = tempfile::tempdir().unwrap();
    // An interval longer than the test: only the stop can publish the last entries.
    let args = args(
        &brokers,
        &redis,
        &names,
        &["--transaction-interval-ms", "60000"],
    );
    let input = producer(&brokers);
    let mut next = vec![0usize; PARTITIONS as usize];
    let mut host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &names.input, &mut next, 500, 0);
    let total: usize = next.iter().sum();
    host.wait_for(
        MINUTE,
        "every batch committed, its emits in the outbox",
        || committed_records(&redis, &names) == total as i64 && outbox_len(&redis, &names) > 0,
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());
    assert_eq!(
        outbox_len(&redis, &names),
        0,
        "the outbox was published and trimmed"
    );
    assert_exactly_once(&brokers, &names, &next);
}

/// Bytes of encoded emits in the outbox of `partition`.
fn outbox_bytes(redis: &Redis, names: &Names, partition: i32) -> usize {
    type Fields = Vec<(String, Vec<u8>)>;
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(names.outbox(partition))
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .expect("XRANGE");
    entries
        .iter()
        .flat_map(|(_, fields)| fields.iter().map(|(_, v)| v.len()))
        .sum()
}

/// librdkafka's mock cluster (it writes no markers and does not fence, so it proves
/// nothing about exactly-once) stands in for a Kafka that takes no transactions: every
/// EndTxn fails. The outbox fills to --outbox-max-mb and the partition's commits wait
/// there with a warning, instead of Redis growing; once Kafka takes transactions again,
/// everything is published.
#[test]
fn a_kafka_that_takes_no_transactions_makes_commits_wait_at_the_outbox_bound() {
    let redis = Redis::start_in_memory();
    let names = Names::new();
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic(&names.input, 1, 1).expect("topic");
    mock.create_topic(&names.output, 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    // The mock keeps about 5 MB of a partition's log: 3 MB of emits against a 1 MiB bound.
    let n = 3_000usize;
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{i}:{}", "x".repeat(1000)).into_bytes())
        .collect();
    produce(&producer(&brokers), &names.input, 0, &values);
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 100_000],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "echo",
        &brokers,
        &redis.url(),
        &names.input,
        &names.group,
        &[
            "--partitions",
            "0",
            "--output-topic",
            &names.output,
            "--delivery",
            "exactly-once",
            "--batch-max-records",
            "100",
            "--outbox-max-mb",
            "1",
        ],
    );
    let host = Host::spawn(&args, cache.path());
    let full = |host: &Host| host.log_text().matches("the outbox is full").count();
    let offset = || {
        redis
            .offsets(&names.group, &names.input)
            .get(&0)
            .copied()
            .unwrap_or(0)
    };
    host.wait_for(MINUTE, "the outbox-full warning", || full(&host) >= 1);
    let committed = offset();
    let held = outbox_bytes(&redis, &names, 0);
    host.wait_for(MINUTE, "the warning again", || full(&host) >= 2);
    assert_eq!(offset(), committed, "commits wait while the outbox is full");
    assert!(committed < n as i64, "{committed} of {n} committed");
    assert!(
        held <= 1 << 20 && outbox_bytes(&redis, &names, 0) <= 1 << 20,
        "the outbox holds {held} bytes, more than --outbox-max-mb 1"
    );
    eprintln!(
        "Kafka without transactions: commits stopped at offset {committed} of {n} with {held} bytes in the outbox (bound 1 MiB)"
    );

    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    host.wait_for(2 * MINUTE, "everything committed and published", || {
        offset() == n as i64 && outbox_len_of(&redis, &names, 0) == 0
    });
    // The mock writes no markers: what failed to commit is visible too, hence distinct.
    let delivered = librdkafka_read_committed(&brokers, &names.output, n, MINUTE);
    let out: BTreeSet<&Vec<u8>> = delivered.iter().filter_map(|r| r.value.as_ref()).collect();
    assert_eq!(
        out.len(),
        n,
        "every record reached the output topic ({} delivered)",
        delivered.len()
    );
}

fn outbox_len_of(redis: &Redis, names: &Names, partition: i32) -> usize {
    redis::cmd("XLEN")
        .arg(names.outbox(partition))
        .query::<usize>(&mut redis.conn())
        .unwrap_or(0)
}

/// A Kafka without EndTxn, played by librdkafka's mock cluster with EndTxn taken out of
/// the API versions it announces: librdkafka reports the feature unsupported, at once and
/// every time. The job stops with an error that says so instead of retrying in a loop;
/// the offsets stop at what the outbox holds, so nothing committed is lost.
#[test]
fn a_kafka_without_transactions_stops_the_job_with_a_clear_error() {
    // A mock cluster made by a client (`test.mock.num.brokers`) lives as long as the
    // client, and the client gives the cluster's handle.
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .expect("a client with a mock cluster");
    let mock = owner.client().mock_cluster().expect("the mock cluster");
    // SAFETY: the handle is the mock cluster `owner` keeps until it is dropped, at the end
    // of the test; the call only queues an operation on the cluster's thread and waits.
    let err = unsafe {
        let cluster = rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        assert!(!cluster.is_null(), "the client's mock cluster");
        rd_kafka_mock_set_apiversion(cluster, RDKafkaApiKey::EndTxn as i16, -1, -1)
    };
    assert_eq!(
        err,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR,
        "EndTxn removed"
    );
    let names = Names::new();
    mock.create_topic(&names.input, PARTITIONS, 1)
        .expect("topic");
    mock.create_topic(&names.output, PARTITIONS, 1)
        .expect("topic");
    let brokers = mock.bootstrap_servers();
    let redis = Redis::start_in_memory();
    let args = job_args(&brokers, &redis.url(), &names, &["--partitions", "0,1,2"]);
    let mut next = vec![0usize; PARTITIONS as usize];
    produce_chunk(&producer(&brokers), &names.input, &mut next, 100, 0);
    let cache = tempfile::tempdir().unwrap();
    let mut host = Host::spawn(&args, cache.path());
    let status = host.wait(MINUTE);
    let log = host.log_text();
    assert!(!status.success(), "{log}");
    // The job's own last words, not only a log line of the relay.
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("does not support transactions") && last.contains("--delivery exactly-once"),
        "{log}"
    );
    assert!(
        log.matches("commit_transaction: retrying").count() < 100,
        "no retry loop: {log}"
    );
    // Whatever committed is in the outbox, none of it was published.
    let committed = committed_records(&redis, &names);
    assert!(
        committed > 0,
        "the job committed before the first transaction"
    );
    assert!(
        outbox_len(&redis, &names) > 0,
        "its emits wait in the outbox"
    );
}
