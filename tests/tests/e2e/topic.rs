//! `host topic list|describe|create|consume`, the kcat-like tools, on Apache Kafka: what
//! `host produce` wrote comes back with its keys, values, headers and offsets.

use serde_json::Value;
use streamhost_tests::host;
use streamhost_tests::kafka::{Kafka, unique};

fn topic_cmd(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    let mut all = vec!["topic"];
    all.extend_from_slice(args);
    host(&all, cache)
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn create_list_describe_and_consume_what_was_produced() {
    let brokers = Kafka::shared().brokers();
    let topic = unique("looked-at");
    let cache = tempfile::tempdir().unwrap();
    let b = brokers.as_str();

    let missing = topic_cmd(&["consume", "-b", b, "-t", &topic, "-e"], cache.path());
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains(&format!("topic {topic} does not exist")) && err.contains("host topic create"),
        "{err}"
    );

    ok(&topic_cmd(
        &["create", "-b", b, "-t", &topic, "--partitions", "2"],
        cache.path(),
    ));
    let list = ok(&topic_cmd(&["list", "-b", b], cache.path()));
    assert!(list.contains(&format!("{topic}\t2 partitions")), "{list}");

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"key": "k{i}", "value": "v{i}", "headers": {{"n": "{i}"}}}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    ok(&host(
        &[
            "produce",
            "--brokers",
            b,
            "--topic",
            &topic,
            "--input",
            input.to_str().unwrap_or_default(),
        ],
        cache.path(),
    ));

    let described = ok(&topic_cmd(
        &["describe", "-b", b, "-t", &topic],
        cache.path(),
    ));
    let ends: i64 = described
        .lines()
        .skip(2)
        .filter_map(|l| l.split('\t').nth(5)?.parse::<i64>().ok())
        .sum();
    assert_eq!(ends, 10, "{described}");

    // Everything, as JSON Lines, then stop at the end.
    let all = json_lines(&ok(&topic_cmd(
        &["consume", "-b", b, "-t", &topic, "-e", "-J"],
        cache.path(),
    )));
    assert_eq!(all.len(), 10);
    let mut seen: Vec<(String, String, String)> = all
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap_or_default().to_owned(),
                r["value"].as_str().unwrap_or_default().to_owned(),
                r["headers"][0][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String, String)> = (0..10)
        .map(|i| (format!("k{i}"), format!("v{i}"), i.to_string()))
        .collect();
    want.sort();
    assert_eq!(seen, want);

    // The last record of each partition; one partition, one record; text lines.
    let tail = json_lines(&ok(&topic_cmd(
        &["consume", "-b", b, "-t", &topic, "-o", "-1", "-e", "-J"],
        cache.path(),
    )));
    assert_eq!(tail.len(), 2, "{tail:?}");
    let one = ok(&topic_cmd(
        &["consume", "-b", b, "-t", &topic, "-p", "0", "-e", "-c", "1"],
        cache.path(),
    ));
    let line = one.lines().next().expect("one line");
    assert!(line.starts_with("0@0\tk"), "{line}");
    assert!(line.contains("\tn="), "{line}");

    // By time: nothing was written an hour from now, everything after an hour ago.
    let later = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        .to_string();
    let none = ok(&topic_cmd(
        &[
            "consume",
            "-b",
            b,
            "-t",
            &topic,
            "--from-time",
            &later,
            "-e",
        ],
        cache.path(),
    ));
    assert_eq!(none.lines().count(), 0, "{none}");
    let recent = ok(&topic_cmd(
        &[
            "consume",
            "-b",
            b,
            "-t",
            &topic,
            "--from-time",
            "1h",
            "-e",
            "--isolation",
            "read-uncommitted",
        ],
        cache.path(),
    ));
    assert_eq!(recent.lines().count(), 10, "{recent}");
}
