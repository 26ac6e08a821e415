//! Each error says its cause once. The convention (see host/src/lib.rs): a message names
//! its cause inline, and no error hands that cause on again as its `source()`, so the
//! chain printed at the edge (`error: a: b: c`) repeats nothing.

use streamhost_tests::{host, plugin};

/// `marker` occurs exactly once in `text`.
fn assert_once(text: &str, marker: &str) {
    let n = text.matches(marker).count();
    assert_eq!(n, 1, "{marker:?} appears {n} times in:\n{text}");
}

fn run_test(plugin_name: &str, input: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, input).unwrap();
    let wasm = plugin(plugin_name);
    let mut args = vec![
        "test",
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--input",
        file.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    let out = host(&args, dir.path());
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_batch_that_buffers_too_much_says_so_once() {
    let err = run_test("faulty", "flood\n", &["--max-effects-mb", "4"]);
    assert_once(&err, "buffered more than");
    assert_once(&err, "--batch-max-records");
}

#[test]
fn plugin_errors_and_load_errors_say_their_cause_once() {
    let err = run_test("faulty", "fatal\n", &[]);
    assert_once(&err, "cannot go on");
    let err = run_test("faulty", "trap\n", &[]);
    assert_once(&err, "trapped");

    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, "not a component").unwrap();
    for (path, marker) in [
        (not_wasm.clone(), "plugin.wasm"),
        (dir.path().join("missing.wasm"), "does not exist"),
    ] {
        let out = host(
            &[
                "test",
                "--plugin",
                path.to_str().unwrap_or_default(),
                "--input",
                "/dev/null",
            ],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1));
        assert_once(&String::from_utf8_lossy(&out.stderr), marker);
    }
}

#[test]
fn input_and_registry_errors_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = plugin("wordcount");
    let out = host(
        &[
            "test",
            "--plugin",
            wasm.to_str().unwrap_or_default(),
            "--input",
            dir.path().join("nope.txt").to_str().unwrap_or_default(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_once(&String::from_utf8_lossy(&out.stderr), "No such file");

    // A registry reference while Redis is not there.
    let port = streamhost_tests::services::free_port();
    let redis = format!("redis://127.0.0.1:{port}");
    let out = host(&["plugin", "list", "--redis", &redis], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_once(&String::from_utf8_lossy(&out.stderr), "Connection refused");
}
