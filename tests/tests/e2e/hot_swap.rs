//! Hot swap: `PATCH /v1/jobs/{id}` with a new plugin version while records stream in.
//! Each version of the `tagger` plugin writes its version number under every offset it
//! handles, and counts how often it saw each offset: every offset must be handled exactly
//! once, by v1 up to one point per partition and by v2 after it, offsets continuing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve;
use streamhost_tests::services::{Redis, create_topic, produce, producer, state_key, wait_until};

const TOKEN: &str = "swap-token";
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_swapped_plugin_takes_over_at_a_batch_boundary_with_nothing_lost_or_repeated() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    // The job and its input topic share the name.
    let tags = unique("tags");
    create_topic(&brokers, &tags, 2);
    let cache = tempfile::tempdir().expect("cache");
    let server = serve(&redis, &brokers, Some(TOKEN), &[], cache.path());
    let call = |method: &str, path: &str, body: &[u8]| server.call(method, path, Some(TOKEN), body);
    for v in ["1", "2"] {
        let r = server.upload("tagger", v, &format!("tagger-v{v}"));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let spec = json!({
        "id": tags, "plugin": "tagger@1", "topics": [tags], "partitions": [0, 1],
        "settings": {"batch_max_records": 7, "batch_linger_ms": 5}
    });
    let r = call("POST", "/v1/jobs", spec.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());

    let stop = AtomicBool::new(false);
    let produced = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let committed = |p: i32| redis.offsets(&tags, &tags).get(&p).copied().unwrap_or(0) as usize;
    let path = format!("/v1/jobs/{tags}");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let p = producer(&brokers);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for (partition, count) in produced.iter().enumerate() {
                    let values: Vec<Vec<u8>> =
                        (0..5).map(|k| format!("r{i}-{k}").into_bytes()).collect();
                    produce(&p, &tags, partition as i32, &values);
                    count.fetch_add(values.len(), Ordering::SeqCst);
                }
                i += 1;
            }
        });
        wait_until(MINUTE, "v1 to commit on both partitions", || {
            committed(0) > 50 && committed(1) > 50
        });
        let r = call(
            "PATCH",
            &path,
            json!({"plugin": "tagger@2"}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        // Keep records coming until v2 has committed on both partitions.
        let at_swap = [committed(0), committed(1)];
        wait_until(MINUTE, "v2 to handle records on both partitions", || {
            let v = redis.hgetall(&state_key(&tags));
            (0..2).all(|p| {
                v.get(&format!("{p}:{}", committed(p).saturating_sub(1)))
                    .map(String::as_str)
                    == Some("2")
                    && committed(p) > at_swap[p as usize] + 50
            })
        });
        stop.store(true, Ordering::SeqCst);
    });
    for (partition, count) in produced.iter().enumerate() {
        let n = count.load(Ordering::SeqCst);
        wait_until(MINUTE, "every produced record to commit", || {
            committed(partition as i32) == n
        });
    }

    let state = redis.hgetall(&state_key(&tags));
    for (partition, count) in produced.iter().enumerate() {
        let n = count.load(Ordering::SeqCst);
        let versions: Vec<&str> = (0..n)
            .map(|o| {
                state
                    .get(&format!("{partition}:{o}"))
                    .map(String::as_str)
                    .unwrap_or_else(|| panic!("offset {partition}/{o} was skipped"))
            })
            .collect();
        for o in 0..n {
            assert_eq!(
                state
                    .get(&format!("seen:{partition}:{o}"))
                    .map(String::as_str),
                Some("1"),
                "offset {partition}/{o} handled more than once"
            );
        }
        let switch = versions
            .iter()
            .position(|v| *v == "2")
            .expect("v2 handled records");
        assert!(switch > 0, "v1 handled records first");
        assert!(
            versions[..switch].iter().all(|v| *v == "1")
                && versions[switch..].iter().all(|v| *v == "2"),
            "partition {partition}: one switch from v1 to v2, never back: {versions:?}"
        );
    }
    let log = server.host.log_text();
    assert!(log.contains("plugin swapped at a batch boundary"), "{log}");
    let job = call("GET", &path, b"").json();
    assert_eq!(job["plugin_version"], "2");
    assert_eq!(job["spec"]["plugin"], "tagger@2");
}
