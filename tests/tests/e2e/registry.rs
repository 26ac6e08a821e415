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

/// A job runs exactly the bytes it was created with; a version a stored job uses cannot
/// be removed (by the API or the command line, with the same words); a removed version
/// can never come back as other bytes; and a job whose version's bytes changed behind the
/// host's back refuses to start, naming both digests.
#[test]
fn plugin_versions_are_immutable_and_jobs_pinned_to_their_bytes() {
    use serde_json::json;
    use streamhost_tests::serve::serve;
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let s = serve(&redis, "127.0.0.1:1", None, &[], cache.path());
    let wc = sha256_of(&plugin("wordcount"));
    let echo = sha256_of(&plugin("echo"));
    assert_eq!(s.upload("counter", "1", "wordcount").status, 201);
    let job = |id: &str, reference: &str| {
        json!({"id": id, "plugin": reference, "topics": ["t"], "partitions": [0], "stopped": true})
            .to_string()
    };
    let created = s.call("POST", "/v1/jobs", None, job("pz", "counter").as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["spec"]["plugin_digest"], wc.as_str());

    // A newer version does not move a job made on NAME alone.
    assert_eq!(s.upload("counter", "2", "echo").status, 201);
    assert_eq!(s.job("pz")["plugin_digest"], wc.as_str());

    // In use: refused by the API and by the command line, naming the job.
    let api = s.call("DELETE", "/v1/plugins/counter/1", None, b"");
    assert_eq!(api.status, 409, "{}", api.text());
    assert_eq!(api.json()["reason"], "in_use");
    let said = api.json()["error"].as_str().expect("error").to_owned();
    assert!(said.contains("counter@1 is used by job(s) pz"), "{said}");
    let cli = plugin_cmd(&redis, &["rm", "counter@1"], cache.path());
    assert_eq!(cli.status.code(), Some(1));
    assert!(stderr(&cli).contains(&said), "{}", stderr(&cli));

    // Once unused it goes, and its name stays bound to its bytes.
    assert_eq!(s.call("DELETE", "/v1/jobs/pz", None, b"").status, 204);
    assert_eq!(
        s.call("DELETE", "/v1/plugins/counter/1", None, b"").status,
        204
    );
    let other = s.upload("counter", "1", "echo");
    assert_eq!(other.status, 409, "{}", other.text());
    assert_eq!(other.json()["reason"], "version_removed");
    assert!(other.text().contains(&wc), "{}", other.text());
    assert_eq!(
        s.upload("counter", "1", "wordcount").status,
        201,
        "the same bytes may return"
    );

    // Bytes changed behind the host's back (no host command can do this): the job
    // refuses to start, naming both digests.
    let created = s.call("POST", "/v1/jobs", None, job("pin", "counter@2").as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    let versions = "streamhost:registry:versions:counter";
    let one = redis.hgetall(versions)["1"].clone();
    let _: () = redis::cmd("HSET")
        .arg(versions)
        .arg("2")
        .arg(one)
        .query(&mut redis.conn())
        .expect("HSET");
    let start = s.call("POST", "/v1/jobs/pin/start", None, b"");
    assert_eq!(start.status, 409, "{}", start.text());
    assert_eq!(start.json()["reason"], "digest_changed");
    assert!(
        start.text().contains(&echo) && start.text().contains(&wc),
        "{}",
        start.text()
    );
}

/// `host run` refuses to join the group of a `host serve` job that runs other bytes (it
/// would take part of that job's partitions), says how to avoid it, and joins with the
/// same bytes or when forced.
#[test]
fn a_host_run_does_not_slip_into_a_serve_jobs_group_with_another_plugin() {
    use serde_json::json;
    use streamhost_tests::serve::serve;
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let s = serve(&redis, "127.0.0.1:1", None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let spec = json!({"id": "wc", "plugin": "wc@1", "topics": ["t"], "stopped": true});
    assert_eq!(
        s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes())
            .status,
        201
    );
    let url = redis.url();
    let run = |plugin_name: &str, extra: &[&str]| {
        let path = plugin(plugin_name);
        let mut args = vec![
            "run",
            "--plugin",
            path.to_str().unwrap_or_default(),
            "--topic",
            "t",
            "--group",
            "wc",
            "--brokers",
            "127.0.0.1:1",
            "--redis",
            &url,
            "--kafka-give-up-ms",
            "1000",
        ];
        args.extend_from_slice(extra);
        host(&args, cache.path())
    };
    let other = run("echo", &[]);
    assert_eq!(other.status.code(), Some(1));
    let err = stderr(&other);
    assert!(
        err.contains("group wc belongs to `host serve` job wc") && err.contains("--force-group"),
        "{err}"
    );
    // The same bytes, or forced: past the check (then stopped by the missing broker).
    for out in [run("wordcount", &[]), run("echo", &["--force-group"])] {
        let err = stderr(&out);
        assert!(!err.contains("belongs to"), "{err}");
        assert!(err.contains("127.0.0.1:1"), "{err}");
    }
}
