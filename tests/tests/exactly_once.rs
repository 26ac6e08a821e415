//! `--delivery exactly-once` under faults: SIGKILLs of the host at random moments and
//! between a batch's Redis commit and its Kafka transaction, a Redis SIGKILL and restart,
//! and a paused host whose partitions moved on. Each time, what a correct
//! `read_committed` consumer sees of the output (worked out from the raw log by
//! `txn_log`, because tansu's Fetch sends no aborted-transactions list) holds every input
//! record exactly once, in source order per key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streamhost_tests::kafka_secure::{SecureBroker, Security};
use streamhost_tests::plugin_run_args;
use streamhost_tests::redis_topologies::{Certs, RedisCluster};
use streamhost_tests::services::{FAST_GROUP, Host, Redis, Tansu, create_topic, produce, producer};
use streamhost_tests::txn_log::{Committed, committed_view, librdkafka_read_committed, read_log};

const MINUTE: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 3;
const KEYS_PER_PARTITION: usize = 7;

/// Produces `n` records to each input partition, numbered on from `next[p]`: key
/// `pP-kK`, value `P:I:` and `pad` bytes, so every value is unique and each key lives in
/// one partition.
fn produce_chunk(p: &FutureProducer, next: &mut [usize], n: usize, pad: usize) {
    let mut pending = Vec::new();
    let padding = "x".repeat(pad);
    for (partition, start) in next.iter_mut().enumerate() {
        for i in *start..*start + n {
            let key = format!("p{partition}-k{}", i % KEYS_PER_PARTITION);
            let value = format!("{partition}:{i}:{padding}");
            loop {
                match p.send_result(
                    FutureRecord::to("in")
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

fn args(kafka: &Tansu, redis: &Redis, extra: &[&str]) -> Vec<String> {
    job_args(&kafka.brokers(), &redis.url(), extra)
}

fn job_args(brokers: &str, redis: &str, extra: &[&str]) -> Vec<String> {
    let mut e = FAST_GROUP.to_vec();
    e.extend_from_slice(&[
        "--output-topic",
        "out",
        "--delivery",
        "exactly-once",
        "--batch-max-records",
        "50",
        "--retry-backoff-ms",
        "50",
    ]);
    e.extend_from_slice(extra);
    plugin_run_args("echo", brokers, redis, "in", "g", &e)
}

/// The output as a correct `read_committed` consumer sees it, per output partition.
fn output(kafka: &Tansu) -> Vec<Committed> {
    output_at(&kafka.brokers())
}

fn output_at(brokers: &str) -> Vec<Committed> {
    (0..PARTITIONS)
        .map(|p| committed_view(&read_log(brokers, "out", p)))
        .collect()
}

fn visible(kafka: &Tansu) -> usize {
    output(kafka).iter().map(|c| c.visible.len()).sum()
}

/// Entries committed in Redis and not yet published (or not yet trimmed).
fn outbox_len(redis: &Redis) -> usize {
    let mut c = redis.conn();
    (0..PARTITIONS)
        .map(|p| {
            redis::cmd("XLEN")
                .arg(format!("streamhost:{{g}}:outbox:g:in:{p}"))
                .query::<usize>(&mut c)
                .unwrap_or(0)
        })
        .sum()
}

fn committed_records(redis: &Redis) -> i64 {
    redis.offsets("g", "in").values().sum()
}

/// Every input record exactly once in the visible output, in source order per key.
fn assert_exactly_once(view: &[Committed], next: &[usize]) {
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for partition in view {
        for r in &partition.visible {
            let value = String::from_utf8(r.value.clone().expect("a value")).expect("utf-8");
            let key = String::from_utf8(r.key.clone().expect("a key")).expect("utf-8");
            let mut fields = value.split(':');
            let (p, i) = (fields.next(), fields.next());
            let i: usize = i.and_then(|i| i.parse().ok()).expect("value P:I:PAD");
            let value = format!("{}:{i}", p.unwrap_or_default());
            seen.entry(key).or_default().push(i);
            *count.entry(value).or_default() += 1;
        }
    }
    let dups: Vec<(&String, &usize)> = count.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(
        dups.is_empty(),
        "duplicates in the committed output: {dups:?}"
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
        "missing from the committed output: {missing:?}"
    );
    assert_eq!(count.len(), expected);
    for (key, order) in &seen {
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "key {key}: out of source order: {:?}",
            &order[..order.len().min(20)]
        );
    }
    for (p, partition) in view.iter().enumerate() {
        assert_eq!(partition.in_doubt, 0, "out/{p}: a transaction never ended");
    }
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
/// has no marker yet. Large records make a transaction long enough to catch.
fn freeze_in_transaction(host: &Host, kafka: &Tansu, input: &FutureProducer, next: &mut [usize]) {
    for _ in 0..20 {
        produce_chunk(input, next, 300, 8 << 10);
        let seen = host.log_text().matches("relay: publishing").count();
        host.wait_for(MINUTE, "the host to begin a transaction", || {
            host.log_text().matches("relay: publishing").count() > seen
        });
        host.signal(libc::SIGSTOP);
        if mid_transaction(&host.log_text()) && output(kafka).iter().any(|c| c.in_doubt > 0) {
            return;
        }
        host.signal(libc::SIGCONT);
    }
    panic!("the host was never frozen inside a transaction");
}

/// Waits until the output holds at least `total` records and the outbox is trimmed.
fn wait_published(host: &Host, kafka: &Tansu, redis: &Redis, total: usize) {
    host.wait_for(3 * MINUTE, "every emit to be published", || {
        visible(kafka) >= total && outbox_len(redis) == 0
    });
}

#[test]
fn kills_and_a_redis_restart_publish_every_emit_exactly_once() {
    let (mut redis, kafka) = (Redis::start(), Tansu::start());
    create_topic(&kafka.brokers(), "in", PARTITIONS);
    create_topic(&kafka.brokers(), "out", PARTITIONS);
    let cache = tempfile::tempdir().unwrap();
    // A long interval keeps committed entries waiting in the outbox: the window between
    // the Redis commit and the Kafka commit, where half of the kills land.
    let args = args(&kafka, &redis, &["--transaction-interval-ms", "400"]);
    let input = producer(&kafka.brokers());
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
        let before = committed_records(&redis);
        produce_chunk(&input, &mut next, 1000, 0);
        if kill == 6 {
            host.wait_for(MINUTE, "progress before the Redis restart", || {
                committed_records(&redis) > before
            });
            redis.restart();
            let after = committed_records(&redis);
            host.wait_for(MINUTE, "progress after the Redis restart", || {
                committed_records(&redis) > after
            });
        }
        match kill % 3 {
            0 => {
                host.wait_for(
                    MINUTE,
                    "a batch committed in Redis, not yet in Kafka",
                    || committed_records(&redis) > before && outbox_len(&redis) > 0,
                );
                between += 1;
            }
            1 => {
                freeze_in_transaction(&host, &kafka, &input, &mut next);
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
    produce_chunk(&input, &mut next, 500, 0);
    let total: usize = next.iter().sum();
    wait_published(&host, &kafka, &redis, total);
    let view = output(&kafka);
    let (aborted, commits, aborts): (usize, usize, usize) = view.iter().fold((0, 0, 0), |a, c| {
        (a.0 + c.aborted, a.1 + c.commits.len(), a.2 + c.aborts)
    });
    eprintln!(
        "{total} records; 12 kills ({between} between a Redis commit and its Kafka commit, \
         {inside} inside an open transaction), one Redis restart; log: {commits} commit \
         markers, {aborts} abort markers, {aborted} records of aborted transactions dropped"
    );
    assert!(aborted > 0, "the transactions open at a kill were aborted");
    assert_exactly_once(&view, &next);
    // What librdkafka's read_committed consumer gets from tansu instead (not asserted: a
    // defect of the broker, shown for the record).
    let naive = librdkafka_read_committed(&kafka.brokers(), "out", PARTITIONS, total + aborted);
    let distinct: std::collections::BTreeSet<&Vec<u8>> = naive.iter().collect();
    eprintln!(
        "librdkafka's read_committed consumer of tansu delivered {} records, {} of them \
         duplicates (records of aborted transactions)",
        naive.len(),
        naive.len() - distinct.len()
    );
    let ends: BTreeMap<i32, i64> = next
        .iter()
        .enumerate()
        .map(|(p, n)| (p as i32, *n as i64))
        .collect();
    assert_eq!(redis.offsets("g", "in"), ends);
}

#[test]
fn a_paused_host_cannot_commit_a_transaction_after_the_hand_over() {
    let (redis, kafka) = (Redis::start_in_memory(), Tansu::start());
    create_topic(&kafka.brokers(), "in", PARTITIONS);
    create_topic(&kafka.brokers(), "out", PARTITIONS);
    let cache = tempfile::tempdir().unwrap();
    let args = args(&kafka, &redis, &["--transaction-interval-ms", "1000"]);
    let input = producer(&kafka.brokers());
    let mut next = vec![0usize; PARTITIONS as usize];

    // Host a is frozen in the middle of a transaction: records produced, not committed.
    let zombie = Host::spawn(&args, cache.path());
    freeze_in_transaction(&zombie, &kafka, &input, &mut next);

    // Host b gets the partitions once a's session expires; taking over a's transactional
    // ids aborts a's open transaction; b publishes everything.
    let b = Host::spawn(&args, cache.path());
    produce_chunk(&input, &mut next, 300, 0);
    wait_published(&b, &kafka, &redis, next.iter().sum());

    // The zombie wakes up in its transaction, tries to finish it, and loses the group.
    zombie.signal(libc::SIGCONT);
    zombie.wait_for(MINUTE, "the zombie to lose its partitions", || {
        zombie.log_text().contains("partitions revoked")
    });
    produce_chunk(&input, &mut next, 300, 0);
    wait_published(&b, &kafka, &redis, next.iter().sum());
    let view = output(&kafka);
    assert_exactly_once(&view, &next);
    let aborts: usize = view.iter().map(|c| c.aborts).sum();
    let aborted: usize = view.iter().map(|c| c.aborted).sum();
    eprintln!("the zombie's transaction: {aborts} abort markers, {aborted} records dropped");
    assert!(aborts > 0, "the frozen transaction was aborted");
    // No commit marker of an older epoch after a newer one of the same producer.
    for (p, partition) in view.iter().enumerate() {
        let mut newest: BTreeMap<i64, i16> = BTreeMap::new();
        for (pid, epoch, offset) in &partition.commits {
            let seen = newest.entry(*pid).or_insert(*epoch);
            assert!(
                *epoch >= *seen,
                "out/{p} offset {offset}: producer {pid} committed with epoch {epoch} after epoch {seen}"
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
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
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
    let args = job_args(&broker.brokers(), &cluster.seed_urls(), &extra);
    let plain = format!("127.0.0.1:{}", broker.plain_port);
    let outboxes: Vec<String> = (0..PARTITIONS)
        .map(|p| format!("streamhost:{{g:{p}}}:outbox:g:in:{p}"))
        .collect();
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
    produce_chunk(&input, &mut next, 2000, 0);
    host.wait_for(MINUTE, "entries waiting in the outbox", || pending() > 0);
    host.kill9();
    let host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &mut next, 1000, 0);
    let total: usize = next.iter().sum();
    host.wait_for(3 * MINUTE, "every emit to be published", || {
        output_at(&plain)
            .iter()
            .map(|c| c.visible.len())
            .sum::<usize>()
            >= total
            && pending() == 0
    });
    assert_exactly_once(&output_at(&plain), &next);
    let outboxes: Vec<String> = (0..PARTITIONS)
        .map(|p| format!("streamhost:{{g:{p}}}:outbox:g:in:{p}"))
        .collect();
    assert!(
        cluster.masters_holding(&outboxes) > 1,
        "the partitions' outboxes spread over the shards"
    );
}

#[test]
fn a_stopped_job_publishes_what_it_committed() {
    let (redis, kafka) = (Redis::start_in_memory(), Tansu::start());
    create_topic(&kafka.brokers(), "in", PARTITIONS);
    create_topic(&kafka.brokers(), "out", PARTITIONS);
    let cache = tempfile::tempdir().unwrap();
    // An interval longer than the test: only the stop can publish the last entries.
    let args = args(&kafka, &redis, &["--transaction-interval-ms", "60000"]);
    let input = producer(&kafka.brokers());
    let mut next = vec![0usize; PARTITIONS as usize];
    let mut host = Host::spawn(&args, cache.path());
    produce_chunk(&input, &mut next, 500, 0);
    let total: usize = next.iter().sum();
    host.wait_for(
        MINUTE,
        "every batch committed, its emits in the outbox",
        || committed_records(&redis) == total as i64 && outbox_len(&redis) > 0,
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());
    assert_eq!(
        outbox_len(&redis),
        0,
        "the outbox was published and trimmed"
    );
    assert_exactly_once(&output(&kafka), &next);
}

/// Bytes of encoded emits in the outbox of `partition` (job `g`).
fn outbox_bytes(redis: &Redis, partition: i32) -> usize {
    type Fields = Vec<(String, Vec<u8>)>;
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(format!("streamhost:{{g}}:outbox:g:in:{partition}"))
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
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("in", 1, 1).expect("topic");
    mock.create_topic("out", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    // The mock keeps about 5 MB of a partition's log: 3 MB of emits against a 1 MiB bound.
    let n = 3_000usize;
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{i}:{}", "x".repeat(1000)).into_bytes())
        .collect();
    produce(&producer(&brokers), "in", 0, &values);
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 100_000],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "echo",
        &brokers,
        &redis.url(),
        "in",
        "g",
        &[
            "--partitions",
            "0",
            "--output-topic",
            "out",
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
    host.wait_for(MINUTE, "the outbox-full warning", || full(&host) >= 1);
    let committed = redis.offsets("g", "in").get(&0).copied().unwrap_or(0);
    let held = outbox_bytes(&redis, 0);
    host.wait_for(MINUTE, "the warning again", || full(&host) >= 2);
    assert_eq!(
        redis.offsets("g", "in").get(&0).copied().unwrap_or(0),
        committed,
        "commits wait while the outbox is full"
    );
    assert!(committed < n as i64, "{committed} of {n} committed");
    assert!(
        held <= 1 << 20 && outbox_bytes(&redis, 0) <= 1 << 20,
        "the outbox holds {held} bytes, more than --outbox-max-mb 1"
    );
    eprintln!(
        "Kafka without transactions: commits stopped at offset {committed} of {n} with {held} bytes in the outbox (bound 1 MiB)"
    );

    mock.clear_request_errors(RDKafkaApiKey::EndTxn);
    host.wait_for(2 * MINUTE, "everything committed and published", || {
        redis.offsets("g", "in").get(&0) == Some(&(n as i64)) && outbox_len_of(&redis, 0) == 0
    });
    let delivered = librdkafka_read_committed(&brokers, "out", 1, 3 * n);
    let out: std::collections::BTreeSet<&Vec<u8>> = delivered.iter().collect();
    assert_eq!(
        out.len(),
        n,
        "every record reached the output topic ({} delivered)",
        delivered.len()
    );
}

fn outbox_len_of(redis: &Redis, partition: i32) -> usize {
    redis::cmd("XLEN")
        .arg(format!("streamhost:{{g}}:outbox:g:in:{partition}"))
        .query::<usize>(&mut redis.conn())
        .unwrap_or(0)
}

/// The SASL/SCRAM tansu the tests build (SQLite storage, crates.io 0.6.0) answers no
/// EndTxn: librdkafka reports the feature unsupported, at once and every time. The job
/// stops with an error that says so instead of retrying in a loop; the offsets stop at
/// what the outbox holds, so nothing committed is lost.
#[test]
fn a_kafka_without_transactions_stops_the_job_with_a_clear_error() {
    let broker = SecureBroker::start(Security::Scram {
        user: "alice",
        password: "alice-s3cret-pw",
        tls: None,
    });
    broker.create_topic("in", PARTITIONS);
    broker.create_topic("out", PARTITIONS);
    let redis = Redis::start_in_memory();
    let extra: Vec<String> = broker.x_args();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let args = job_args(&broker.brokers(), &redis.url(), &extra);
    let mut next = vec![0usize; PARTITIONS as usize];
    produce_chunk(&broker.producer(), &mut next, 100, 0);
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
    let committed = committed_records(&redis);
    assert!(
        committed > 0,
        "the job committed before the first transaction"
    );
    assert!(outbox_len(&redis) > 0, "its emits wait in the outbox");
}
