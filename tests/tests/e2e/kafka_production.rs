//! Kafka as managed clusters serve it: the word count is exact over TLS, mutual TLS,
//! SASL/SCRAM-SHA-512 (plaintext and over TLS) and on topics written with each
//! compression codec; configuration problems (an untrusted certificate, a wrong password,
//! an unreachable broker, a topic the host may not read) end the job with a message that
//! says what to fix and the offsets where they were; secrets stay out of logs and API
//! answers. Every broker is an Apache Kafka on loopback: the run's shared one where the
//! plain listener does, one of the test's own where a listener is secured.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use streamhost_tests::kafka::{Kafka, kafka_tool, unique};
use streamhost_tests::kafka_secure::{SecureBroker, Security};
use streamhost_tests::reader::librdkafka_read_committed;
use streamhost_tests::redis_topologies::Certs;
use streamhost_tests::serve::serve;
use streamhost_tests::services::{Host, Redis, create_topic, produce, read_topic, wait_until};
use streamhost_tests::{expected_counts, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

/// Produces `parts` (one per partition), one record per send: the same on every broker.
fn produce_parts(producer: &FutureProducer, topic: &str, parts: &[Vec<Vec<u8>>]) {
    for (i, values) in parts.iter().enumerate() {
        produce(producer, topic, i as i32, values);
    }
}

/// Runs the word count of `topic` over `brokers` with `x` (client properties as -X) until
/// every record of `parts` is committed; checks the counts; returns how long it took.
fn wordcount(
    redis: &Redis,
    brokers: &str,
    topic: &str,
    x: &[String],
    parts: &[Vec<Vec<u8>>],
) -> Duration {
    let cache = tempfile::tempdir().unwrap();
    let partitions = (0..parts.len())
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut extra: Vec<&str> = x.iter().map(String::as_str).collect();
    extra.extend(["--partitions", partitions.as_str(), "--no-kafka-commit"]);
    let args = run_args(brokers, &redis.url(), topic, "g", &extra);
    let ends: BTreeMap<i32, i64> = parts
        .iter()
        .enumerate()
        .map(|(p, v)| (p as i32, v.len() as i64))
        .collect();
    let started = Instant::now();
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record committed", || {
        redis.offsets("g", topic) == ends
    });
    let took = started.elapsed();
    assert_eq!(redis.counts("g"), expected_counts(parts.iter().flatten()));
    took
}

fn parts(seed: u64, per_partition: usize) -> Vec<Vec<Vec<u8>>> {
    (0..2)
        .map(|i| text_values(seed + i, per_partition))
        .collect()
}

#[test]
fn word_count_is_exact_over_tls_and_mutual_tls() {
    let certs = Certs::generate();
    let data = parts(300, 25_000);
    let records = (2 * 25_000) as f64;

    // The same data and host over plaintext first, as the baseline.
    let plain = Kafka::shared().brokers();
    let words = unique("words");
    create_topic(&plain, &words, 2);
    produce_parts(&streamhost_tests::services::producer(&plain), &words, &data);
    let took_plain = wordcount(&Redis::start_in_memory(), &plain, &words, &[], &data);

    for mutual in [false, true] {
        let broker = SecureBroker::start(Security::Tls {
            certs: &certs,
            mutual,
        });
        broker.create_topic("words", 2);
        produce_parts(&broker.producer(), "words", &data);
        let took = wordcount(
            &Redis::start_in_memory(),
            &broker.brokers(),
            "words",
            &broker.x_args(),
            &data,
        );
        eprintln!(
            "word count of {records} records ({}, start to last commit): plaintext {:.2} s ({:.0} records/s), {} {:.2} s ({:.0} records/s), ratio {:.2}",
            streamhost_tests::host_bin().display(),
            took_plain.as_secs_f64(),
            records / took_plain.as_secs_f64(),
            if mutual { "mutual TLS" } else { "TLS" },
            took.as_secs_f64(),
            records / took.as_secs_f64(),
            took.as_secs_f64() / took_plain.as_secs_f64(),
        );
    }
}

