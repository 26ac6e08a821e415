//! What the operator's docs name exists: every Redis key pattern in README.md and
//! docs/operating.md is found in a real Redis after a push and a running job, and every
//! metric named there is on `/metrics` of a running server (and every metric family the
//! server exports is named there).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve;
use streamhost_tests::services::{Redis, create_topic, partition_keys, produce, producer};
use streamhost_tests::{repo_root, text_values};

const MINUTE: Duration = Duration::from_secs(60);

fn docs() -> String {
    ["README.md", "docs/operating.md"]
        .iter()
        .map(|f| std::fs::read_to_string(repo_root().join(f)).expect("read docs"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Backticked Redis key patterns (`streamhost:<group>:offsets:<topic>`): not the WIT
/// package names (`streamhost:plugin@0.2.0`).
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("streamhost:") && !s.contains(['@', '/', ' ']))
        .map(str::to_owned)
        .collect()
}

/// Metric names (`streamhost_records_in_total`).
fn documented_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("streamhost_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].trim_end_matches('_').to_owned());
        rest = &tail[end..];
    }
    out
}

/// A key matches a pattern when each `:` segment is equal, or the pattern's is `<...>`
/// (names in keys hold no `:`: topics, groups, jobs and members cannot). Hash-tag braces
/// around a segment (`{<job>}`, `{<job>`, `<p>}`) must be in both.
fn matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split(':').collect();
    let k: Vec<&str> = key.split(':').collect();
    let segment = |p: &str, k: &str| {
        let (p_open, k_open) = (p.starts_with('{'), k.starts_with('{'));
        let (p_close, k_close) = (p.ends_with('}'), k.ends_with('}'));
        if p_open != k_open || p_close != k_close {
            return false;
        }
        fn inner(s: &str, open: bool, close: bool) -> &str {
            let s = if open { &s[1..] } else { s };
            if close { &s[..s.len() - 1] } else { s }
        }
        let (p, k) = (inner(p, p_open, p_close), inner(k, p_open, p_close));
        (p.starts_with('<') && p.ends_with('>') && !k.is_empty()) || p == k
    };
    p.len() == k.len() && p.iter().zip(&k).all(|(p, k)| segment(p, k))
}

/// A dead letter of `job` on `topic` as a partition worker writes one: the failed record of
/// `source` and the headers saying where it came from.
fn dead_letter(brokers: &str, topic: &str, job: &str, source: &str) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let headers = [
        (
            "streamhost-error",
            "plugin marked record #0 of the batch as poison",
        ),
        ("streamhost-job", job),
        ("streamhost-source-topic", source),
        ("streamhost-source-partition", "0"),
        ("streamhost-source-offset", "0"),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value),
        })
    });
    let record = FutureRecord::<(), str>::to(topic)
        .partition(0)
        .payload("replayed word")
        .headers(headers);
    futures::executor::block_on(producer(brokers).send(record, Duration::from_secs(30)))
        .expect("dead letter produced");
}

