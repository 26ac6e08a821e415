//! A plugin that loops, exhausts memory, traps, panics or floods the host fails only the
//! batch in hand, with an error naming the plugin and the limit; the next batch runs on
//! a fresh instance.

use std::sync::Arc;
use std::time::Duration;

use streamhost::batch::effects::EffectError;
use streamhost::batch::{Batch, BatchBuilder};
use streamhost::runtime::{
    InstanceSettings, Limits, ProcessError, Runner, Runtime, RuntimeOptions,
};
use streamhost::store::StateStore;
use streamhost::store::memory::MemoryStore;
use streamhost_tests::{host, plugin};

const TIMEOUT: Duration = Duration::from_millis(300);

fn runner(store: Arc<MemoryStore>) -> (Runtime, Runner) {
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: None,
        limits: Limits {
            memory_bytes: 32 << 20,
            call_timeout: TIMEOUT,
            effects_bytes: 8 << 20,
        },
    })
    .unwrap();
    let plugin = runtime.load_file(&plugin("faulty")).unwrap();
    let settings = InstanceSettings {
        store,
        partition: Some(3),
        config: vec![],
    };
    (runtime, Runner::new(plugin, settings))
}

fn batch(from: i64, values: &[&str]) -> Batch {
    let mut b = BatchBuilder::new("t", 3);
    for (i, v) in values.iter().enumerate() {
        b.push(from + i as i64, None, None, Some(v.as_bytes()), [])
            .unwrap();
    }
    b.finish(None)
}

/// Runs a good batch, the bad one, then a good one again on the same runner.
fn fails_then_recovers(bad: &str) -> ProcessError {
    let store = Arc::new(MemoryStore::new());
    let (_rt, mut runner) = runner(store);
    let ok = runner
        .process(&mut batch(0, &["a", "b"]))
        .expect("a good batch");
    assert_eq!(ok.state.len(), 1);
    let err = runner
        .process(&mut batch(2, &["c", bad]))
        .expect_err("the bad batch fails");
    let after = runner
        .process(&mut batch(2, &["c"]))
        .expect("the next batch runs on a fresh instance");
    assert_eq!(after.state.len(), 1);
    err
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let err = fails_then_recovers("loop");
    assert!(
        matches!(err, ProcessError::Deadline { limit: TIMEOUT, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("plugin faulty exceeded its deadline of 300ms"),
        "{msg}"
    );
    assert!(msg.contains("--plugin-timeout-ms"), "{msg}");
    assert!(err.instance_lost());
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let err = fails_then_recovers("alloc");
    assert!(
        matches!(err, ProcessError::Memory { limit, .. } if limit == 32 << 20),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("plugin faulty exceeded its memory limit of 33554432 bytes"),
        "{msg}"
    );
    assert!(msg.contains("--plugin-memory-mb"), "{msg}");
}

#[test]
fn trap_is_reported() {
    let err = fails_then_recovers("trap");
    assert!(matches!(err, ProcessError::Trap { .. }), "{err:?}");
    assert!(err.to_string().contains("plugin faulty trapped"), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[test]
fn panic_is_reported_with_its_message() {
    let err = fails_then_recovers("panic");
    assert!(matches!(err, ProcessError::Trap { .. }), "{err:?}");
    assert!(
        err.to_string().contains("boom at offset 3"),
        "the panic message is quoted: {err}"
    );
}

#[test]
fn flooding_emits_hits_the_effects_cap() {
    let err = fails_then_recovers("flood");
    assert!(
        matches!(err, ProcessError::Effects { cause: EffectError::TooLarge { limit }, .. } if limit == 8 << 20),
        "{err:?}"
    );
}

#[test]
fn plugin_errors_keep_the_instance() {
    let store = Arc::new(MemoryStore::new());
    let (_rt, mut runner) = runner(store);
    let err = runner.process(&mut batch(0, &["a", "retry"])).unwrap_err();
    assert!(
        matches!(&err, ProcessError::Retryable { message, .. } if message == "try again later")
    );
    let err = runner.process(&mut batch(0, &["fatal"])).unwrap_err();
    assert!(matches!(&err, ProcessError::Fatal { message, .. } if message == "cannot go on"));
    let err = runner
        .process(&mut batch(0, &["a", "b", "poison"]))
        .unwrap_err();
    assert!(
        matches!(&err, ProcessError::Poison { index: 2, .. }),
        "{err:?}"
    );
    assert!(!err.instance_lost());
}

#[test]
fn a_failed_batch_leaves_no_effects() {
    let store = Arc::new(MemoryStore::new());
    let (_rt, mut runner) = runner(store.clone());
    // The plugin counts "a" and "b" before it panics on the third record; none of it may
    // reach the store, and the failed call returns no effects to commit.
    assert!(runner.process(&mut batch(0, &["a", "b", "panic"])).is_err());
    assert!(store.snapshot().is_empty());
    assert_eq!(store.committed_offset("t", 3).unwrap(), None);
    let ok = runner.process(&mut batch(0, &["a"])).unwrap();
    let writes: Vec<_> = ok.state.iter().collect();
    assert_eq!(
        writes.len(),
        1,
        "only the retried batch's own write: {writes:?}"
    );
}

#[test]
fn host_test_exits_non_zero_naming_plugin_limit_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "fine\nfine\nloop\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = host(
        &[
            "test",
            "--plugin",
            plugin("faulty").to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "2",
            "--plugin-timeout-ms",
            "200",
        ],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch test/0 offsets [2, 3) failed"), "{err}");
    assert!(
        err.contains("plugin faulty exceeded its deadline of 200ms"),
        "{err}"
    );
}

#[test]
fn plugin_output_and_logs_reach_the_host_log_tagged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "log\npanic\n").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let faulty = plugin("faulty");
    let args = [
        "test",
        "--plugin",
        faulty.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    let out = host(&args, cache.path());
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    let line_with = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {log}"))
            .to_owned()
    };
    let logged = line_with("note from offset 0");
    assert!(
        logged.contains("plugin=\"faulty\"") && logged.contains("partition=0"),
        "{logged}"
    );
    let stderr = line_with("boom at offset 1");
    assert!(
        stderr.contains("stream=\"stderr\"") && stderr.contains("plugin=\"faulty\""),
        "{stderr}"
    );
}
