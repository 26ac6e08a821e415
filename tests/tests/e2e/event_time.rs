//! Event time: watermarks, timers, expiries and the window examples, through `host test`
//! and through the whole pipeline on Apache Kafka and Redis (SIGKILLs included).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{
    FAST_GROUP, Host, Redis, create_topic, producer, state_key, wait_until,
};
use streamhost_tests::{host, plugin, plugin_run_args, stdout_json};

const WINDOW_MS: i64 = 1000;
const OUT_OF_ORDER_MS: i64 = 300;
const BASE_MS: i64 = 1_700_000_000_000;

/// A keyed record with its event time (the Kafka timestamp).
#[derive(Clone)]
struct Event {
    key: String,
    ts: i64,
}

/// `per_key` records for each of `keys` keys, one every 10 ms of event time per key,
/// each up to `OUT_OF_ORDER_MS` earlier than its place: out of order, never late.
fn events(keys: usize, per_key: usize, seed: u64) -> Vec<Event> {
    let mut x = seed | 1;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..per_key {
        for k in 0..keys {
            let jitter = (random() % (OUT_OF_ORDER_MS as u64 + 1)) as i64;
            out.push(Event {
                key: format!("key-{k}"),
                ts: BASE_MS + 10 * i as i64 + 5 - jitter.min(5 + 10 * i as i64),
            });
        }
    }
    out
}

/// The specification: the count of every (key, window start).
fn windows(events: &[Event]) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for e in events {
        *out.entry((e.key.clone(), e.ts.div_euclid(WINDOW_MS) * WINDOW_MS))
            .or_insert(0) += 1;
    }
    out
}

/// One emitted window: (key, window start) -> count, checking the value's form.
fn parse_window(key: Option<&[u8]>, value: &[u8]) -> ((String, i64), i64) {
    let v: Value = serde_json::from_slice(value).expect("window value is JSON");
    let start = v["window_start"].as_i64().expect("window_start");
    assert_eq!(v["window_end"].as_i64(), Some(start + WINDOW_MS), "{v}");
    let k = v["key"].as_str().expect("key").to_owned();
    assert_eq!(
        key,
        Some(k.as_bytes()),
        "the record key is the window's key: {v}"
    );
    ((k, start), v["count"].as_i64().expect("count"))
}