#[test]
fn every_documented_redis_key_and_metric_exists() {
    let text = docs();
    let keys = documented_keys(&text);
    let metrics = documented_metrics(&text);
    assert!(keys.len() >= 7, "{keys:?}");
    assert!(metrics.len() >= 12, "{metrics:?}");

    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let [words, cmds, dead, echoed] = ["words", "cmds", "dead", "echoed"].map(unique);
    let [wc, wcp, tk, wcd, eo] = ["wc", "wcp", "tk", "wcd", "eo"].map(unique);
    create_topic(&brokers, &words, 1);
    produce(&producer(&brokers), &words, 0, &text_values(9, 200));
    let cache = tempfile::tempdir().unwrap();
    let s = serve(&redis, &brokers, Some("t0ken"), &[], cache.path());
    let create = |job: serde_json::Value| {
        s.call(
            "POST",
            "/v1/jobs",
            Some("t0ken"),
            job.to_string().as_bytes(),
        )
        .status
    };
    assert_eq!(s.upload("wordcount", "1", "wordcount").status, 201);
    // A removed version leaves its name bound to its digest.
    assert_eq!(s.upload("gone", "1", "echo").status, 201);
    let removed = s.call("DELETE", "/v1/plugins/gone/1", Some("t0ken"), b"");
    assert_eq!(removed.status, 204, "{}", removed.text());
    let job = json!({"id": wc, "plugin": "wordcount@1", "topics": [words], "partitions": [0]});
    assert_eq!(create(job), 201);
    // The same under the partition scope, whose keys differ.
    let job = json!({"id": wcp, "plugin": "wordcount@1", "topics": [words], "partitions": [0],
                     "settings": {"state_scope": "partition"}});
    assert_eq!(create(job), 201);
    // And a job with timers pending in both domains, whose keys exist only then.
    create_topic(&brokers, &cmds, 1);
    let commands = [
        b"timer later processing +3600000".to_vec(),
        b"timer never event 9000000000000000".to_vec(),
    ];
    produce(&producer(&brokers), &cmds, 0, &commands);
    assert_eq!(s.upload("timekeeper", "1", "timekeeper").status, 201);
    let job = json!({"id": tk, "plugin": "timekeeper@1", "topics": [cmds], "partitions": [0]});
    assert_eq!(create(job), 201);
    // And a replayed dead letter, whose cursor exists only then.
    create_topic(&brokers, &dead, 1);
    let job = json!({"id": wcd, "plugin": "wordcount@1", "topics": [words], "partitions": [0],
                     "settings": {"on_error": "dlq", "dlq_topic": dead}});
    assert_eq!(create(job), 201);
    dead_letter(&brokers, &dead, &wcd, &words);
    let replay = s.call(
        "POST",
        &format!("/v1/jobs/{wcd}/dead-letters/replay"),
        Some("t0ken"),
        b"",
    );
    assert_eq!(replay.status, 200, "{}", replay.text());
    assert_eq!(replay.json()["replayed"], 1);
    // And a job with exactly-once delivery, whose outbox exists only then.
    create_topic(&brokers, &echoed, 1);
    assert_eq!(s.upload("echo", "1", "echo").status, 201);
    let job = json!({"id": eo, "plugin": "echo@1", "topics": [words], "partitions": [0],
                     "output_topic": echoed, "settings": {"delivery": "exactly-once"}});
    assert_eq!(create(job), 201);
    let (wcp_offsets, _) = partition_keys(&wcp, &wcp, &words, 0);
    let outbox = format!("streamhost:{{{eo}}}:outbox:{eo}:{words}:0");
    s.host
        .wait_for(MINUTE, "the jobs to commit every record", || {
            redis.offsets(&wc, &words).get(&0) == Some(&200)
                && redis.hgetall(&wcp_offsets).get("0").map(String::as_str) == Some("200")
                && redis.offsets(&tk, &cmds).get(&0) == Some(&2)
                && redis.offsets(&eo, &words).get(&0) == Some(&200)
                && redis::cmd("XLEN")
                    .arg(&outbox)
                    .query::<usize>(&mut redis.conn())
                    .ok()
                    == Some(0)
                && s.call("GET", "/metrics", None, b"")
                    .text()
                    .contains("streamhost_relay_records_total{")
        });

    let present: Vec<String> = redis::cmd("KEYS")
        .arg("streamhost:*")
        .query(&mut redis.conn())
        .expect("KEYS");
    for pattern in &keys {
        assert!(
            present.iter().any(|k| matches(pattern, k)),
            "the docs name {pattern}, which is not in Redis: {present:?}"
        );
    }

    let body = s.call("GET", "/metrics", None, b"").text();
    let exported: BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in &metrics {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            exported.contains(family),
            "the docs name {name}, which /metrics does not export:\n{body}"
        );
        assert!(
            body.lines().any(|l| l.starts_with(name.as_str())),
            "{name} has no sample:\n{body}"
        );
    }
    for family in &exported {
        assert!(
            metrics.contains(*family) || metrics.contains(&format!("{family}_total")),
            "/metrics exports {family}, which the docs do not name"
        );
    }
}

/// Every input file a README or doc passes to `--input` is in the repository, where the
/// command runs from (the repository root for README.md and docs/, the plugin's folder for
/// its README), so the examples run as written. `host new`'s `sample.txt` and the `FILE`
/// placeholder are the two names that are not files here.
#[test]
fn every_input_file_the_docs_name_exists() {
    let root = repo_root();
    let mut docs: Vec<(std::path::PathBuf, std::path::PathBuf)> =
        vec![(root.join("README.md"), root.clone())];
    for dir in ["docs", "plugins"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                docs.push((path, root.clone()));
            } else if path.join("README.md").exists() {
                docs.push((path.join("README.md"), path.clone()));
            }
        }
    }
    let mut checked = 0;
    for (doc, from) in docs {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        let words: Vec<&str> = text.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] != "--input" {
                continue;
            }
            let name = pair[1].trim_end_matches(['`', ')', ',', '.']);
            if matches!(name, "FILE" | "sample.txt") {
                continue;
            }
            assert!(
                from.join(name).is_file(),
                "{} names --input {name}, which is not in the repository",
                doc.display()
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 10,
        "only {checked} --input files found: is the scan broken?"
    );
}

/// The README's event-time example runs as written from the repository root, and closes
/// every window of the sample clicks.
#[test]
fn the_readme_window_example_runs_as_written() {
    let cache = tempfile::tempdir().unwrap();
    let root = repo_root();
    let out = std::process::Command::new(streamhost_tests::host_bin())
        .current_dir(&root)
        .args([
            "test",
            "--plugin",
            "build/plugins/window-count.wasm",
            "--input",
            "examples/clicks.jsonl",
        ])
        .env("STREAMHOST_CACHE_DIR", cache.path())
        .env("STREAMHOST_LOG", "warn")
        .output()
        .expect("run host");
    let report = streamhost_tests::stdout_json(&out);
    let emits = report["emits"].as_array().expect("emits");
    assert!(!emits.is_empty(), "{report}");
    assert_eq!(
        report["pending"],
        json!([]),
        "every window closed: {report}"
    );
}
