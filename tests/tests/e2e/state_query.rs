//! A job's state read from outside (`GET /v1/jobs/{id}/state`, `host state`): by key, by
//! prefix, page by page, over a state of a million keys while the job commits, with only
//! bounded reads reaching Redis.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve;
use streamhost_tests::services::{
    Host, Redis, create_topic, partition_keys, produce, producer, state_key, wait_until,
};
use streamhost_tests::{host, plugin_run_args};

const MINUTE: Duration = Duration::from_secs(60);
const KEYS: usize = 1_000_000;

#[test]
fn a_million_keys_scan_exactly_and_the_job_commits_meanwhile() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, big) = (unique("words"), unique("big"));
    create_topic(&brokers, &words, 1);
    let cache = tempfile::tempdir().unwrap();
    let s = serve(&redis, &brokers, None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let spec = json!({"id": big, "plugin": "wc@1", "topics": [words], "partitions": [0],
                      "settings": {"batch_linger_ms": 20}});
    let created = s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());

    // A million keys the job did not write, in its state hash.
    redis.fill_hash(&state_key(&big), KEYS, |i| {
        (format!("user:{i:06}"), i.to_string())
    });
    let mut conn = redis.conn();
    redis::cmd("HSET")
        .arg(state_key(&big))
        .arg("a/b c")
        .arg(&b"\xff\x00"[..])
        .query::<i64>(&mut conn)
        .expect("HSET");

    // The job keeps consuming during the scan: a producer writes "alpha" records.
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (stop, produced) = (stop.clone(), produced.clone());
        let (brokers, words) = (brokers.clone(), words.clone());
        std::thread::spawn(move || {
            let p = producer(&brokers);
            while !stop.load(Ordering::SeqCst) {
                produce(&p, &words, 0, &vec![b"alpha".to_vec(); 50]);
                produced.fetch_add(50, Ordering::SeqCst);
            }
        })
    };
    let alpha = || -> i64 {
        let v: Option<i64> = redis::cmd("HGET")
            .arg(state_key(&big))
            .arg("alpha")
            .query(&mut redis.conn())
            .expect("HGET");
        v.unwrap_or(0)
    };
    wait_until(MINUTE, "the job to count its first records", || alpha() > 0);

    let before = redis.command_stats();
    let counted_before = alpha();
    let started = Instant::now();
    let mut seen: HashSet<String> = HashSet::with_capacity(KEYS + 8);
    let pages = s.scan_state(&big, "limit=1000", |e| {
        seen.insert(e["key"].as_str().expect("key").to_owned());
    });
    let took = started.elapsed();
    let counted_during = alpha() - counted_before;
    let after = redis.command_stats();
    stop.store(true, Ordering::SeqCst);
    feeder.join().expect("feeder");

    let missing = (0..KEYS)
        .filter(|i| !seen.contains(&format!("user:{i:06}")))
        .count();
    assert_eq!(missing, 0, "keys the scan did not return");
    assert!(seen.contains("a/b c") && seen.contains("alpha"));
    eprintln!(
        "scanned {} keys in {pages} pages in {took:?}: {:.0} keys/s; HSCAN {:.0} us per call; \
         the job counted {counted_during} records meanwhile",
        seen.len(),
        seen.len() as f64 / took.as_secs_f64(),
        after.get("hscan").map_or(0.0, |s| s.1)
    );
    assert!(
        counted_during > 0,
        "the job committed nothing while the state was scanned"
    );
    let calls = |stats: &BTreeMap<String, (u64, f64)>, c: &str| stats.get(c).map_or(0, |s| s.0);
    let delta = |c: &str| calls(&after, c) - calls(&before, c);
    for whole in ["hgetall", "hkeys", "hvals", "keys", "eval", "evalsha_ro"] {
        assert_eq!(delta(whole), 0, "the scan sent {whole}");
    }
    assert!(
        delta("hscan") >= (KEYS / 1000) as u64,
        "the scan went in HSCAN steps"
    );
    // Nothing was lost while the scan ran: every produced record is counted.
    let total = produced.load(Ordering::SeqCst) as i64;
    wait_until(MINUTE, "the job to count every record", || alpha() == total);

    // A rare prefix: pages without entries carry the cursor on, and the whole scan
    // finds exactly its ten keys.
    let mut found = Vec::new();
    let pages = s.scan_state(&big, "prefix=user%3A12345&limit=100", |e| {
        found.push(e["key"].as_str().expect("key").to_owned());
    });
    found.sort();
    let want: Vec<String> = (123_450..123_460).map(|i| format!("user:{i}")).collect();
    assert_eq!(found, want);
    assert!(
        pages > 1,
        "a rare prefix over a million keys takes several pages"
    );

    // By key: text, and bytes that are not UTF-8 as base64; a key with '/' and a space.
    let state = format!("/v1/jobs/{big}/state");
    let one = s
        .call("GET", &format!("{state}/user:000042"), None, b"")
        .json();
    assert_eq!(
        one,
        json!({"key": "user:000042", "value": "42", "encoding": "utf8", "partition": null})
    );
    let raw = s
        .call("GET", &format!("{state}/a%2Fb%20c"), None, b"")
        .json();
    assert_eq!(raw["encoding"], "base64");
    assert_eq!(raw["value"], "/wA=");
    let absent = s.call("GET", &format!("{state}/nope"), None, b"");
    assert_eq!(absent.status, 404);
    assert_eq!(absent.json()["reason"], "no_key");
    for bad in ["cursor=zz", "limit=0", "limit=5000"] {
        let r = s.call("GET", &format!("{state}?{bad}"), None, b"");
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }

    // The command line reads the same.
    let url = redis.url();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--redis", &url]);
        let out = host(&all, cache.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(cli(&["state", "get", "--job", &big, "user:000042"]), "42\n");
    assert_eq!(
        cli(&["state", "get", "--job", &big, "a/b c"]),
        "base64:/wA=\n"
    );
    let lines = cli(&["state", "scan", "--job", &big, "--prefix", "user:12345"]);
    let mut lines: Vec<&str> = lines.lines().collect();
    lines.sort();
    let want: Vec<String> = (123_450..123_460)
        .map(|i| format!("user:{i}\t{i}"))
        .collect();
    assert_eq!(lines, want);
    let missing = host(
        &["state", "get", "--job", &big, "nope", "--redis", &url],
        cache.path(),
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no state key \"nope\""));
}