fn write_jsonl(dir: &Path, events: &[Event]) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    let lines: Vec<String> = events
        .iter()
        .map(|e| serde_json::json!({"key": e.key, "value": "x", "timestamp": e.ts}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// `host test`; `cache` is shared by a test's runs, so the Python and JavaScript
/// components compile once a test, not once a run.
fn host_test(cache: &Path, plugin_name: &str, input: &Path, extra: &[&str]) -> Value {
    let wasm = plugin(plugin_name);
    let mut args = vec![
        "test",
        "--plugin",
        wasm.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    stdout_json(&host(&args, cache))
}

#[test]
fn window_count_in_host_test_counts_every_window_once_and_keeps_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let events = events(7, 400, 11);
    let input = write_jsonl(dir.path(), &events);
    let expected = windows(&events);
    assert!(expected.len() > 20, "several windows per key");
    let window = format!("window-ms={WINDOW_MS}");
    let ooo = OUT_OF_ORDER_MS.to_string();
    for name in ["window-count", "window-count-python"] {
        for batch in ["1", "37", "100000"] {
            let report = host_test(
                dir.path(),
                name,
                &input,
                &[
                    "--config",
                    &window,
                    "--max-out-of-orderness-ms",
                    &ooo,
                    "--batch-size",
                    batch,
                ],
            );
            let mut got = BTreeMap::new();
            for e in report["emits"].as_array().unwrap() {
                let key = e["key"].as_str().map(str::as_bytes);
                let (w, n) = parse_window(key, e["value"].as_str().unwrap().as_bytes());
                assert!(
                    got.insert(w.clone(), n).is_none(),
                    "{name}, batch {batch}: {w:?} emitted twice"
                );
            }
            assert_eq!(got, expected, "{name}, batch size {batch}");
            assert_eq!(
                report["state"],
                serde_json::json!({}),
                "{name}: no state left"
            );
            assert_eq!(
                report["pending"],
                serde_json::json!([]),
                "{name}: no timer left"
            );
            assert_eq!(report["late_records"], 0, "{name}: nothing was late");
            assert_eq!(report["contract"], "0.2.0");
        }
        // Without the final watermark the last windows stay open, counted in state.
        let report = host_test(
            dir.path(),
            name,
            &input,
            &[
                "--config",
                &window,
                "--max-out-of-orderness-ms",
                &ooo,
                "--no-final-watermark",
            ],
        );
        let pending = report["pending"].as_array().unwrap();
        assert!(
            !pending.is_empty(),
            "{name}: open windows keep their timers"
        );
        let open = report["state"].as_object().unwrap().len();
        assert_eq!(open, pending.len(), "{name}: one count per open window");
        assert_eq!(
            report["emits"].as_array().unwrap().len() + open,
            expected.len(),
            "{name}: every window is either emitted or open"
        );
    }
}

/// The timer and expiry conformance of every language: the same commands give the same
/// firings, state and pending entries in each (`tests/plugins/timekeeper*`).
#[test]
fn timers_move_cancel_rearm_and_expiries_delete_keys_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        (1000, "timer a event 5000"),
        (1100, "timer b event 3000"),
        (1200, "timer c event 4000"),
        (1300, "cancel c event"),
        (3500, "timer b event 6000"),
        (3600, "setx e1 v at-watermark 4500"),
        (3600, "setx e2 v at-watermark 4500"),
        (3600, "persist e2"),
        (3600, "setx e3 v after-ms 0"),
        (3600, "setx e4 v after-ms 3600000"),
        (3600, "set e5 v"),
        (3600, "expire e5 at-watermark 4000"),
        (3600, "set e5 w"),
        (3600, "rearm a 1000"),
        (4800, "timer p processing +3600000"),
    ];
    let text: Vec<String> = lines
        .iter()
        .map(|(ts, v)| serde_json::json!({"key": "k", "value": v, "timestamp": ts}).to_string())
        .collect();
    let input = dir.path().join("commands.jsonl");
    std::fs::write(&input, text.join("\n")).unwrap();
    let languages = ["", "-python", "-js", "-ts", "-c", "-cpp", "-zig", "-go"];
    for (lang, batch) in languages
        .iter()
        .flat_map(|l| ["1", "3", "100"].map(|b| (*l, b)))
    {
        let name = format!("timekeeper{lang}");
        let report = host_test(dir.path(), &name, &input, &["--batch-size", batch]);
        let batch = format!("{name}, {batch}");
        let fired: Vec<(String, String)> = report["emits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let v = e["value"].as_str().unwrap();
                (
                    e["key"].as_str().unwrap().to_owned(),
                    v.split(" wm=").next().unwrap().to_owned(),
                )
            })
            .collect();
        let want = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            fired,
            vec![
                want("a", "fired event 5000"),
                want("b", "fired event 6000"),
                want("a", "fired event 6000"),
            ],
            "batch size {batch}: b fires once at its new time, c never, a twice"
        );
        let state = report["state"].as_object().unwrap();
        let keys: BTreeSet<&str> = state.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["e2", "e4", "fired:a", "fired:b"].into_iter().collect(),
            "batch size {batch}: e1, e3 and e5 expired; e2 was persisted; e4 expires in an hour"
        );
        assert_eq!(state["fired:a"], "2");
        let pending: BTreeSet<(String, String)> = report["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["kind"].as_str().unwrap().to_owned(),
                    p["key"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            pending,
            [("expiry", "e4"), ("timer", "p")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .into_iter()
                .collect(),
            "batch size {batch}: the processing-time entries are still pending"
        );
        assert_eq!(report["expired_keys"], 3);
    }
}

