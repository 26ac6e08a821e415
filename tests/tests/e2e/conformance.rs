//! Conformance: every word count under `plugins/` (`wordcount*`, one folder a language)
//! must give the same state and the same emits as the specification and as each other,
//! under `host test` and through the real pipeline (Apache Kafka + redis-server), over
//! inputs that catch the usual differences between languages: non-ASCII text and case
//! mappings, Unicode whitespace, empty and null values, bytes that are not UTF-8, a batch
//! of one.
//!
//! Adding a language is adding a `wordcount-LANG` folder with a `build.sh`: the suite
//! finds it, and reports each plugin's result on its own. (The window examples are
//! compared in `event_time.rs`.)

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{Host, Redis, create_topic, producer, read_topic, state_key};
use streamhost_tests::{expected_counts, host, plugin_run_args, repo_root, stdout_json};

/// The inputs, in order. `None` is a Kafka null value (a tombstone).
fn inputs() -> Vec<Option<Vec<u8>>> {
    let text = |s: &str| Some(s.as_bytes().to_vec());
    vec![
        text("The quick brown fox jumps over the lazy dog"),
        text("Größe STRASSE straße Ωμέγα ΟΔΟΣ ΣΟΦΟΣ İstanbul café CAFÉ Ǆemal"),
        text("日本語の テキスト\u{3000}全角スペース　と 한국어 и КИРИЛЛИЦА"),
        text(""),
        None,
        // Invalid UTF-8: a lone 0xFF, a truncated 2-byte and 3-byte sequence, a surrogate.
        Some(b"ok\xff fo\xc3 \xe2\x82x bad\xed\xa0\x80end fox".to_vec()),
        text("tabs\tand\u{a0}nbsp\u{2003}em\u{2028}line-sep\nnewline  double\u{85}nel"),
        text("   leading and trailing   "),
        text("the THE The tHe"),
        text("x"),
        text("emoji 🦀 🦀 crab's dog."),
        text("\u{1c}sep\u{1f}not-whitespace \u{feff}bom"),
        // A leading U+FEFF is a character of the first word, not a byte-order mark.
        text("\u{feff}leading bom"),
    ]
}

fn input_file(dir: &Path) -> std::path::PathBuf {
    let lines: Vec<String> = inputs()
        .iter()
        .map(|v| {
            let value = match v {
                None => Value::Null,
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => json!(s),
                    Err(_) => {
                        use base64::Engine as _;
                        json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
                    }
                },
            };
            json!({ "value": value }).to_string()
        })
        .collect();
    let path = dir.join("inputs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write inputs");
    path
}

/// The folders of `plugins/` that hold a word count (a `build.sh`), by name.
fn discovered_plugins() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("plugins"))
        .expect("plugins/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("build.sh").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("wordcount"))
        .collect();
    names.sort();
    names
}

fn component(name: &str) -> std::path::PathBuf {
    repo_root()
        .join("build/plugins")
        .join(format!("{name}.wasm"))
}

/// `host test` of one plugin with `emit=true`: (state, emits).
fn host_test(name: &str, input: &Path, topic: &str, batch: usize, cache: &Path) -> (Value, Value) {
    let wasm = component(name);
    let batch = batch.to_string();
    let args = [
        "test",
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--input",
        input.to_str().unwrap_or_default(),
        "--topic",
        topic,
        "--batch-size",
        &batch,
        "--config",
        "emit=true",
    ];
    let report = stdout_json(&host(&args, cache));
    (report["state"].clone(), report["emits"].clone())
}

fn produce_all(producer: &FutureProducer, topic: &str) {
    let values = inputs();
    for v in &values {
        let mut record = FutureRecord::<(), [u8]>::to(topic).partition(0);
        if let Some(b) = v {
            record = record.payload(b.as_slice());
        }
        // One record at a time: the pipeline must see the same offsets as `host test`.
        futures::executor::block_on(producer.send(record, Duration::from_secs(30)))
            .expect("acknowledged");
    }
}

/// Runs one plugin through `host run` with batches of one record, in a group of its own;
/// (state, emits) in the shape `host test` prints, read back from Redis and the output
/// topic `{topic}-out`.
fn pipeline(
    name: &str,
    topic: &str,
    brokers: &str,
    redis: &Redis,
    producer: &FutureProducer,
    emits_expected: usize,
    cache: &Path,
) -> (Value, Value) {
    let out_topic = format!("{topic}-out");
    let group = unique(name);
    create_topic(brokers, topic, 1);
    create_topic(brokers, &out_topic, 1);
    produce_all(producer, topic);
    let n = inputs().len() as i64;
    let args = plugin_run_args(
        name,
        brokers,
        &redis.url(),
        topic,
        &group,
        &[
            "--partitions",
            "0",
            "--batch-max-records",
            "1",
            "--output-topic",
            &out_topic,
            "--config",
            "emit=true",
        ],
    );
    let host = Host::spawn(&args, cache);
    host.wait_for(Duration::from_secs(120), "every input committed", || {
        redis.offsets(&group, topic).get(&0) == Some(&n)
    });
    drop(host);

    let state: serde_json::Map<String, Value> = redis
        .hgetall(&state_key(&group))
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let emits: Vec<Value> = read_topic(brokers, &out_topic, emits_expected)
        .iter()
        .map(|m| {
            let headers: Vec<Value> = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            json!([
                                h.key,
                                h.value.map(|v| String::from_utf8_lossy(v).into_owned())
                            ])
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "topic": null,
                "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                "value": m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                "headers": headers,
            })
        })
        .collect();
    (Value::Object(state), Value::Array(emits))
}

