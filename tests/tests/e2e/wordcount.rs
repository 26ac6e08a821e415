//! `host test` with the wordcount plugin, checked against a count made here.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use streamhost_tests::{host, plugin, repo_root, stdout_json};

/// The specification of the word count, written independently of the plugin.
fn expected_counts<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for value in values {
        for word in String::from_utf8_lossy(value).split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

fn state_of(report: &Value) -> BTreeMap<String, i64> {
    report["state"]
        .as_object()
        .expect("state object")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("decimal count"),
            )
        })
        .collect()
}

fn run(input: &Path, extra: &[&str]) -> Value {
    let cache = tempfile::tempdir().unwrap();
    let wc = plugin("wordcount");
    let mut args = vec![
        "test",
        "--plugin",
        wc.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    stdout_json(&host(&args, cache.path()))
}

#[test]
fn counts_the_sample_text_exactly_at_any_batch_size() {
    let input = repo_root().join("examples/words.txt");
    let text = std::fs::read(&input).unwrap();
    let expected = expected_counts(text.split(|b| *b == b'\n'));
    assert!(
        expected.len() > 20,
        "the sample should have many distinct words"
    );
    for batch_size in ["1", "7", "100000"] {
        let report = run(&input, &["--batch-size", batch_size]);
        assert_eq!(state_of(&report), expected, "batch size {batch_size}");
        assert!(
            report["emits"].as_array().unwrap().is_empty(),
            "no emits without emit=true"
        );
    }
}

#[test]
fn emits_one_record_per_word_with_source_headers() {
    let input = repo_root().join("examples/words.txt");
    let text = std::fs::read(&input).unwrap();
    let expected = expected_counts(text.split(|b| *b == b'\n'));
    let report = run(&input, &["--config", "emit=true", "--batch-size", "50"]);
    let emits = report["emits"].as_array().unwrap();
    assert_eq!(emits.len() as i64, expected.values().sum::<i64>());
    let mut per_word = BTreeMap::new();
    for e in emits {
        *per_word
            .entry(e["key"].as_str().unwrap().to_owned())
            .or_insert(0i64) += 1;
        assert_eq!(e["value"], "1");
        let names: Vec<&str> = e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h[0].as_str().unwrap())
            .collect();
        assert!(names.contains(&"streamhost-source-partition"), "{names:?}");
    }
    assert_eq!(per_word, expected);
    assert_eq!(state_of(&report), expected);
}

#[test]
fn odd_text_does_not_fail_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("odd.txt");
    let text: &[u8] = b"\xff\xfe\xfd broken UTF-8 \xc3\n\n   \n\tTabs\tand\x0bvertical tab\r\nStra\xc3\x9fe STRASSE \xe2\x80\x83em-space\n";
    std::fs::write(&input, text).unwrap();
    let expected = expected_counts(
        text.split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l)),
    );
    assert_eq!(state_of(&run(&input, &["--batch-size", "1"])), expected);
}

#[test]
fn null_and_empty_values_do_not_fail_it() {
    let input = repo_root().join("examples/records.jsonl");
    let report = run(&input, &[]);
    let state = state_of(&report);
    assert_eq!(report["records"], 6);
    assert_eq!(state.get("pears"), Some(&4));
    assert_eq!(state.get("ünïcödé"), Some(&2));
    assert!(
        state.contains_key("\u{fffd}\u{fffd}not"),
        "non-UTF-8 bytes are counted lossily: {state:?}"
    );
}
