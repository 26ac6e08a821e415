//! Reading a job's state from outside (issue 17): a state of a million keys scanned page
//! by page through `GET /v1/jobs/{id}/state?limit=1000` of a release `host serve`, and by
//! `host state scan`, against the baseline in the same run: this process walking the same
//! hash with the same HSCAN steps (COUNT 1000) itself. Keys/s, and the ratio.
//!
//! `STREAMHOST_BENCH_KEYS` changes 1M. Run with `bench/run state`.

use std::time::{Duration, Instant};

use serde_json::json;
use streamhost_tests::host_bin;
use streamhost_tests::serve::serve;
use streamhost_tests::services::{Redis, state_key};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn report(name: &str, keys: usize, took: Duration, baseline: Option<f64>) -> f64 {
    let rate = keys as f64 / took.as_secs_f64();
    let ratio = baseline.map_or_else(String::new, |b| format!("  {:.2}x the baseline", rate / b));
    println!("{name:<44} {keys:>9} keys in {took:>9.2?}: {rate:>10.0} keys/s{ratio}");
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_number("STREAMHOST_BENCH_KEYS", 1_000_000);
    let redis = Redis::start_in_memory();
    redis.fill_hash(&state_key("big"), n, |i| {
        (format!("user:{i:07}"), i.to_string())
    });
    let mut conn = redis.conn();
    println!("\nstate: {n} keys in one job's state hash, Redis in memory, release host\n");

    // Baseline: the same HSCAN steps, straight from this process.
    let started = Instant::now();
    let (mut cursor, mut seen) = (0u64, 0usize);
    loop {
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(state_key("big"))
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .expect("HSCAN");
        seen += pairs.len();
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let baseline = report(
        "baseline: HSCAN COUNT 1000 from the client",
        seen,
        started.elapsed(),
        None,
    );

    // A stopped job: the server reads its state; no Kafka is needed.
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:9", None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let spec = json!({"id": "big", "plugin": "wc@1", "topics": ["t"], "stopped": true});
    let created = s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());

    let started = Instant::now();
    let mut seen = 0usize;
    let pages = s.scan_state("big", "limit=1000", |_| seen += 1);
    report(
        &format!("GET /v1/jobs/big/state ({pages} pages)"),
        seen,
        started.elapsed(),
        Some(baseline),
    );

    let started = Instant::now();
    let out = std::process::Command::new(host_bin())
        .args(["state", "scan", "--job", "big", "--redis", &redis.url()])
        .output()
        .expect("host state scan");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
    report(
        "host state scan (to a pipe)",
        lines,
        started.elapsed(),
        Some(baseline),
    );
    let hscan = redis.command_stats().get("hscan").map_or(0.0, |s| s.1);
    println!("\nRedis spent {hscan:.0} us per HSCAN step (INFO commandstats, all three scans)");
}
