//! `--metrics-addr`: Prometheus metrics, health and readiness of a running job.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::plugin_run_args;
use streamhost_tests::services::{
    Host, Redis, create_topic, free_port, produce, producer, wait_until,
};

const MINUTE: Duration = Duration::from_secs(60);

/// A plain HTTP/1.1 GET: (status code, body).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    ))
}

fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_health_and_readiness() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    let p = producer(&brokers);
    // (Plain values: the faulty plugin acts on some words, such as "retry".)
    produce(&p, &words, 0, &vec![b"fine".to_vec(); 300]);
    produce(&p, &words, 0, &[b"retry".to_vec()]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "faulty",
        &brokers,
        &redis.url(),
        &words,
        &g,
        &[
            "--partitions",
            "0",
            "--batch-max-records",
            "100",
            "--metrics-addr",
            &addr,
            "--on-error",
            "skip",
            "--max-retries",
            "1",
            "--retry-backoff-ms",
            "10",
        ],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record", || {
        redis.offsets(&g, &words).get(&0) == Some(&301)
    });
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(get(port, "/readyz").map(|r| r.0), Some(200));
    let (status, body) = get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    let part = format!(r#"{{job="{g}",topic="{words}",partition="0""#);
    let skipped = metric(
        &body,
        &format!(r#"streamhost_batches_total{part},outcome="skipped"}}"#),
    );
    assert_eq!(skipped, Some(1.0), "{body}");
    let ok = metric(
        &body,
        &format!(r#"streamhost_batches_total{part},outcome="ok"}}"#),
    )
    .unwrap_or(0.0);
    assert!(ok >= 1.0, "{body}");
    assert_eq!(
        metric(&body, &format!("streamhost_retries_total{part}}}")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, &format!("streamhost_committed_offset{part}}}")),
        Some(301.0),
        "{body}"
    );
    for name in [
        "streamhost_records_in_total",
        "streamhost_batch_duration_seconds_bucket",
        "streamhost_plugin_call_duration_seconds_count",
        "streamhost_commit_duration_seconds_sum",
        "streamhost_lag",
        "streamhost_plugin_memory_bytes",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
}

#[test]
fn progress_is_logged_off_a_terminal_and_live_on_one() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let words = unique("words");
    create_topic(&brokers, &words, 1);
    produce(&producer(&brokers), &words, 0, &vec![b"fine".to_vec(); 50]);
    let cache = tempfile::tempdir().unwrap();
    let run = |group: &str, extra: &[&str]| {
        let mut all = vec!["--partitions", "0"];
        all.extend_from_slice(extra);
        plugin_run_args("faulty", &brokers, &redis.url(), &words, group, &all)
    };
    let at_end = format!("{words}/0@50");

    // Off a terminal (the test's pipe): plain log lines at the interval.
    let host = Host::spawn(
        &run(&unique("logged"), &["--progress-interval-s", "1"]),
        cache.path(),
    );
    host.wait_for(MINUTE, "a progress line with every record", || {
        host.log_text()
            .lines()
            .any(|l| l.contains("progress") && l.contains("records=50") && l.contains(&at_end))
    });

    // On a terminal (`script` gives the host a pseudo-terminal): one line rewritten in place.
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let command = std::iter::once(streamhost_tests::host_bin().display().to_string())
        .chain(run(&unique("live"), &[]))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("STREAMHOST_CACHE_DIR", cache.path())
        .env("STREAMHOST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().expect("reopen"))
        .spawn()
        .expect("run script(1)");
    wait_until(MINUTE, "the live progress line", || {
        let text = std::fs::read_to_string(out.path()).unwrap_or_default();
        text.contains("\r\x1b[2K") && text.contains("rec/s") && text.contains(&at_end)
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "log\nfine\n").unwrap();
    let faulty = streamhost_tests::plugin("faulty");
    let out = streamhost_tests::host(
        &[
            "--log-format",
            "json",
            "test",
            "--plugin",
            faulty.to_str().unwrap_or_default(),
            "--input",
            input.to_str().unwrap_or_default(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let note = lines
        .iter()
        .find(|l| l.to_string().contains("note from offset 0"))
        .unwrap_or_else(|| panic!("the plugin's log line is missing: {stderr}"));
    assert_eq!(note["level"], "WARN", "{note}");
}

/// Batches cut at `--batch-max-bytes` carry the records read past the cut into the next
/// batch (the host takes records from librdkafka in bulk), and every record is counted
/// once in the produce-to-commit latency.
#[test]
fn byte_cut_batches_lose_nothing_and_every_record_has_a_latency() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, g) = (unique("words"), unique("g"));
    create_topic(&brokers, &words, 1);
    // 240 records of ~1 KiB: a batch is cut once it holds 8 KiB, after 9 of them.
    let values: Vec<Vec<u8>> = (0..240)
        .map(|i| format!("w{} {}", i % 7, "pad ".repeat(250)).into_bytes())
        .collect();
    produce(&producer(&brokers), &words, 0, &values);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cache = tempfile::tempdir().unwrap();
    let args = plugin_run_args(
        "wordcount",
        &brokers,
        &redis.url(),
        &words,
        &g,
        &[
            "--partitions",
            "0",
            "--batch-max-bytes",
            "8192",
            "--metrics-addr",
            &addr,
        ],
    );
    let host = Host::spawn(&args, cache.path());
    host.wait_for(MINUTE, "every record", || {
        redis.offsets(&g, &words).get(&0) == Some(&240)
    });
    let counts = redis.counts(&g);
    assert_eq!(counts.get("pad"), Some(&(240 * 250)), "{counts:?}");
    for w in 0..7 {
        let expected = (0..240).filter(|i| i % 7 == w).count() as i64;
        assert_eq!(counts.get(&format!("w{w}")), Some(&expected), "w{w}");
    }
    let part = format!(r#"{{job="{g}",topic="{words}",partition="0""#);
    let mut body = String::new();
    // The last batch is accounted once the worker sees its commit answered.
    wait_until(MINUTE, "the metrics of every batch", || {
        body = get(port, "/metrics").map(|r| r.1).unwrap_or_default();
        metric(&body, &format!("streamhost_records_in_total{part}}}")) == Some(240.0)
    });
    let ok = metric(
        &body,
        &format!(r#"streamhost_batches_total{part},outcome="ok"}}"#),
    );
    assert!(
        ok.is_some_and(|n| n >= 27.0),
        "batches of at most 9 records: {ok:?}\n{body}"
    );
    assert_eq!(
        metric(
            &body,
            &format!("streamhost_commit_latency_seconds_count{part}}}")
        ),
        Some(240.0),
        "{body}"
    );
}
