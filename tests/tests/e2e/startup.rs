//! Start-up against services that are not there yet, or never will be: the host waits
//! for Redis as long as a commit would (`--redis-give-up-ms`), says so every few seconds,
//! and then stops with a message that says what to check; a missing topic is named; a
//! malformed Redis URL is called malformed; `host serve` binds before it starts jobs.

use std::time::Duration;

use streamhost_tests::http::request;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve_args;
use streamhost_tests::services::{Host, Redis, create_topic, free_port, produce, producer};
use streamhost_tests::{expected_counts, host, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

fn warnings(log: &str, what: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(what))
        .count()
}

#[test]
fn a_host_started_before_redis_waits_for_it_and_ends_exact() {
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    let parts: Vec<Vec<Vec<u8>>> = (0..2).map(|i| text_values(70 + i, 500)).collect();
    for (i, v) in parts.iter().enumerate() {
        produce(&p, &words, i as i32, v);
    }
    let mut redis = Redis::not_started();
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &words,
        &g,
        &["--redis-give-up-ms", "120000"],
    );
    let mut host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "a warning that the host waits for Redis", || {
        warnings(&host.log_text(), "waiting for Redis") >= 1
    });
    assert!(host.running(), "the host waits instead of exiting");
    let log = host.log_text();
    assert!(
        log.contains("attempts="),
        "the warning counts attempts: {log}"
    );

    redis.restart();
    host.wait_for(MINUTE, "every record committed", || {
        redis.offsets(&g, &words) == [(0, 500), (1, 500)].into()
    });
    assert_eq!(
        redis.counts(&g),
        expected_counts(parts.iter().flatten()),
        "exactly-once state"
    );
    host.signal(libc::SIGTERM);
    assert!(host.wait(MINUTE).success(), "{}", host.log_text());
}

#[test]
fn a_host_gives_up_on_an_unreachable_redis_with_a_message_that_says_what_to_check() {
    let brokers = Kafka::shared().brokers();
    let redis = Redis::not_started();
    let cache = tempfile::tempdir().unwrap();
    let args = run_args(
        &brokers,
        &redis.url(),
        &unique("words"),
        &unique("g"),
        &["--redis-give-up-ms", "6000"],
    );
    let mut host = Host::spawn(&args, cache.path());
    let status = host.wait(MINUTE);
    assert_eq!(status.code(), Some(1), "{}", host.log_text());
    let log = host.log_text();
    assert!(
        log.contains(&format!(
            "Redis at redis://127.0.0.1:{} could not be reached",
            redis.port
        )) && log.contains("attempts")
            && log.contains("check that it is running")
            && log.contains("--redis-give-up-ms"),
        "{log}"
    );
    // One concise warning every few seconds, not one per attempt.
    let n = warnings(&log, "waiting for Redis");
    assert!((1..=3).contains(&n), "{n} warnings in 6 s:\n{log}");
}

#[test]
fn serve_waits_for_redis_and_gives_up_after_its_give_up_time() {
    let cache = tempfile::tempdir().unwrap();
    let mut redis = Redis::not_started();
    let url = redis.url();
    let addr = format!("127.0.0.1:{}", free_port());
    let serve =
        |give_up: &str| serve_args(&addr, &url, "127.0.0.1:9", &["--redis-give-up-ms", give_up]);
    let mut gives_up = Host::spawn(&serve("3000"), cache.path());
    assert_eq!(gives_up.wait(MINUTE).code(), Some(1));
    let log = gives_up.log_text();
    assert!(log.contains("could not be reached"), "{log}");

    let server = Host::spawn(&serve("120000"), cache.path());
    server.wait_for(MINUTE, "a warning that serve waits for Redis", || {
        warnings(&server.log_text(), "waiting for Redis") >= 1
    });
    redis.restart();
    server.wait_for(MINUTE, "the API to answer", || {
        request(&addr, "GET", "/v1/jobs", None, b"").is_some_and(|r| r.status == 200)
    });
}

#[test]
fn serve_on_a_busy_address_fails_before_it_touches_its_jobs() {
    let redis = Redis::start_in_memory();
    redis::cmd("HSET")
        .arg("streamhost:serve:jobs")
        .arg("j1")
        .arg(r#"{"id": "j1", "plugin": "wordcount@1", "topics": ["words"]}"#)
        .query::<()>(&mut redis.conn())
        .expect("HSET");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let cache = tempfile::tempdir().unwrap();
    let args = serve_args(&addr, &redis.url(), "127.0.0.1:9", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = host(&args, cache.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on --admin-addr {addr}")),
        "{err}"
    );
    assert!(
        !err.contains("j1"),
        "no job was resumed or even looked at: {err}"
    );
}

#[test]
fn a_malformed_redis_url_is_called_malformed() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = streamhost_tests::plugin("wordcount");
    for url in ["localhost:6379", "http://127.0.0.1:6379"] {
        let out = host(
            &[
                "run",
                "--plugin",
                wasm.to_str().unwrap_or_default(),
                "--topic",
                "words",
                "--redis",
                url,
            ],
            cache.path(),
        );
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is malformed") && err.contains("redis://[USER:PASSWORD@]HOST:PORT"),
            "{url}: {err}"
        );
        assert!(!err.contains("unavailable"), "{url}: {err}");
    }
}

#[test]
fn a_missing_topic_is_named_waited_for_and_picked_up_once_created() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (nosuch, later) = (unique("nosuch"), unique("later"));
    let (g1, g2) = (unique("g1"), unique("g2"));
    let cache = tempfile::tempdir().unwrap();

    // Never created: the job stops after --kafka-give-up-ms with a message naming it.
    let mut gives_up = Host::spawn(
        &run_args(
            &brokers,
            &redis.url(),
            &nosuch,
            &g1,
            &["--kafka-give-up-ms", "3000"],
        ),
        cache.path(),
    );
    assert_eq!(gives_up.wait(MINUTE).code(), Some(1));
    let log = gives_up.log_text();
    assert!(
        log.contains(&format!("topic {nosuch} does not exist on"))
            && log.contains("create it, or check --topic, --output-topic and --brokers"),
        "{log}"
    );

    // Created while the job waits: it is picked up and consumed.
    let host = Host::spawn(
        &run_args(&brokers, &redis.url(), &later, &g2, &[]),
        cache.path(),
    );
    host.wait_for(MINUTE, "a warning naming the missing topic", || {
        warnings(&host.log_text(), &format!("topic {later} does not exist")) >= 1
    });
    create_topic(&brokers, &later, 1);
    let values = text_values(5, 100);
    produce(&producer(&brokers), &later, 0, &values);
    host.wait_for(Duration::from_secs(120), "every record committed", || {
        redis.offsets(&g2, &later).get(&0) == Some(&100)
    });
    assert_eq!(redis.counts(&g2), expected_counts(&values));
}