/// A plugin's `event-time.extract` gives records another event time than their Kafka
/// timestamp: it moves the watermark, decides lateness and is what `process` sees.
#[test]
fn event_times_the_plugin_declares_move_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        serde_json::json!({"value": "timer x event 8000", "timestamp": 1000}),
        serde_json::json!({"value": "timer y event 9500", "timestamp": 1000,
                           "headers": {"event-time": "9000"}}),
        // Kafka timestamp 9999, declared 100: late against 9000.
        serde_json::json!({"value": "set z 1", "timestamp": 9999,
                           "headers": {"event-time": "100"}}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let input = dir.path().join("declared.jsonl");
    std::fs::write(&input, text.join("\n")).unwrap();
    let report = host_test(
        dir.path(),
        "timekeeper",
        &input,
        &[
            "--batch-size",
            "1",
            "--no-final-watermark",
            "--late-records",
            "drop",
        ],
    );
    let fired: Vec<&str> = report["emits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(fired, ["fired event 8000 wm=9000"], "only x is due by 9000");
    assert_eq!(
        report["watermark"], 9000,
        "the declared time, not the Kafka one"
    );
    assert_eq!(report["late_records"], 1);
    assert!(
        report["state"].get("z").is_none(),
        "the late record was dropped: {}",
        report["state"]
    );
}

#[test]
fn a_plugin_of_contract_0_1_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one\ntwo\n").unwrap();
    let report = host_test(dir.path(), "echo", &input, &[]);
    assert_eq!(report["contract"], "0.1.0");
    let values: Vec<&str> = report["emits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["one", "two"]);
    assert_eq!(report["timers_fired"], 0);
}

/// Produces keyed records with timestamps to one partition and waits for the acks.
fn produce_events(p: &FutureProducer, topic: &str, partition: i32, events: &[Event]) {
    let mut pending = Vec::new();
    for e in events {
        loop {
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(e.key.as_bytes())
                .payload("x".as_bytes())
                .timestamp(e.ts);
            match p.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err(_) => p.poll(Duration::from_millis(20)),
            }
        }
    }
    for r in futures::executor::block_on(futures::future::join_all(pending)) {
        r.expect("delivery").expect("acknowledged");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn produce_commands(p: &FutureProducer, topic: &str, commands: &[(i64, &str)]) {
    for (ts, c) in commands {
        let f = p
            .send_result(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("k".as_bytes())
                    .payload(c.as_bytes())
                    .timestamp(*ts),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        futures::executor::block_on(f)
            .expect("delivery")
            .expect("acknowledged");
    }
}

/// Reads all partitions of `topic` from the start until `done` says so.
fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[rdkafka::message::OwnedMessage]) -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    // It only assigns partitions, so the group id is never joined: it needs no unique name.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "event-time-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    wait_until(timeout, &format!("records on {topic}"), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.expect("message").detach());
        }
        done(&out)
    });
    out
}

fn header<'a>(m: &'a rdkafka::message::OwnedMessage, name: &str) -> Option<&'a [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
}