#[test]
fn state_kept_per_partition_is_found_in_its_partition() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (words, sp) = (unique("words"), unique("sp"));
    create_topic(&brokers, &words, 2);
    let p = producer(&brokers);
    produce(&p, &words, 0, &vec![b"zero".to_vec(); 3]);
    produce(&p, &words, 1, &vec![b"one".to_vec(); 5]);
    let cache = tempfile::tempdir().unwrap();
    let job = Host::spawn(
        &plugin_run_args(
            "wordcount",
            &brokers,
            &redis.url(),
            &words,
            &sp,
            &["--state-scope", "partition"],
        ),
        cache.path(),
    );
    let (offsets0, _) = partition_keys(&sp, &sp, &words, 0);
    let (offsets1, _) = partition_keys(&sp, &sp, &words, 1);
    job.wait_for(MINUTE, "both partitions to commit", || {
        redis.hgetall(&offsets1).get("1") == Some(&"5".to_owned())
            && redis.hgetall(&offsets0).get("0") == Some(&"3".to_owned())
    });
    let url = redis.url();
    let out = host(
        &["state", "scan", "--job", &sp, "--json", "--redis", &url],
        cache.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(
        entries,
        vec![
            json!({"key": "zero", "value": "3", "encoding": "utf8", "partition": 0}),
            json!({"key": "one", "value": "5", "encoding": "utf8", "partition": 1}),
        ]
    );
    let get = |extra: &[&str]| {
        let mut args = vec!["state", "get", "--job", &sp, "one", "--redis", &url];
        args.extend_from_slice(extra);
        host(&args, cache.path())
    };
    assert_eq!(String::from_utf8_lossy(&get(&[]).stdout), "5\n");
    assert!(
        !get(&["--partition", "0"]).status.success(),
        "partition 0 does not hold partition 1's key"
    );
}

/// A job name no job ever ran under is an error, not an empty answer.
#[test]
fn an_unknown_job_is_named() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().unwrap();
    let url = redis.url();
    let out = host(
        &["state", "scan", "--job", "nosuch", "--redis", &url],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job nosuch has never run against this Redis") && err.contains("--job"),
        "{err}"
    );
}
