//! The whole contract in every language: each port of the test plugin
//! `tests/plugins/timekeeper` (`timekeeper-LANG`, one folder a language) must behave as
//! the Rust original, byte for byte, in everything `host test` prints: state reads
//! (`get`, `get-many`), `incr` and its failure, emits with headers (null and empty
//! values too), `init` config and its refusal, the three error variants, timers and
//! expiries, under several batch sizes.
//!
//! The word count (conformance.rs) covers text handling; this covers the bindings.
//! Adding a language is adding a `timekeeper-LANG` folder with a `build.sh`.

use std::path::Path;

use serde_json::{Value, json};
use streamhost_tests::{host, plugin, repo_root};

/// The ports under tests/plugins, by name.
fn ports() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("tests/plugins"))
        .expect("tests/plugins/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("build.sh").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("timekeeper-"))
        .collect();
    names.sort();
    names
}

fn write_commands(dir: &Path, file: &str, lines: &[(i64, &str)]) -> String {
    let text: Vec<String> = lines
        .iter()
        .map(|(ts, v)| json!({"key": "k", "value": v, "timestamp": ts}).to_string())
        .collect();
    let path = dir.join(file);
    std::fs::write(&path, text.join("\n") + "\n").expect("write commands");
    path.to_string_lossy().into_owned()
}

/// What `host test` says, with what may differ between two plugins taken out: the
/// plugin's name and digest, and wall-clock due times of processing-time entries.
fn outcome(name: &str, input: &str, extra: &[&str], cache: &Path) -> Value {
    let wasm = plugin(name);
    let mut args = vec!["test", "--plugin", wasm.to_str().unwrap_or_default()];
    args.extend_from_slice(&["--input", input]);
    args.extend_from_slice(extra);
    let out = host(&args, cache);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr)
            .replace(&format!("plugin {name}"), "plugin PLUGIN");
        return json!({ "exit": out.status.code(), "stderr": stderr });
    }
    let mut report: Value = serde_json::from_slice(&out.stdout).expect("host test prints JSON");
    if let Some(r) = report.as_object_mut() {
        r.remove("digest");
        r.remove("plugin");
    }
    if let Some(pending) = report["pending"].as_array_mut() {
        for entry in pending.iter_mut() {
            if entry["domain"] == "processing" {
                entry["at"] = json!("wall clock");
            }
        }
        // Entries due at the same wall-clock millisecond come in either order.
        pending.sort_by_key(Value::to_string);
    }
    report
}

/// (label, input, extra args) of every run.
fn runs(dir: &Path) -> Vec<(String, String, Vec<&'static str>)> {
    let contract = write_commands(
        dir,
        "contract.jsonl",
        &[
            (1000, "set a 1"),
            (1000, "get a"),
            (1000, "get missing"),
            (1100, "incr n 5"),
            (1100, "incr n -2"),
            (1200, "set s text"),
            (1200, "emit k v h1=x h2 h3= h4=a=b"),
            (1300, "emit k2 v2"),
            (1300, "timer t event 2000"),
            (1300, "rearm t 50"),
            (2500, "get n"),
            (2500, "delete a"),
            (2500, "get a"),
        ],
    );
    let timers = write_commands(
        dir,
        "timers.jsonl",
        &[
            (1000, "timer a event 5000"),
            (1100, "timer b event 3000"),
            (1200, "timer c event 4000"),
            (1300, "cancel c event"),
            (3500, "timer b event 6000"),
            (3600, "setx e1 v at-watermark 4500"),
            (3600, "setx e2 v at-watermark 4500"),
            (3600, "persist e2"),
            (3600, "setx e3 v after-ms 0"),
            (3600, "setx e4 v after-ms 3600000"),
            (3600, "set e5 v"),
            (3600, "expire e5 at-watermark 4000"),
            (3600, "set e5 w"),
            (3600, "rearm a 1000"),
            (4800, "timer p processing +3600000"),
        ],
    );
    let mut runs = Vec::new();
    for batch in ["1", "3", "100"] {
        runs.push((
            format!("contract, batches of {batch}, tag"),
            contract.clone(),
            vec!["--batch-size", batch, "--config", "tag=t1"],
        ));
        runs.push((
            format!("contract, batches of {batch}"),
            contract.clone(),
            vec!["--batch-size", batch],
        ));
        runs.push((
            format!("timers, batches of {batch}"),
            timers.clone(),
            vec!["--batch-size", batch],
        ));
    }
    let failures = [
        ("retryable", "fail retryable try again later"),
        ("fatal", "fail fatal it  broke"),
        ("poison", "fail poison 1 bad record"),
        ("incr of text", "incr s 1"),
        ("bad incr", "incr s one"),
        (
            "bad command",
            "frobnicate \"quoted\" \\ tab\there é \u{200b}\u{301} \u{7}",
        ),
        ("bad domain", "timer k someday 5"),
        ("bad expiry", "setx k v later 5"),
    ];
    for (i, (label, command)) in failures.into_iter().enumerate() {
        let input = write_commands(
            dir,
            &format!("fail-{i}.jsonl"),
            &[(1000, "set s text"), (1000, command)],
        );
        runs.push((
            format!("fails: {label}"),
            input,
            vec!["--batch-size", "100"],
        ));
    }
    runs.push((
        "init refuses an unknown key".into(),
        contract.clone(),
        vec!["--config", "tag=a", "--config", "bogus=1"],
    ));
    runs
}