/// The acceptance of event time: 4 partitions of keyed, out-of-order records over many
/// windows, hosts SIGKILLed along the way; every (key, window) on the output topic with
/// exactly its count, and no closed window left in Redis.
#[test]
fn windows_on_kafka_are_exact_across_sigkills() {
    let (redis, kafka) = (Redis::start(), Kafka::shared());
    let brokers = kafka.brokers();
    let (clicks, windows_topic, wc) = (unique("clicks"), unique("windows"), unique("wc"));
    create_topic(&brokers, &clicks, 4);
    create_topic(&brokers, &windows_topic, 1);
    let p = producer(&brokers);
    // Keys are co-partitioned (a key lives in one partition), as keyed input is.
    let mut all = Vec::new();
    for partition in 0..4 {
        let mut evs: Vec<Event> = events(3, 1500, 100 + partition as u64)
            .into_iter()
            .map(|e| Event {
                key: format!("p{partition}-{}", e.key),
                ts: e.ts,
            })
            .collect();
        // Far in the future: moves the watermark past every real window. Its own window
        // stays open.
        evs.push(Event {
            key: format!("p{partition}-flush"),
            ts: BASE_MS + 10_000_000,
        });
        produce_events(&p, &clicks, partition, &evs);
        all.extend(evs);
    }
    let mut expected = windows(&all);
    expected.retain(|(k, _), _| !k.ends_with("-flush"));
    let ends: BTreeMap<i32, i64> = (0..4).map(|p| (p, 4501)).collect();

    let cache = tempfile::tempdir().unwrap();
    let window = format!("window-ms={WINDOW_MS}");
    let ooo = OUT_OF_ORDER_MS.to_string();
    let mut extra: Vec<&str> = FAST_GROUP.to_vec();
    extra.extend_from_slice(&[
        "--config",
        &window,
        "--max-out-of-orderness-ms",
        &ooo,
        "--output-topic",
        &windows_topic,
        "--batch-max-records",
        "200",
        "--late-records",
        "drop",
    ]);
    let args = plugin_run_args("window-count", &brokers, &redis.url(), &clicks, &wc, &extra);
    let committed = |r: &Redis| r.offsets(&wc, &clicks).values().sum::<i64>();
    let mut host = Host::spawn(&args, cache.path());
    for kill in 1..=4 {
        let target = 18_000 * kill / 5;
        host.wait_for(Duration::from_secs(120), "progress before a kill", || {
            committed(&redis) >= target
        });
        eprintln!("kill {kill} at {} of 18004", committed(&redis));
        std::mem::replace(&mut host, Host::spawn(&args, cache.path())).kill9();
    }
    host.wait_for(
        Duration::from_secs(180),
        "offsets at the partition ends",
        || redis.offsets(&wc, &clicks) == ends,
    );

    let messages = read_until(&brokers, &windows_topic, Duration::from_secs(120), |ms| {
        let seen: BTreeSet<(String, i64)> = ms
            .iter()
            .map(|m| parse_window(m.key(), m.payload().unwrap_or_default()).0)
            .collect();
        seen.len() >= expected.len()
    });
    let mut got: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for m in &messages {
        let (w, n) = parse_window(m.key(), m.payload().unwrap_or_default());
        if let Some(before) = got.insert(w.clone(), n) {
            assert_eq!(before, n, "a repeated {w:?} carries the same count");
        }
        let partition = header(m, "streamhost-source-partition").expect("source headers");
        let partition: i32 = std::str::from_utf8(partition).unwrap().parse().unwrap();
        assert!(
            w.0.starts_with(&format!("p{partition}-")),
            "{w:?} from partition {partition}"
        );
        assert_eq!(
            header(m, "streamhost-source-topic"),
            Some(clicks.as_bytes())
        );
    }
    assert_eq!(got, expected, "every window exactly its count");
    eprintln!(
        "{} windows, {} records on the output topic (repeats from the kills: {})",
        expected.len(),
        messages.len(),
        messages.len() - expected.len()
    );

    // Only the open windows (the flush records') are left: counts and timers.
    let state = redis.hgetall(&state_key(&wc));
    let left: BTreeSet<&str> = state.keys().map(String::as_str).collect();
    let flush_windows: BTreeSet<String> = (0..4)
        .map(|p| {
            format!(
                "w:{}:p{p}-flush",
                (BASE_MS + 10_000_000) / WINDOW_MS * WINDOW_MS
            )
        })
        .collect();
    assert_eq!(
        left,
        flush_windows.iter().map(String::as_str).collect(),
        "no closed window in state"
    );
    for p in 0..4 {
        let key = format!("streamhost:{{{wc}}}:timers:{wc}:{clicks}:{p}:event");
        let pending: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut redis.conn())
            .unwrap();
        assert_eq!(
            pending.len(),
            1,
            "partition {p}: only the open window's timer: {pending:?}"
        );
    }
}