#[test]
fn an_untrusted_broker_certificate_stops_the_host_at_once() {
    let certs = Certs::generate();
    let broker = SecureBroker::start(Security::Tls {
        certs: &certs,
        mutual: false,
    });
    broker.create_topic("words", 1);
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let wrong = format!("ssl.ca.location={}", certs.wrong_ca().display());
    let args = run_args(
        &broker.brokers(),
        &redis.url(),
        "words",
        "g",
        &[
            "-X",
            "security.protocol=SSL",
            "-X",
            &wrong,
            "--partitions",
            "0",
            "--kafka-give-up-ms",
            "600000",
        ],
    );
    let mut host = Host::spawn(&args, cache.path());
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!("Kafka at {}", broker.brokers()))
            && log.contains("certificate is not trusted")
            && log.contains("ssl.ca.location"),
        "{log}"
    );
    assert!(redis.offsets("g", "words").is_empty());
}

#[test]
fn word_count_is_exact_over_sasl_scram_and_sasl_ssl_and_a_wrong_password_is_refused() {
    let certs = Certs::generate();
    let data = parts(310, 300);
    for tls in [None, Some(&certs)] {
        let broker = SecureBroker::start(Security::Scram {
            user: "alice",
            password: "alice-s3cret-pw",
            tls,
        });
        broker.create_topic("words", 2);
        produce_parts(&broker.producer(), "words", &data);
        // The password from a properties file, not argv.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        let text: String = broker
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&file, format!("# as kcat -F reads it\n{text}")).unwrap();
        let config = ["--kafka-config".to_owned(), file.display().to_string()];
        wordcount(
            &Redis::start_in_memory(),
            &broker.brokers(),
            "words",
            &config,
            &data,
        );

        let redis = Redis::start_in_memory();
        let cache = tempfile::tempdir().unwrap();
        let mut x = broker.x_args();
        let at = x
            .iter()
            .position(|a| a.starts_with("sasl.password="))
            .expect("a password");
        x[at] = "sasl.password=wrong-password".into();
        let mut extra: Vec<&str> = x.iter().map(String::as_str).collect();
        extra.extend(["--partitions", "0", "--kafka-give-up-ms", "600000"]);
        let args = run_args(&broker.brokers(), &redis.url(), "words", "g", &extra);
        let mut refused = Host::spawn(&args, cache.path());
        assert_eq!(refused.wait(MINUTE).code(), Some(1));
        let log = refused.log_text();
        assert!(
            log.contains("authentication failed") && log.contains("sasl.password"),
            "{log}"
        );
        assert!(!log.contains("wrong-password"), "{log}");
        assert!(redis.offsets("g", "words").is_empty());
    }
}

/// OAUTHBEARER as Kafka's own unsecured JWT validator takes it (librdkafka builds the
/// token): the job authenticates with a token instead of a password.
#[test]
fn word_count_is_exact_over_sasl_oauthbearer() {
    let broker = SecureBroker::start(Security::OAuthBearer { principal: "alice" });
    broker.create_topic("words", 2);
    let data = parts(330, 300);
    produce_parts(&broker.producer(), "words", &data);
    wordcount(
        &Redis::start_in_memory(),
        &broker.brokers(),
        "words",
        &broker.x_args(),
        &data,
    );
}

#[test]
fn topics_written_with_every_codec_are_counted_exactly_and_zstd_emits_are_readable() {
    let kafka = Kafka::shared();
    let redis = Redis::start_in_memory();
    for (i, codec) in ["gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let topic = unique(&format!("words-{codec}"));
        create_topic(&kafka.brokers(), &topic, 1);
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka.brokers())
            .set("compression.type", *codec)
            .set("linger.ms", "20")
            .create()
            .expect("producer");
        let values = text_values(400 + i as u64, 500);
        // Batched sends, so the codec compresses real record batches.
        let sends: Vec<_> = values
            .iter()
            .map(|v| {
                let record = FutureRecord::<(), _>::to(&topic).payload(v).partition(0);
                match producer.send_result(record) {
                    Ok(delivery) => delivery,
                    Err((e, _)) => panic!("{codec}: queueing failed: {e}"),
                }
            })
            .collect();
        for s in sends {
            if let Err((e, _)) = futures::executor::block_on(s).expect("delivered") {
                panic!("{codec}: {e}");
            }
        }
        let group = unique(&format!("g-{codec}"));
        let cache = tempfile::tempdir().unwrap();
        let out = unique(&format!("out-{codec}"));
        create_topic(&kafka.brokers(), &out, 1);
        let args = run_args(
            &kafka.brokers(),
            &redis.url(),
            &topic,
            &group,
            &[
                "--partitions",
                "0",
                "--config",
                "emit=true",
                "--output-topic",
                &out,
                "-X",
                "compression.type=zstd",
            ],
        );
        let host = Host::spawn(&args, cache.path());
        host.wait_for(MINUTE, "every record committed", || {
            redis.offsets(&group, &topic).get(&0) == Some(&500)
        });
        assert_eq!(
            redis.counts(&group),
            expected_counts(values.iter()),
            "{codec}"
        );
        let words: i64 = expected_counts(values.iter()).values().sum();
        let emitted = read_topic(&kafka.brokers(), &out, words as usize);
        assert_eq!(emitted.len() as i64, words, "{codec}: one emit per word");
    }
}

