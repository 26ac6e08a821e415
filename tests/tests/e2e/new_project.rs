//! `host new --lang L NAME`: every language's generated project builds with its own
//! `build.sh` and passes `host test` on its sample input, as generated.

use std::process::Command;

use serde_json::json;
use streamhost_tests::{host, stdout_json};

fn build_and_test(lang: &str, cache: &std::path::Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let name = format!("my-{lang}-plugin");
    let out = host(
        &[
            "new",
            "--lang",
            lang,
            "--dir",
            dir.path().to_str().unwrap_or_default(),
            &name,
        ],
        cache,
    );
    if !out.status.success() {
        return Err(format!(
            "host new failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let root = dir.path().join(&name);
    let build = Command::new(root.join("build.sh"))
        .output()
        .map_err(|e| format!("cannot run build.sh: {e}"))?;
    if !build.status.success() {
        return Err(format!(
            "build.sh failed ({}):\n{}{}",
            build.status,
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        ));
    }
    let wasm = root.join(format!("{name}.wasm"));
    let sample = root.join("sample.txt");
    let text = std::fs::read_to_string(&sample).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = text.lines().collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    for (config, emits) in [("echo=false", 0), ("echo=true", lines.len())] {
        let report = stdout_json(&host(
            &[
                "test",
                "--plugin",
                wasm.to_str().unwrap_or_default(),
                "--input",
                sample.to_str().unwrap_or_default(),
                "--batch-size",
                "3",
                "--config",
                config,
            ],
            cache,
        ));
        let state = &report["state"];
        let want = json!({ "records": lines.len().to_string(), "bytes": bytes.to_string() });
        if *state != want {
            return Err(format!("{config}: state {state}, expected {want}"));
        }
        let got = report["emits"].as_array().map(Vec::len);
        if got != Some(emits) {
            return Err(format!("{config}: {got:?} emits, expected {emits}"));
        }
    }
    Ok(())
}

#[test]
fn every_language_template_builds_and_passes_host_test() {
    let cache = tempfile::tempdir().expect("cache");
    let mut failed = Vec::new();
    for lang in ["rust", "python", "js", "ts", "c", "cpp", "zig", "go"] {
        match build_and_test(lang, cache.path()) {
            Ok(()) => eprintln!("host new --lang {lang}: ok"),
            Err(e) => failed.push(format!("--lang {lang}: {e}")),
        }
    }
    assert!(
        failed.is_empty(),
        "templates that fail:\n{}",
        failed.join("\n\n")
    );
}

#[test]
fn a_bad_name_or_an_existing_folder_is_refused_with_the_reason() {
    let cache = tempfile::tempdir().expect("cache");
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path().to_str().unwrap_or_default();
    let out = host(
        &["new", "--lang", "c", "--dir", d, "../escape"],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad plugin name"));
    assert!(
        host(&["new", "--lang", "c", "--dir", d, "p"], cache.path())
            .status
            .success()
    );
    let out = host(&["new", "--lang", "c", "--dir", d, "p"], cache.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    let out = host(&["new", "--lang", "cobol", "--dir", d, "q"], cache.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown language is a usage error"
    );
}
