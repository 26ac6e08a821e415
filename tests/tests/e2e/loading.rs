//! Every way a plugin can fail to load gives a clear error and a non-zero exit.

use streamhost_tests::{host, plugin, repo_root};

fn load_error(plugin_path: &str, extra: &[&str]) -> String {
    let cache = tempfile::tempdir().unwrap();
    let input = repo_root().join("examples/words.txt");
    let mut args = vec![
        "test",
        "--plugin",
        plugin_path,
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = host(&args, cache.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1, got {}",
        out.status
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn missing_file() {
    let err = load_error("/nonexistent/plugin.wasm", &[]);
    assert!(
        err.contains("/nonexistent/plugin.wasm does not exist"),
        "{err}"
    );
    assert!(err.contains("check --plugin"), "{err}");
}

#[test]
fn not_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.wasm");
    std::fs::write(&path, "fn main() {}\n").unwrap();
    let err = load_error(path.to_str().unwrap(), &[]);
    assert!(err.contains("is not a WebAssembly file"), "{err}");
}

#[test]
fn core_module_instead_of_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1, no sections.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = load_error(path.to_str().unwrap(), &[]);
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
    assert!(err.contains("wasm32-wasip2"), "{err}");
}

#[test]
fn truncated_component() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wasm");
    let bytes = std::fs::read(plugin("wordcount")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(path.to_str().unwrap(), &[]);
    assert!(
        err.contains("is not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn component_for_another_world() {
    let err = load_error(plugin("other-world").to_str().unwrap(), &[]);
    assert!(
        err.contains("does not implement the streamhost plugin world"),
        "{err}"
    );
    assert!(
        err.contains("greet"),
        "the message lists what it does export: {err}"
    );
    assert!(err.contains("streamhost:plugin/handler@0.2.0"), "{err}");
}

#[test]
fn incompatible_contract_version() {
    let err = load_error(plugin("future-version").to_str().unwrap(), &[]);
    assert!(
        err.contains("built against streamhost:plugin@0.3.0"),
        "{err}"
    );
    assert!(
        err.contains("supports streamhost:plugin@0.2.0 or 0.1.0"),
        "{err}"
    );
}

#[test]
fn init_that_fails() {
    let err = load_error(
        plugin("faulty").to_str().unwrap(),
        &["--config", "fail-init=true"],
    );
    assert!(
        err.contains("plugin faulty: init refused the configuration"),
        "{err}"
    );
    assert!(err.contains("fail-init is set"), "{err}");
}

#[test]
fn wordcount_rejects_unknown_config() {
    let err = load_error(
        plugin("wordcount").to_str().unwrap(),
        &["--config", "emitt=true"],
    );
    assert!(err.contains("unknown config key \"emitt\""), "{err}");
}

#[test]
fn bad_flag_values_exit_2() {
    let cache = tempfile::tempdir().unwrap();
    let wc = plugin("wordcount");
    for bad in [
        ["--batch-size", "0"],
        ["--config", "novalue"],
        ["--plugin-memory-mb", "x"],
    ] {
        let mut args = vec!["test", "--plugin", wc.to_str().unwrap(), "--input", "x"];
        args.extend_from_slice(&bad);
        let out = host(&args, cache.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn plugin_without_init_loads_and_runs() {
    let cache = tempfile::tempdir().unwrap();
    let input = repo_root().join("examples/records.jsonl");
    let out = host(
        &[
            "test",
            "--plugin",
            plugin("echo").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
        ],
        cache.path(),
    );
    let report = streamhost_tests::stdout_json(&out);
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    assert_eq!(report["emits"].as_array().unwrap().len(), lines);
    assert_eq!(report["emits"][1]["value"], serde_json::Value::Null);
    assert_eq!(report["emits"][3]["value"]["base64"], "/v9ub3QgdXRmLTg=");
}

#[test]
fn bad_run_flags_exit_2_before_connecting() {
    let cache = tempfile::tempdir().unwrap();
    let wc = plugin("wordcount");
    let base = [
        "--plugin",
        wc.to_str().unwrap(),
        "--topic",
        "t",
        "--brokers",
        "127.0.0.1:1",
        "--redis",
        "redis://127.0.0.1:1",
    ];
    let cases: [&[&str]; 5] = [
        &["--offset-reset", "sometimes"],
        &["--batch-max-records", "0"],
        &["-X", "novalue"],
        &["--group", "has space"],
        &["--partitions", "-1"],
    ];
    for bad in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(bad);
        let out = host(&args, cache.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = host(&["--plugin", wc.to_str().unwrap()], cache.path());
    assert_eq!(out.status.code(), Some(2), "--topic is required");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--topic"));
}