/// Processing-time timers fire on a partition that receives nothing more, an idle
/// partition's event-time timers follow the wall clock, and a host that was down fires
/// what became due meanwhile, each once in state.
#[test]
fn processing_time_and_idle_partitions_fire_without_records_and_after_a_restart() {
    let (redis, kafka) = (Redis::start(), Kafka::shared());
    let brokers = kafka.brokers();
    let (cmds, fired, tk) = (unique("cmds"), unique("fired"), unique("tk"));
    create_topic(&brokers, &cmds, 1);
    create_topic(&brokers, &fired, 1);
    let p = producer(&brokers);
    let cache = tempfile::tempdir().unwrap();
    // The group's session times out fast: the SIGKILLed host's partition moves on to the
    // next host quickly.
    let mut extra: Vec<&str> = FAST_GROUP.to_vec();
    extra.extend_from_slice(&["--output-topic", &fired, "--idle-timeout-ms", "1500"]);
    let args = plugin_run_args("timekeeper", &brokers, &redis.url(), &cmds, &tk, &extra);
    let fired_count = |key: &str| -> Option<String> {
        redis::cmd("HGET")
            .arg(state_key(&tk))
            .arg(format!("fired:{key}"))
            .query(&mut redis.conn())
            .unwrap()
    };
    let host = Host::spawn(&args, cache.path());
    // Event time 1000, a timer at 5000: only the idle partition's wall-clock watermark
    // gets there.
    produce_commands(
        &p,
        &cmds,
        &[
            (1000, "timer quiet processing +1000"),
            (1000, "timer idle event 5000"),
        ],
    );
    let out = read_until(&brokers, &fired, Duration::from_secs(60), |ms| {
        ms.len() >= 2
    });
    let mut keys: Vec<&[u8]> = out.iter().filter_map(|m| m.key()).collect();
    keys.sort();
    assert_eq!(keys, [&b"idle"[..], b"quiet"]);
    host.wait_for(Duration::from_secs(30), "the firings committed", || {
        fired_count("quiet").as_deref() == Some("1") && fired_count("idle").as_deref() == Some("1")
    });

    // A timer due while no host runs fires once a host is back.
    produce_commands(&p, &cmds, &[(2000, "timer down processing +3000")]);
    host.wait_for(Duration::from_secs(30), "the timer committed", || {
        redis.offsets(&tk, &cmds).get(&0) == Some(&3)
    });
    host.kill9();
    let zset = format!("streamhost:{{{tk}}}:timers:{tk}:{cmds}:0:processing");
    let due: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&zset)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(due.len(), 1, "the pending timer is in Redis: {due:?}");
    let at = due[0].1 as i64;
    wait_until(Duration::from_secs(30), "the timer's time to pass", || {
        streamhost::clock::unix_ms() > at
    });
    let host = Host::spawn(&args, cache.path());
    host.wait_for(
        Duration::from_secs(60),
        "the timer that came due fired",
        || fired_count("down").as_deref() == Some("1"),
    );
    let out = read_until(&brokers, &fired, Duration::from_secs(60), |ms| {
        ms.len() >= 3
    });
    assert!(out.iter().any(|m| m.key() == Some(b"down")));
    let left: i64 = redis::cmd("ZCARD")
        .arg(&zset)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(left, 0, "fired timers are gone from Redis");
    assert_eq!(
        fired_count("quiet").as_deref(),
        Some("1"),
        "each fired once in state"
    );
    drop(host);
}