/// Emits as `host test` prints them, with the target topic left out: `host test` shows
/// `null` (the job's output topic) where the pipeline wrote to `--output-topic`.
fn without_topic(emits: &Value) -> Value {
    Value::Array(
        emits
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let mut e = e.clone();
                        e["topic"] = Value::Null;
                        e
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

#[test]
fn every_plugin_gives_the_specified_state_and_emits_in_host_test_and_the_pipeline() {
    let plugins = discovered_plugins();
    assert!(
        plugins.len() >= 8,
        "expected the Rust, Python, JavaScript, TypeScript, C, C++, Zig and Go plugins under plugins/, found {plugins:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let input = input_file(dir.path());
    let cache = tempfile::tempdir().expect("cache dir");

    // The specification, written independently of every plugin.
    let values: Vec<Vec<u8>> = inputs().into_iter().flatten().collect();
    let spec: BTreeMap<String, i64> = expected_counts(&values);
    let spec_state: Value = spec
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.to_string())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let words: usize = spec.values().sum::<i64>() as usize;
    assert!(spec.contains_key("οδος") && spec.contains_key("i\u{307}stanbul"));
    assert!(spec.contains_key("\u{feff}leading"));

    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let producer = producer(&brokers);
    let mut reference: Option<(String, Value, Value)> = None; // first plugin's emits
    let mut report = Vec::new();
    for name in &plugins {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            assert!(
                component(name).exists(),
                "{} is missing: scripts/build-plugins did not build plugins/{name}",
                component(name).display()
            );
            let topic = unique(&format!("conformance-{name}"));
            let (state_one, emits_one) = host_test(name, &input, &topic, 1, cache.path());
            let (state_all, emits_all) = host_test(name, &input, &topic, 1000, cache.path());
            assert_eq!(state_one, spec_state, "host test, batches of one: state");
            assert_eq!(state_all, spec_state, "host test, one batch: state");
            assert_eq!(emits_one.as_array().map(Vec::len), Some(words), "emits");
            let (state_run, emits_run) = pipeline(
                name,
                &topic,
                &brokers,
                &redis,
                &producer,
                words,
                cache.path(),
            );
            assert_eq!(state_run, spec_state, "pipeline: state in Redis");
            assert_eq!(
                emits_run,
                without_topic(&emits_one),
                "pipeline: emitted records (key, value, headers, order) vs host test"
            );
            // Across plugins, only the source topic's name (one topic each) may differ.
            let rename = |e: Value| Value::String(e.to_string().replace(&topic, "T"));
            (rename(emits_one), rename(emits_all))
        }));
        match outcome {
            Ok((emits_one, emits_all)) => {
                let same = match &reference {
                    None => {
                        reference = Some((name.clone(), emits_one, emits_all));
                        Ok(())
                    }
                    Some((_, one, all)) if *one == emits_one && *all == emits_all => Ok(()),
                    Some((first, _, _)) => Err(format!("emits differ from those of {first}")),
                };
                report.push((name.clone(), same));
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                report.push((name.clone(), Err(msg)));
            }
        }
    }
    let failed: Vec<String> = report
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
        .collect();
    for (name, result) in &report {
        eprintln!(
            "conformance {name}: {}",
            if result.is_ok() { "ok" } else { "FAILED" }
        );
    }
    assert!(
        failed.is_empty(),
        "plugins that do not conform:\n{}",
        failed.join("\n\n")
    );
}

/// Batches as large as `host run` makes by default must fit every plugin's default memory
/// cap (64 MiB): 4 MiB of values (the byte cut), and 10,000 short records (the record cut;
/// interpreters spend hundreds of bytes on each record object). A plugin that held all of
/// a batch's words at once would not. And 100,000 records in batches of 100 must not wear
/// any plugin down.
#[test]
fn every_plugin_handles_a_default_size_batch_within_the_default_memory_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1000 values of ~4 KiB: lines of ~200 short texts each.
    let big: Vec<Vec<u8>> = streamhost_tests::text_values(99, 200_000)
        .chunks(200)
        .map(|c| c.join(&b' '))
        .collect();
    let many = streamhost_tests::text_values(98, 10_000);
    let cache = tempfile::tempdir().expect("cache");
    let mut failed = Vec::new();
    // A long stream of small batches: a guest whose garbage collector can start inside
    // `cabi_realloc` (where a call out to the host traps) fails here, not in a short run.
    let stream = streamhost_tests::text_values(97, 100_000);
    for (file, values, batch) in [
        ("big.txt", &big, "1000"),
        ("many.txt", &many, "10000"),
        ("stream.txt", &stream, "100"),
    ] {
        let input = dir.path().join(file);
        let mut text = Vec::new();
        for v in values {
            text.extend_from_slice(v);
            text.push(b'\n');
        }
        if file == "big.txt" {
            assert!(
                text.len() > 4 << 20,
                "a default batch: {} bytes",
                text.len()
            );
        }
        std::fs::write(&input, &text).expect("write input");
        let expected = expected_counts(values);
        for name in discovered_plugins() {
            let wasm = component(&name);
            let args = [
                "test",
                "--plugin",
                wasm.to_str().unwrap_or_default(),
                "--input",
                input.to_str().unwrap_or_default(),
                "--batch-size",
                batch,
            ];
            let out = host(&args, cache.path());
            if !out.status.success() {
                failed.push(format!(
                    "{name} ({file}): {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                continue;
            }
            let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
            let counts: BTreeMap<String, i64> = report["state"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().and_then(|s| s.parse().ok()).unwrap_or(-1),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if counts != expected {
                failed.push(format!("{name} ({file}): wrong counts"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