#[test]
fn an_unreachable_broker_is_waited_for_quietly_then_given_up_on() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let closed = streamhost_tests::services::free_port();
    let brokers = format!("127.0.0.1:{closed}");
    let args = run_args(
        &brokers,
        &redis.url(),
        "words",
        "g",
        &["--partitions", "0", "--kafka-give-up-ms", "12000"],
    );
    let mut host = Host::spawn(&args, cache.path());
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains(&format!("Kafka at {brokers} could not be reached"))
            && log.contains("attempts")
            && log.contains("--kafka-give-up-ms"),
        "{log}"
    );
    // 12 s of refused connections: a handful of lines, not dozens a second.
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 12, "{warnings} warnings:\n{log}");
}

#[test]
fn a_topic_the_host_may_not_read_stops_the_job_with_offsets_in_place() {
    let redis = Redis::start_in_memory();
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("words", 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    produce(
        &streamhost_tests::services::producer(&brokers),
        "words",
        0,
        &text_values(5, 50),
    );
    mock.request_errors(
        RDKafkaApiKey::Fetch,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 100],
    );
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(&brokers, &redis.url(), "words", "g", &["--partitions", "0"]);
    let mut host = Host::spawn(&args, cache.path());
    assert_eq!(host.wait(MINUTE).code(), Some(1));
    let log = host.log_text();
    assert!(
        log.contains("words/0") && log.contains("may not read this topic"),
        "{log}"
    );
    assert!(redis.offsets("g", "words").is_empty());
}