/// The second example: sessions per key close once the watermark passes their last record
/// plus the gap, a record past the gap starts the next session, and each closed session
/// leaves an expiring summary.
#[test]
fn session_count_closes_sessions_by_the_gap_and_keeps_expiring_summaries() {
    let dir = tempfile::tempdir().unwrap();
    // Key a: 1000, 1500, 3000 (one session, out of order), then 20000 (past the 10 s gap:
    // a new one). Key b: 2000 only.
    let records = [
        ("a", 1000),
        ("a", 3000),
        ("b", 2000),
        ("a", 1500),
        ("a", 20000),
    ];
    let text: Vec<String> = records
        .iter()
        .map(|(k, ts)| serde_json::json!({"key": k, "value": "x", "timestamp": ts}).to_string())
        .collect();
    let input = dir.path().join("clicks.jsonl");
    std::fs::write(&input, text.join("\n")).unwrap();
    let ooo = [
        "--max-out-of-orderness-ms",
        "2000",
        "--config",
        "gap-ms=10000",
    ];
    for batch in ["1", "2", "10"] {
        let mut args = ooo.to_vec();
        args.extend(["--batch-size", batch]);
        let report = host_test(dir.path(), "session-count", &input, &args);
        let sessions: BTreeSet<(String, i64, i64, i64, String)> = report["emits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e["value"].as_str().unwrap()).unwrap();
                (
                    v["key"].as_str().unwrap().to_owned(),
                    v["start"].as_i64().unwrap(),
                    v["end"].as_i64().unwrap(),
                    v["count"].as_i64().unwrap(),
                    v["closed_by"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let s = |k: &str, start, end, count| (k.to_owned(), start, end, count, "gap".to_owned());
        assert_eq!(
            sessions,
            [
                s("a", 1000, 13000, 3),
                s("b", 2000, 12000, 1),
                s("a", 20000, 30000, 1)
            ]
            .into_iter()
            .collect(),
            "batch size {batch}"
        );
        let state = report["state"].as_object().unwrap();
        let keys: BTreeSet<&str> = state.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["last:a", "last:b"].into_iter().collect(),
            "batch size {batch}"
        );
        let pending: Vec<(&str, &str)> = report["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].as_str().unwrap(), p["domain"].as_str().unwrap()))
            .collect();
        assert_eq!(
            pending,
            [("expiry", "processing"), ("expiry", "processing")],
            "the summaries expire in processing time"
        );
    }
}

/// A record older than the watermark goes where `--late-records` says: here to a side
/// topic, with headers naming its source, counted, and not in any window.
#[test]
fn late_records_go_to_the_side_topic_and_are_counted() {
    let (redis, kafka) = (Redis::start(), Kafka::shared());
    let brokers = kafka.brokers();
    let (clicks, windows_topic, late_clicks, lt) = (
        unique("clicks"),
        unique("windows"),
        unique("late-clicks"),
        unique("lt"),
    );
    for t in [&clicks, &windows_topic, &late_clicks] {
        create_topic(&brokers, t, 1);
    }
    let p = producer(&brokers);
    let metrics = format!("127.0.0.1:{}", streamhost_tests::services::free_port());
    let cache = tempfile::tempdir().unwrap();
    let window = format!("window-ms={WINDOW_MS}");
    let late_to = format!("topic:{late_clicks}");
    // --partitions: the host joins no group, so no group timing matters here.
    let extra: &[&str] = &[
        "--config",
        &window,
        "--output-topic",
        &windows_topic,
        "--late-records",
        &late_to,
        "--metrics-addr",
        &metrics,
        "--partitions",
        "0",
    ];
    let args = plugin_run_args("window-count", &brokers, &redis.url(), &clicks, &lt, extra);
    let host = Host::spawn(&args, cache.path());
    let event = |ts| Event {
        key: "k".into(),
        ts,
    };
    // The second record moves the watermark to 100000: window [10000, 11000) closes.
    produce_events(&p, &clicks, 0, &[event(10_000), event(100_000)]);
    host.wait_for(
        Duration::from_secs(60),
        "the first records committed",
        || redis.offsets(&lt, &clicks).get(&0) == Some(&2),
    );
    produce_events(&p, &clicks, 0, &[event(5_000)]);
    let late = read_until(&brokers, &late_clicks, Duration::from_secs(60), |ms| {
        !ms.is_empty()
    });
    assert_eq!(late.len(), 1);
    assert_eq!(
        header(&late[0], "streamhost-source-offset"),
        Some(&b"2"[..])
    );
    let why = String::from_utf8_lossy(header(&late[0], "streamhost-error").unwrap()).into_owned();
    assert!(why.contains("watermark 100000"), "{why}");
    host.wait_for(Duration::from_secs(60), "the late record committed", || {
        redis.offsets(&lt, &clicks).get(&0) == Some(&3)
    });
    let windows = read_until(&brokers, &windows_topic, Duration::from_secs(60), |ms| {
        !ms.is_empty()
    });
    let (w, n) = parse_window(windows[0].key(), windows[0].payload().unwrap());
    assert_eq!(
        (w, n),
        (("k".to_owned(), 10_000), 1),
        "the window closed with the record before it"
    );
    let text = streamhost_tests::http::request(&metrics, "GET", "/metrics", None, &[])
        .expect("metrics")
        .text();
    let sent = text
        .lines()
        .find(|l| l.starts_with("streamhost_late_records_total") && l.contains("action=\"sent\""))
        .unwrap_or_default()
        .to_owned();
    assert!(sent.ends_with(" 1"), "one late record sent: {sent}");
    let wm = text
        .lines()
        .find(|l| l.starts_with("streamhost_watermark_ms"))
        .unwrap_or_default()
        .to_owned();
    assert!(wm.ends_with(" 100000"), "{wm}");
    drop(host);
}
