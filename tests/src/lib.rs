//! Helpers for the end-to-end tests: where the `host` binary and the built plugins are.

pub mod browser;
pub mod http;
pub mod java_consumer;
pub mod kafka;
pub mod kafka_secure;
pub mod reader;
pub mod redis_topologies;
pub mod serve;
pub mod services;
pub mod txn_log;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root. Cargo names the package's directory at run time too; that one
/// wins, because a shared target dir may hold binaries compiled in another checkout (the
/// compile-time path would then point there).
pub fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A plugin component built by `scripts/build-plugins`.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("build/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

/// The `host` binary of this build (cargo puts test executables in `deps/` beside it), or
/// the one `STREAMHOST_TEST_HOST` names (e.g. a release build: the tests then check what
/// ships).
pub fn host_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STREAMHOST_TEST_HOST") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "STREAMHOST_TEST_HOST={} is missing",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let host = dir.join(format!("host{}", std::env::consts::EXE_SUFFIX));
    assert!(
        host.exists(),
        "{} is missing: run `cargo build -p streamhost --bin host` first",
        host.display()
    );
    host
}

/// Runs `host` with `args`, using a private compile cache so tests never share state with
/// a developer's cache.
pub fn host(args: &[&str], cache: &Path) -> Output {
    Command::new(host_bin())
        .args(args)
        .env("STREAMHOST_CACHE_DIR", cache)
        .env("STREAMHOST_LOG", "warn")
        .output()
        .expect("run the host binary")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "host failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("host test prints JSON")
}

/// Deterministic text records: `n` values of a few words from a small vocabulary.
pub fn text_values(seed: u64, n: usize) -> Vec<Vec<u8>> {
    const WORDS: [&str; 24] = [
        "stream",
        "Batch",
        "offset",
        "kafka",
        "redis",
        "plugin",
        "wasm",
        "host",
        "commit",
        "fence",
        "état",
        "Straße",
        "naïve",
        "record",
        "partition",
        "group",
        "retry",
        "exactly",
        "once",
        "log",
        "state",
        "emit",
        "the",
        "THE",
    ];
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let words = 1 + next() % 6;
            (0..words)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        })
        .collect()
}

/// The word count's specification, written independently of the plugin.
pub fn expected_counts<'a>(
    values: impl IntoIterator<Item = &'a Vec<u8>>,
) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for value in values {
        for word in String::from_utf8_lossy(value).split_whitespace() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
    }
    counts
}

/// Arguments of `host run` for the wordcount plugin against these services.
pub fn run_args(
    brokers: &str,
    redis: &str,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Vec<String> {
    plugin_run_args("wordcount", brokers, redis, topic, group, extra)
}

/// Arguments of `host run` for a plugin built by `scripts/build-plugins`.
pub fn plugin_run_args(
    plugin_name: &str,
    brokers: &str,
    redis: &str,
    topic: &str,
    group: &str,
    extra: &[&str],
) -> Vec<String> {
    let wasm = plugin(plugin_name);
    let mut args: Vec<String> = [
        "run",
        "--plugin",
        wasm.to_str().unwrap_or_default(),
        "--topic",
        topic,
        "--brokers",
        brokers,
        "--redis",
        redis,
        "--group",
        group,
        "--batch-linger-ms",
        "20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