#[test]
fn kafka_secrets_stay_out_of_logs_api_answers_and_help() {
    const SECRET: &str = "kafka-pw-5e1f0c9b";
    let kafka = Kafka::shared();
    let words = unique("words");
    create_topic(&kafka.brokers(), &words, 1);
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    // PLAINTEXT ignores SASL settings, so the job runs while carrying the secret.
    let s = serve(&redis, &kafka.brokers(), Some("t0ken"), &[], cache.path());
    assert_eq!(s.upload("wordcount", "1", "wordcount").status, 201);
    let wc = unique("wc");
    let job = format!(
        r#"{{"id": "{wc}", "plugin": "wordcount@1", "topics": ["{words}"], "partitions": [0],
            "settings": {{"kafka": {{"sasl.username": "app", "sasl.password": "{SECRET}",
                                     "ssl.key.password": "{SECRET}"}}}}}}"#
    );
    let created = s.call("POST", "/v1/jobs", Some("t0ken"), job.as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    let listed = s.call("GET", "/v1/jobs", None, b"").text();
    let one = s.call("GET", &format!("/v1/jobs/{wc}"), None, b"").text();
    for answer in [created.text(), listed.clone(), one] {
        assert!(!answer.contains(SECRET), "{answer}");
    }
    assert!(listed.contains(r#""sasl.password":"***""#), "{listed}");
    assert!(listed.contains(r#""sasl.username":"app""#), "{listed}");
    wait_until(MINUTE, "the job to run", || {
        s.job(&wc)["status"] == "running"
    });
    assert!(!s.host.log_text().contains(SECRET));

    let help = std::process::Command::new(streamhost_tests::host_bin())
        .args(["run", "--help"])
        .env(
            "STREAMHOST_KAFKA_PROPERTIES",
            format!("sasl.password={SECRET}"),
        )
        .output()
        .expect("host run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--kafka-config"), "{help}");
    assert!(!help.contains(SECRET), "{help}");
}

/// Grants `principal` an ACL through the broker's PLAINTEXT listener (a super user there),
/// with Kafka's own `kafka-acls` (AclCommand).
fn grant(kafka: &Kafka, principal: &str, operation: &str, resources: &[&str]) {
    let brokers = kafka.brokers();
    let mut args = vec![
        "--bootstrap-server",
        brokers.as_str(),
        "--add",
        "--allow-principal",
        principal,
        "--operation",
        operation,
    ];
    args.extend_from_slice(resources);
    kafka_tool("org.apache.kafka.tools.AclCommand", &args);
}

/// The smallest set of ACLs docs/operating.md ("ACLs a job needs") gives a job, granted to
/// a SCRAM user over SASL_SSL on an Apache Kafka whose authorizer denies everything else:
/// the job runs at-least-once and exactly-once with exactly those, and without one of
/// them it stops with an error that names the ACL to add, offsets where they were.
#[test]
fn a_job_runs_with_exactly_the_documented_acls_and_a_missing_one_is_named() {
    let certs = Certs::generate();
    let broker = SecureBroker::start_with(
        Security::Scram {
            user: "alice",
            password: "alice-s3cret-pw",
            tls: Some(&certs),
        },
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            // The PLAINTEXT and controller listeners: the broker itself and the test.
            "super.users=User:ANONYMOUS",
        ],
    );
    let alice = "User:alice";
    for (topic, n) in [("words", 2), ("out", 2), ("dead", 1)] {
        broker.create_topic(topic, n);
    }
    let data = parts(320, 300);
    produce_parts(
        &streamhost_tests::services::producer(&broker.kafka.brokers()),
        "words",
        &data,
    );
    // At-least-once: read the input and the group, write the output and dead letters.
    grant(
        &broker.kafka,
        alice,
        "Read",
        &["--topic", "words", "--group", "g"],
    );
    grant(
        &broker.kafka,
        alice,
        "Write",
        &["--topic", "out", "--topic", "dead"],
    );
    let x = broker.x_args();
    let job = |group: &str, extra: &[&str]| {
        let mut e: Vec<&str> = x.iter().map(String::as_str).collect();
        e.extend_from_slice(&[
            "--config",
            "emit=true",
            "--output-topic",
            "out",
            "--on-error",
            "dlq",
            "--dlq-topic",
            "dead",
        ]);
        e.extend_from_slice(extra);
        let redis = Redis::start_in_memory();
        let args = run_args(&broker.brokers(), &redis.url(), "words", group, &e);
        (redis, args)
    };
    let ends: BTreeMap<i32, i64> = [(0, 300), (1, 300)].into();
    let cache = tempfile::tempdir().unwrap();
    let (redis, args) = job("g", &[]);
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record committed at-least-once", || {
        redis.offsets("g", "words") == ends
    });
    assert_eq!(redis.counts("g"), expected_counts(data.iter().flatten()));
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());
    assert!(
        !host.log_text().to_lowercase().contains("authoriz"),
        "no ACL was missing: {}",
        host.log_text()
    );

    // Exactly-once adds the relay's transactional ids and its group.
    grant(
        &broker.kafka,
        alice,
        "Read",
        &["--topic", "words", "--group", "e"],
    );
    let (redis, args) = job("e", &["--delivery", "exactly-once"]);
    let mut host = Host::spawn(&args, cache.path());
    let missing = host.wait(MINUTE);
    let log = host.log_text();
    assert_eq!(missing.code(), Some(1), "{log}");
    assert!(
        log.contains("TransactionalId") && log.contains("streamhost-relay.e.e."),
        "names the ACL to add: {log}"
    );
    assert!(
        redis.offsets("e", "words").values().all(|o| *o == 0),
        "{log}"
    );
    grant(
        &broker.kafka,
        alice,
        "Write",
        &[
            "--transactional-id",
            "streamhost-relay.e.e.",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    grant(
        &broker.kafka,
        alice,
        "Read",
        &["--group", "streamhost-relay.e.e"],
    );
    let (redis, args) = job("e", &["--delivery", "exactly-once"]);
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record committed exactly-once", || {
        redis.offsets("e", "words") == ends
    });
    let words: usize = expected_counts(data.iter().flatten()).values().sum::<i64>() as usize;
    let out = librdkafka_read_committed(&broker.kafka.brokers(), "out", 2 * words, MINUTE);
    assert_eq!(out.len(), 2 * words, "at-least-once run + exactly-once run");
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());

    // Without Write on the output topic the job stops and says which ACL to add.
    let (redis, args) = job("g2", &[]);
    grant(&broker.kafka, alice, "Read", &["--group", "g2"]);
    let mut args = args;
    let at = args
        .iter()
        .position(|a| a == "out")
        .expect("--output-topic");
    args[at] = "unwritable".into();
    broker.create_topic("unwritable", 1);
    let mut host = Host::spawn(&args, cache.path());
    let status = host.wait(MINUTE);
    let log = host.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("unwritable") && log.contains("Write"),
        "names the topic and the ACL: {log}"
    );
    assert!(redis.offsets("g2", "words").is_empty(), "{log}");
}
