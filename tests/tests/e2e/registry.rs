//! The plugin registry from the command line: `host plugin push|list|show|rm`, and
//! `host run --plugin NAME[@VERSION|@sha256:…]` loading from it with the digest checked.

use std::process::Output;
use std::time::Duration;

use sha2::{Digest, Sha256};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{Host, Redis, create_topic, produce, producer};
use streamhost_tests::{expected_counts, host, plugin, text_values};

fn plugin_cmd(redis: &Redis, args: &[&str], cache: &std::path::Path) -> Output {
    let url = redis.url();
    let mut all = vec!["plugin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--redis", &url]);
    host(&all, cache)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn registry_keys(redis: &Redis) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("streamhost:registry:*")
        .query(&mut redis.conn())
        .expect("KEYS");
    keys.sort();
    keys
}

fn sha256_of(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).expect("read plugin");
    format!("sha256:{}", hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn invalid_components_are_refused_with_the_reason_and_nothing_is_stored() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let dir = tempfile::tempdir().expect("dir");
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "fn main() {}").expect("write");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write"); // an empty core module
    let wc = plugin("wordcount");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![text.display().to_string(), "--name".into(), "x".into()],
            "is not a WebAssembly file",
        ),
        (
            vec![core.display().to_string(), "--name".into(), "x".into()],
            "core WebAssembly module, not a component",
        ),
        (
            vec![
                plugin("other-world").display().to_string(),
                "--name".into(),
                "x".into(),
            ],
            "does not implement the streamhost plugin world",
        ),
        (
            vec![
                plugin("future-version").display().to_string(),
                "--name".into(),
                "x".into(),
            ],
            "streamhost:plugin@0.3.0",
        ),
        (
            vec![
                plugin("wordcount-python").display().to_string(),
                "--name".into(),
                "x".into(),
                "--max-upload-mb".into(),
                "1".into(),
            ],
            "over the upload limit",
        ),
        (
            vec![wc.display().to_string(), "--name".into(), "Bad/Name".into()],
            "bad plugin name",
        ),
        (
            vec![
                wc.display().to_string(),
                "--name".into(),
                "x".into(),
                "--version".into(),
                "1/2".into(),
            ],
            "bad plugin version",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["push"];
        all.extend(args.iter().map(String::as_str));
        let out = plugin_cmd(&redis, &all, cache.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: expected {expected:?} in: {}",
            stderr(&out)
        );
        assert!(
            registry_keys(&redis).is_empty(),
            "{args:?} stored something"
        );
    }
}

#[test]
fn pushed_plugins_run_by_name_version_or_digest_and_a_corrupt_blob_is_refused() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let cache = tempfile::tempdir().expect("cache");
    let (wc, wc_c) = (plugin("wordcount"), plugin("wordcount-c"));

    // Push: the digest on stdout; versions 1, 2; the same bytes again change nothing.
    let out = plugin_cmd(
        &redis,
        &["push", wc.to_str().unwrap_or_default(), "--name", "wc"],
        cache.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(digest, sha256_of(&wc));
    assert!(stderr(&out).contains("as wc@1"), "{}", stderr(&out));
    let again = plugin_cmd(
        &redis,
        &["push", wc.to_str().unwrap_or_default(), "--name", "wc"],
        cache.path(),
    );
    assert!(stderr(&again).contains("as wc@1"), "{}", stderr(&again));
    let out = plugin_cmd(
        &redis,
        &["push", wc_c.to_str().unwrap_or_default(), "--name", "wc"],
        cache.path(),
    );
    assert!(stderr(&out).contains("as wc@2"), "{}", stderr(&out));
    // Versions are immutable.
    let out = plugin_cmd(
        &redis,
        &[
            "push",
            wc_c.to_str().unwrap_or_default(),
            "--name",
            "wc",
            "--version",
            "1",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    let list =
        String::from_utf8_lossy(&plugin_cmd(&redis, &["list"], cache.path()).stdout).into_owned();
    assert!(list.contains(&format!("wc@1\t{digest}")), "{list}");
    assert!(
        list.contains(&format!("wc@2\t{}", sha256_of(&wc_c))),
        "{list}"
    );
    // `host test` takes registry references too.
    let url = redis.url();
    let input = streamhost_tests::repo_root().join("examples/words.txt");
    let report = streamhost_tests::stdout_json(&host(
        &[
            "test",
            "--plugin",
            "wc@1",
            "--redis",
            &url,
            "--input",
            input.to_str().unwrap_or_default(),
        ],
        cache.path(),
    ));
    assert_eq!(report["digest"], digest.as_str());
    let show = plugin_cmd(&redis, &["show", "wc@1"], cache.path());
    assert!(String::from_utf8_lossy(&show.stdout).contains(&digest));
    let missing = plugin_cmd(&redis, &["show", "nope"], cache.path());
    assert!(
        stderr(&missing).contains("not in the registry"),
        "{}",
        stderr(&missing)
    );

    // Run from the registry, by version and by digest: both count exactly.
    let words = unique("words");
    create_topic(&brokers, &words, 1);
    let values = text_values(7, 300);
    produce(&producer(&brokers), &words, 0, &values);
    let expected = expected_counts(&values);
    for (group, reference) in [
        (unique("by-version"), "wc@2".to_owned()),
        (unique("by-digest"), format!("wc@{digest}")),
    ] {
        let args: Vec<String> = [
            "run",
            "--plugin",
            &reference,
            "--topic",
            &words,
            "--brokers",
            &brokers,
            "--redis",
            &redis.url(),
            "--group",
            &group,
            "--partitions",
            "0",
            "--batch-linger-ms",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let host = Host::spawn(&args, cache.path());
        host.wait_for(Duration::from_secs(60), "every record committed", || {
            redis.offsets(&group, &words).get(&0) == Some(&(values.len() as i64))
        });
        assert_eq!(redis.counts(&group), expected, "{reference}");
        assert!(host.log_text().contains("plugin loaded from the registry"));
    }

    // A blob whose bytes no longer match its digest is refused; nothing is committed.
    let blob = format!("streamhost:registry:blob:{digest}");
    let _: () = redis::cmd("SET")
        .arg(&blob)
        .arg(std::fs::read(&wc_c).expect("read"))
        .query(&mut redis.conn())
        .expect("SET");
    let url = redis.url();
    let corrupt = unique("corrupt");
    let out = host(
        &[
            "run",
            "--plugin",
            "wc@1",
            "--topic",
            &words,
            "--brokers",
            &brokers,
            "--redis",
            &url,
            "--group",
            &corrupt,
            "--partitions",
            "0",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not match its digest"),
        "{}",
        stderr(&out)
    );
    assert!(redis.offsets(&corrupt, &words).is_empty());

    // rm: the version goes; a blob no other version uses goes with it.
    let out = plugin_cmd(&redis, &["rm", "wc@1"], cache.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = registry_keys(&redis);
    assert!(!keys.contains(&blob), "{keys:?}");
    assert!(keys.contains(&format!("streamhost:registry:blob:{}", sha256_of(&wc_c))));
    let list =
        String::from_utf8_lossy(&plugin_cmd(&redis, &["list"], cache.path()).stdout).into_owned();
    assert!(!list.contains("wc@1") && list.contains("wc@2"), "{list}");
}