#[test]
fn every_port_of_the_timekeeper_behaves_as_the_rust_one() {
    let ports = ports();
    assert!(
        ports.len() >= 7,
        "expected ports in Python, JS, TS, C, C++, Zig and Go, found {ports:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let runs = runs(dir.path());
    let reference: Vec<Value> = runs
        .iter()
        .map(|(_, input, extra)| outcome("timekeeper", input, extra, cache.path()))
        .collect();

    // The reference itself does what the contract says.
    let emits = |r: &Value| -> Vec<String> {
        r["emits"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{}={}", e["key"].as_str().unwrap_or("?"), e["value"]))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        emits(&reference[0]),
        [
            "a=\"got 1\"",
            "missing=\"got none\"",
            "n=\"incr 5\"",
            "n=\"incr 3\"",
            "k=\"v\"",
            "k2=\"v2\"",
            "n=\"got 3\"",
            "t=\"fired event 2000 wm=2500\"",
            "t=\"fired event 2050 wm=2500\"",
            "a=\"got none\"",
        ],
        "reads see earlier writes; a timer rearmed to a time already due fires in the same batch"
    );
    let headers = &reference[0]["emits"][4]["headers"];
    assert_eq!(
        headers.as_array().map(|h| h[..5].to_vec()),
        Some(vec![
            json!(["h1", "x"]),
            json!(["h2", null]),
            json!(["h3", ""]),
            json!(["h4", "a=b"]),
            json!(["tag", "t1"])
        ]),
        "headers in order, null and empty values kept, then the config's tag"
    );
    assert_eq!(reference[0]["state"]["n"], "3");
    let stderr = |label: &str| -> String {
        let i = runs.iter().position(|(l, _, _)| l == label).expect("run");
        assert_eq!(reference[i]["exit"], 1, "{label}: host test fails");
        reference[i]["stderr"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (label, says) in [
        (
            "fails: retryable",
            "reported a retryable error: try again later",
        ),
        ("fails: fatal", "reported a fatal error: it broke"),
        (
            "fails: poison",
            "marked record #1 of the batch as poison: bad record",
        ),
        (
            "fails: incr of text",
            "state key \"s\" holds \"text\", not a decimal integer",
        ),
        (
            "init refuses an unknown key",
            "unknown config key \"bogus\"; timekeeper knows tag",
        ),
    ] {
        assert!(stderr(label).contains(says), "{label}: {}", stderr(label));
    }

    let mut failed = Vec::new();
    for port in &ports {
        for ((label, input, extra), want) in runs.iter().zip(&reference) {
            let got = outcome(port, input, extra, cache.path());
            if got != *want {
                failed.push(format!("{port}, {label}:\n  rust: {want}\n  port: {got}"));
                break; // the first difference per port is enough to read
            }
        }
        eprintln!(
            "contract {port}: {}",
            if failed
                .last()
                .is_some_and(|f| f.starts_with(&format!("{port},")))
            {
                "DIFFERS"
            } else {
                "same as rust"
            }
        );
    }
    assert!(
        failed.is_empty(),
        "ports that differ from the Rust timekeeper:\n{}",
        failed.join("\n\n")
    );
}
