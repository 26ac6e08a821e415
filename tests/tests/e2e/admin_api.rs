//! `host serve`: the admin API against a running server, with a real Redis and Apache
//! Kafka.
//! The first test walks every route and status code of docs/openapi.json and fails if the
//! description and the server disagree either way.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use streamhost_tests::http::Response;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve;
use streamhost_tests::services::{
    Redis, create_topic, free_port, produce, producer, state_key, wait_until,
};
use streamhost_tests::{expected_counts, plugin, repo_root, text_values};

const TOKEN: &str = "s3cret-token";
const MINUTE: Duration = Duration::from_secs(60);

fn registry_keys(redis: &Redis) -> BTreeSet<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("streamhost:registry:*")
        .query(&mut redis.conn())
        .expect("KEYS");
    keys.into_iter().collect()
}

/// (method, path template, status) of every documented response.
fn documented() -> BTreeSet<(String, String, u16)> {
    let text =
        std::fs::read_to_string(repo_root().join("docs/openapi.json")).expect("docs/openapi.json");
    let doc: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if method == "parameters" {
                continue;
            }
            for code in op["responses"].as_object().expect("responses").keys() {
                out.insert((
                    method.to_uppercase(),
                    path.clone(),
                    code.parse().expect("status code"),
                ));
            }
        }
    }
    out
}

/// Records what was exercised and checks the answer's shape for its status.
struct Walk {
    seen: BTreeSet<(String, String, u16)>,
}

impl Walk {
    fn check(
        &mut self,
        method: &str,
        template: &str,
        r: &Response,
        status: u16,
        reason: Option<&str>,
    ) -> Value {
        assert_eq!(r.status, status, "{method} {template}: {}", r.text());
        self.seen
            .insert((method.to_owned(), template.to_owned(), status));
        if status >= 400 {
            let body = r.json();
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{method} {template}: {body}"
            );
            if let Some(reason) = reason {
                assert_eq!(body["reason"], reason, "{method} {template}: {body}");
            }
            return body;
        }
        if r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            r.json()
        } else {
            Value::Null
        }
    }
}

#[test]
fn every_documented_route_and_status_answers_as_documented() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let (walk, id1, id2) = (unique("walk"), unique("j1"), unique("j2"));
    // The paths of jobs j1 and j2: `path1("/stop")` is /v1/jobs/<j1>/stop.
    let path1 = |rest: &str| format!("/v1/jobs/{id1}{rest}");
    let path2 = |rest: &str| format!("/v1/jobs/{id2}{rest}");
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(
        &redis,
        &brokers,
        Some(TOKEN),
        &["--max-upload-mb", "1"],
        cache.path(),
    );
    create_topic(&brokers, &walk, 1);
    let mut w = Walk {
        seen: BTreeSet::new(),
    };
    let p = "/v1/plugins/{name}/{version}";
    let j = "/v1/jobs/{id}";

    for path in ["/healthz", "/readyz", "/metrics"] {
        w.check("GET", path, &s.call("GET", path, None, b""), 200, None);
    }
    let list = w.check(
        "GET",
        "/v1/plugins",
        &s.call("GET", "/v1/plugins", None, b""),
        200,
        None,
    );
    assert_eq!(list["plugins"], json!([]));

    // Uploads: every refusal says why, and stores nothing.
    let wc = std::fs::read(plugin("wordcount")).expect("read");
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/wc/1", None, &wc),
        401,
        Some("unauthorized"),
    );
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/wc/1", Some("wrong"), &wc),
        401,
        Some("unauthorized"),
    );
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/WC/1", Some(TOKEN), &wc),
        400,
        Some("bad_name"),
    );
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/wc/-1", Some(TOKEN), &wc),
        400,
        Some("bad_version"),
    );
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/wc/1", Some(TOKEN), b""),
        400,
        Some("empty"),
    );
    let bad: [(&[u8], &str); 2] = [
        (b"print('hello')", "not_wasm"),
        (b"\0asm\x01\0\0\0", "not_a_component"),
    ];
    for (body, reason) in bad {
        w.check(
            "PUT",
            p,
            &s.call("PUT", "/v1/plugins/x/1", Some(TOKEN), body),
            422,
            Some(reason),
        );
    }
    for (name, reason) in [
        ("other-world", "wrong_world"),
        ("future-version", "wrong_contract_version"),
    ] {
        w.check("PUT", p, &s.upload("x", "1", name), 422, Some(reason));
    }
    let big = vec![0u8; (1 << 20) + 1];
    w.check(
        "PUT",
        p,
        &s.call("PUT", "/v1/plugins/x/1", Some(TOKEN), &big),
        413,
        Some("too_large"),
    );
    assert!(
        registry_keys(&redis).is_empty(),
        "a refused upload stored something"
    );

    let entry = w.check("PUT", p, &s.upload("wc", "1", "wordcount"), 201, None);
    assert!(
        entry["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    w.check(
        "PUT",
        p,
        &s.upload("wc", "1", "wordcount-c"),
        409,
        Some("version_exists"),
    );
    for (name, file) in [("faulty", "faulty"), ("echo", "echo")] {
        w.check("PUT", p, &s.upload(name, "1", file), 201, None);
    }
    let list = w.check(
        "GET",
        "/v1/plugins",
        &s.call("GET", "/v1/plugins", None, b""),
        200,
        None,
    );
    assert_eq!(list["plugins"].as_array().map(Vec::len), Some(3));
    let one = w.check(
        "GET",
        p,
        &s.call("GET", "/v1/plugins/wc/1", None, b""),
        200,
        None,
    );
    assert_eq!(one["digest"], entry["digest"]);
    w.check(
        "GET",
        p,
        &s.call("GET", "/v1/plugins/wc/9", None, b""),
        404,
        Some("not_found"),
    );

    // Jobs.
    let job = |id: &str, plugin: &str, config: Value| {
        json!({"id": id, "plugin": plugin, "topics": [walk], "partitions": [0], "config": config,
               "settings": {"kafka": {"session.timeout.ms": "6000"}}})
        .to_string()
    };
    let j1 = job(&id1, "faulty@1", json!({"fail-init": "false"}));
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", None, j1.as_bytes()),
        401,
        Some("unauthorized"),
    );
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), b"{not json"),
        400,
        Some("bad_json"),
    );
    let typo = r#"{"id": "t", "plugin": "wc@1", "topics": ["walk"], "topicz": []}"#;
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), typo.as_bytes()),
        400,
        Some("bad_json"),
    );
    let missing = job("j0", "nope@1", json!({}));
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), missing.as_bytes()),
        404,
        Some("not_found"),
    );
    let refused = job("j0", "wc@1", json!({"bogus": "1"}));
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), refused.as_bytes()),
        422,
        Some("init_failed"),
    );
    let created = w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), j1.as_bytes()),
        201,
        None,
    );
    assert_eq!(
        created["plugin_digest"],
        s.call("GET", "/v1/plugins/faulty/1", None, b"").json()["digest"]
    );
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), j1.as_bytes()),
        409,
        Some("job_exists"),
    );
    let jobs = w.check(
        "GET",
        "/v1/jobs",
        &s.call("GET", "/v1/jobs", None, b""),
        200,
        None,
    );
    assert_eq!(jobs["jobs"][0]["id"], id1.as_str());
    w.check("GET", j, &s.call("GET", &path1(""), None, b""), 200, None);
    w.check(
        "GET",
        j,
        &s.call("GET", "/v1/jobs/nope", None, b""),
        404,
        Some("not_found"),
    );

    // Swaps.
    let to = |plugin: &str| json!({ "plugin": plugin }).to_string();
    w.check(
        "PATCH",
        j,
        &s.call("PATCH", &path1(""), None, to("echo@1").as_bytes()),
        401,
        Some("unauthorized"),
    );
    let other_field = r#"{"plugin": "echo@1", "topics": ["x"]}"#;
    w.check(
        "PATCH",
        j,
        &s.call("PATCH", &path1(""), Some(TOKEN), other_field.as_bytes()),
        400,
        Some("bad_json"),
    );
    w.check(
        "PATCH",
        j,
        &s.call(
            "PATCH",
            "/v1/jobs/nope",
            Some(TOKEN),
            to("echo@1").as_bytes(),
        ),
        404,
        Some("not_found"),
    );
    // wordcount's init refuses the job's config (fail-init is faulty's key).
    w.check(
        "PATCH",
        j,
        &s.call("PATCH", &path1(""), Some(TOKEN), to("wc@1").as_bytes()),
        422,
        Some("init_failed"),
    );
    let swapped = w.check(
        "PATCH",
        j,
        &s.call("PATCH", &path1(""), Some(TOKEN), to("echo@1").as_bytes()),
        200,
        None,
    );
    assert_eq!(swapped["plugin_version"], "1");
    assert_eq!(swapped["spec"]["plugin"], "echo@1");

    // The console and what it asks the server first.
    for path in ["/", "/console/app.js", "/console/app.css"] {
        let r = s.call("GET", path, None, b"");
        w.check("GET", path, &r, 200, None);
        assert!(!r.body.is_empty(), "{path}");
    }
    let info = w.check(
        "GET",
        "/v1/info",
        &s.call("GET", "/v1/info", None, b""),
        200,
        None,
    );
    assert_eq!(info["token_required"], true);

    // Stop and start: the definition stays, marked stopped.
    let (stop, start) = ("/v1/jobs/{id}/stop", "/v1/jobs/{id}/start");
    let call = |method: &str, path: &str, token: Option<&str>| s.call(method, path, token, b"");
    w.check(
        "POST",
        stop,
        &call("POST", &path1("/stop"), None),
        401,
        Some("unauthorized"),
    );
    w.check(
        "POST",
        stop,
        &call("POST", "/v1/jobs/nope/stop", Some(TOKEN)),
        404,
        Some("not_found"),
    );
    w.check(
        "POST",
        start,
        &call("POST", &path1("/start"), Some(TOKEN)),
        409,
        Some("job_running"),
    );
    let stopped = w.check(
        "POST",
        stop,
        &call("POST", &path1("/stop"), Some(TOKEN)),
        200,
        None,
    );
    assert_eq!(stopped["status"], "stopped");
    let stored: Value =
        serde_json::from_str(&redis.hgetall("streamhost:serve:jobs")[id1.as_str()]).expect("spec");
    assert_eq!(stored["stopped"], true);
    w.check(
        "POST",
        start,
        &call("POST", &path1("/start"), None),
        401,
        Some("unauthorized"),
    );
    w.check(
        "POST",
        start,
        &call("POST", "/v1/jobs/nope/start", Some(TOKEN)),
        404,
        Some("not_found"),
    );
    let started = w.check(
        "POST",
        start,
        &call("POST", &path1("/start"), Some(TOKEN)),
        200,
        None,
    );
    assert!(
        matches!(started["status"].as_str(), Some("starting" | "running")),
        "{started}"
    );
    assert_eq!(started["plugin_version"], "1");

    // State.
    let (st, sk) = ("/v1/jobs/{id}/state", "/v1/jobs/{id}/state/{key}");
    let page = w.check("GET", st, &call("GET", &path1("/state"), None), 200, None);
    assert_eq!(page, json!({"entries": [], "cursor": null}));
    w.check(
        "GET",
        st,
        &call("GET", &path1("/state?cursor=junk"), None),
        400,
        Some("bad_cursor"),
    );
    w.check(
        "GET",
        st,
        &call("GET", "/v1/jobs/nope/state", None),
        404,
        Some("not_found"),
    );
    w.check(
        "GET",
        sk,
        &call("GET", &path1("/state/nothing"), None),
        404,
        Some("no_key"),
    );
    redis::cmd("HSET")
        .arg(state_key(&id1))
        .arg("k/1")
        .arg("v")
        .query::<i64>(&mut redis.conn())
        .expect("HSET");
    let one = w.check(
        "GET",
        sk,
        &call("GET", &path1("/state/k%2F1"), None),
        200,
        None,
    );
    assert_eq!(one["value"], "v");

    // Dead letters: j2 (faulty) dead-letters its poison record; a replay through faulty
    // still fails and applies nothing; after a swap to wc it counts the record, once.
    let (dl, rp) = (
        "/v1/jobs/{id}/dead-letters",
        "/v1/jobs/{id}/dead-letters/replay",
    );
    let none = w.check(
        "GET",
        dl,
        &call("GET", &path1("/dead-letters"), None),
        200,
        None,
    );
    assert_eq!(none["topic"], Value::Null);
    w.check(
        "GET",
        dl,
        &call("GET", &path1("/dead-letters?limit=0"), None),
        400,
        Some("bad_limit"),
    );
    w.check(
        "GET",
        dl,
        &call("GET", "/v1/jobs/nope/dead-letters", None),
        404,
        Some("not_found"),
    );
    w.check(
        "POST",
        rp,
        &call("POST", &path1("/dead-letters/replay"), None),
        401,
        Some("unauthorized"),
    );
    w.check(
        "POST",
        rp,
        &call("POST", &path1("/dead-letters/replay"), Some(TOKEN)),
        400,
        Some("no_dlq"),
    );
    w.check(
        "POST",
        rp,
        &call("POST", "/v1/jobs/nope/dead-letters/replay", Some(TOKEN)),
        404,
        Some("not_found"),
    );
    let (walk2, walkdead) = (unique("walk2"), unique("walkdead"));
    create_topic(&brokers, &walk2, 1);
    create_topic(&brokers, &walkdead, 1);
    produce(
        &producer(&brokers),
        &walk2,
        0,
        &[b"poison".to_vec(), b"x".to_vec()],
    );
    let j2 = json!({"id": id2, "plugin": "faulty@1", "topics": [walk2], "partitions": [0],
                    "settings": {"on_error": "dlq", "dlq_topic": walkdead,
                                 "kafka": {"session.timeout.ms": "6000"}}});
    w.check(
        "POST",
        "/v1/jobs",
        &s.call("POST", "/v1/jobs", Some(TOKEN), j2.to_string().as_bytes()),
        201,
        None,
    );
    wait_until(MINUTE, "j2's dead letter", || {
        s.call("GET", &path2("/dead-letters"), None, b"").json()["records"]
            .as_array()
            .is_some_and(|r| r.len() == 1)
    });
    let letters = w.check(
        "GET",
        dl,
        &call("GET", &path2("/dead-letters"), None),
        200,
        None,
    );
    let letter = &letters["records"][0];
    assert_eq!(letters["total"], 1);
    assert_eq!(
        (
            &letter["value"],
            &letter["source_topic"],
            &letter["source_offset"],
            &letter["plugin_version"],
            &letter["replayed"]
        ),
        (
            &json!("poison"),
            &json!(walk2),
            &json!(0),
            &json!("faulty@1"),
            &json!(false)
        ),
        "{letter}"
    );
    let failed = w.check(
        "POST",
        rp,
        &call("POST", &path2("/dead-letters/replay"), Some(TOKEN)),
        422,
        Some("replay_failed"),
    );
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("{walkdead}/0@0"))),
        "{failed}"
    );
    w.check(
        "POST",
        rp,
        &s.call(
            "POST",
            &path2("/dead-letters/replay"),
            Some(TOKEN),
            b"{oops",
        ),
        400,
        Some("bad_json"),
    );
    w.check(
        "PATCH",
        j,
        &s.call("PATCH", &path2(""), Some(TOKEN), to("wc@1").as_bytes()),
        200,
        None,
    );
    let report = w.check(
        "POST",
        rp,
        &s.call("POST", &path2("/dead-letters/replay"), Some(TOKEN), b"{}"),
        200,
        None,
    );
    assert_eq!(
        (&report["replayed"], &report["plugin_version"]),
        (&json!(1), &json!("wc@1")),
        "{report}"
    );
    assert_eq!(
        s.call("GET", &path2("/state/poison"), None, b"").json()["value"],
        "1"
    );
    let again = s
        .call("POST", &path2("/dead-letters/replay"), Some(TOKEN), b"")
        .json();
    assert_eq!(
        (&again["replayed"], &again["already_replayed"]),
        (&json!(0), &json!(1)),
        "{again}"
    );
    assert_eq!(
        s.call("GET", &path2("/state/poison"), None, b"").json()["value"],
        "1"
    );
    let letters = s.call("GET", &path2("/dead-letters"), None, b"").json();
    assert_eq!(letters["records"][0]["replayed"], true);
    w.check(
        "DELETE",
        j,
        &call("DELETE", &path2(""), Some(TOKEN)),
        204,
        None,
    );

    // Plugin removal.
    w.check(
        "DELETE",
        p,
        &s.call("DELETE", "/v1/plugins/echo/1", None, b""),
        401,
        Some("unauthorized"),
    );
    w.check(
        "DELETE",
        p,
        &s.call("DELETE", "/v1/plugins/echo/1", Some(TOKEN), b""),
        409,
        Some("in_use"),
    );
    w.check(
        "DELETE",
        p,
        &s.call("DELETE", "/v1/plugins/echo/7", Some(TOKEN), b""),
        404,
        Some("not_found"),
    );

    // Job removal, then the plugin it used can go.
    w.check(
        "DELETE",
        j,
        &s.call("DELETE", &path1(""), None, b""),
        401,
        Some("unauthorized"),
    );
    w.check(
        "DELETE",
        j,
        &s.call("DELETE", &path1(""), Some(TOKEN), b""),
        204,
        None,
    );
    w.check(
        "DELETE",
        j,
        &s.call("DELETE", &path1(""), Some(TOKEN), b""),
        404,
        Some("not_found"),
    );
    w.check(
        "DELETE",
        p,
        &s.call("DELETE", "/v1/plugins/echo/1", Some(TOKEN), b""),
        204,
        None,
    );
    assert_eq!(s.call("GET", "/v1/plugins/echo/1", None, b"").status, 404);
    assert!(redis.hgetall("streamhost:serve:jobs").is_empty());

    let documented = documented();
    let undocumented: Vec<_> = w.seen.difference(&documented).collect();
    let unexercised: Vec<_> = documented.difference(&w.seen).collect();
    assert!(
        undocumented.is_empty(),
        "answers missing from docs/openapi.json: {undocumented:?}"
    );
    assert!(
        unexercised.is_empty(),
        "documented but not exercised: {unexercised:?}"
    );
}

#[test]
fn without_a_token_the_server_binds_to_loopback_only() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let addr = format!("0.0.0.0:{}", free_port());
    let url = redis.url();
    let out = streamhost_tests::host(
        &["serve", "--admin-addr", &addr, "--redis", &url],
        cache.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without a token") && err.contains("--admin-token"),
        "{err}"
    );

    let s = serve(&redis, "127.0.0.1:1", None, &[], cache.path());
    assert!(
        s.host.log_text().contains("loopback only"),
        "{}",
        s.host.log_text()
    );
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
}

#[test]
fn jobs_are_isolated_and_resume_after_a_restart() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let brokers = Kafka::shared().brokers();
    let (words, bad) = (unique("words"), unique("bad"));
    let (counter, broken) = (unique("counter"), unique("broken"));
    let (paused, ghost) = (unique("paused"), unique("ghost"));
    for topic in [&words, &bad] {
        create_topic(&brokers, topic, 1);
    }
    let mut s = serve(&redis, &brokers, Some(TOKEN), &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    assert_eq!(s.upload("faulty", "1", "faulty").status, 201);
    let job = |id: &str, plugin: &str, topic: &str| {
        json!({"id": id, "plugin": plugin, "topics": [topic], "partitions": [0],
               "settings": {"on_error": "stop", "batch_linger_ms": 20}})
        .to_string()
    };
    for (id, plugin, topic) in [(&counter, "wc@1", &words), (&broken, "faulty@1", &bad)] {
        let r = s.call(
            "POST",
            "/v1/jobs",
            Some(TOKEN),
            job(id, plugin, topic).as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let p = producer(&brokers);
    produce(&p, &bad, 0, &[b"fatal".to_vec()]);
    let first = text_values(1, 200);
    produce(&p, &words, 0, &first);
    wait_until(MINUTE, "the broken job to fail", || {
        s.job(&broken)["status"] == "failed"
    });
    let failed = s.job(&broken);
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot go on")),
        "{failed}"
    );
    wait_until(MINUTE, "the counter to commit", || {
        redis.offsets(&counter, &words).get(&0) == Some(&(first.len() as i64))
    });
    assert_eq!(redis.counts(&counter), expected_counts(&first));
    let job = s.job(&counter);
    assert_eq!(job["status"], "running");
    assert_eq!(job["records"], first.len(), "{job}");
    assert_eq!(job["partitions"][0]["topic"], words.as_str(), "{job}");
    assert_eq!(job["partitions"][0]["committed"], first.len(), "{job}");
    assert!(
        redis.offsets(&broken, &bad).is_empty(),
        "the failed batch must not commit"
    );

    // A job defined stopped, and (written behind the server's back) a stopped one whose
    // plugin reference does not parse: neither may keep the server from resuming the others.
    let spec = json!({"id": paused, "plugin": "wc@1", "topics": [words], "stopped": true});
    let r = s.call("POST", "/v1/jobs", Some(TOKEN), spec.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    redis::cmd("HSET")
        .arg("streamhost:serve:jobs")
        .arg(&ghost)
        .arg(
            json!({"id": ghost, "plugin": "No Such/Ref", "topics": [words], "stopped": true})
                .to_string(),
        )
        .query::<i64>(&mut redis.conn())
        .expect("HSET");

    // Restart the server: the jobs come back from Redis; the counter goes on exactly.
    s.host.signal(libc::SIGTERM);
    let status = s.host.wait(MINUTE);
    assert!(status.success(), "{status}: {}", s.host.log_text());
    let s = serve(&redis, &brokers, Some(TOKEN), &[], cache.path());
    let jobs = s.call("GET", "/v1/jobs", None, b"").json();
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(4), "{jobs}");
    assert_eq!(s.job(&paused)["status"], "stopped");
    assert!(
        redis.offsets(&paused, &words).is_empty(),
        "a stopped job does not run"
    );
    let job = s.job(&ghost);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("No Such/Ref")),
        "{job}"
    );
    let second = text_values(2, 200);
    produce(&p, &words, 0, &second);
    wait_until(MINUTE, "the counter to commit after the restart", || {
        redis.offsets(&counter, &words).get(&0) == Some(&((first.len() + second.len()) as i64))
    });
    let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    assert_eq!(redis.counts(&counter), expected_counts(&all));
    wait_until(
        MINUTE,
        "the broken job to fail again on the same record",
        || s.job(&broken)["status"] == "failed",
    );
    assert!(redis.offsets(&broken, &bad).is_empty());

    // SIGKILL while the counter works through a third part: the next server resumes from
    // the committed offsets, exactly.
    let third = text_values(3, 3000);
    produce(&p, &words, 0, &third);
    let before = (first.len() + second.len()) as i64;
    wait_until(MINUTE, "progress on the third part", || {
        redis
            .offsets(&counter, &words)
            .get(&0)
            .is_some_and(|&o| o > before)
    });
    s.host.kill9();
    let s = serve(&redis, &brokers, Some(TOKEN), &[], cache.path());
    let total = all.len() + third.len();
    wait_until(MINUTE, "the counter to commit everything", || {
        redis.offsets(&counter, &words).get(&0) == Some(&(total as i64))
    });
    let all: Vec<Vec<u8>> = all.iter().chain(&third).cloned().collect();
    assert_eq!(
        redis.counts(&counter),
        expected_counts(&all),
        "exactly once across a SIGKILL"
    );
    // The SIGKILL may have come after the last commit: then the offsets were complete
    // before the resumed job was up, so wait for it rather than expect it.
    wait_until(MINUTE, "the resumed counter to run", || {
        s.job(&counter)["status"] == "running"
    });
}

#[test]
fn redis_gone_is_a_503_that_says_so() {
    let mut redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:1", Some(TOKEN), &[], cache.path());
    redis.stop();
    for (method, path) in [("GET", "/v1/plugins"), ("PUT", "/v1/plugins/wc/1")] {
        let body = if method == "PUT" {
            std::fs::read(streamhost_tests::plugin("wordcount")).expect("read")
        } else {
            Vec::new()
        };
        let r = s.call(method, path, Some(TOKEN), &body);
        assert_eq!(r.status, 503, "{method} {path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["reason"], "redis_unavailable", "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("Redis")),
            "{body}"
        );
    }
    redis.restart();
    wait_until(MINUTE, "the API to work again once Redis is back", || {
        s.call("GET", "/v1/plugins", None, b"").status == 200
    });
}

#[test]
fn each_job_runs_in_its_own_sandbox_settings() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:1", Some(TOKEN), &[], cache.path());
    assert_eq!(s.upload("py", "1", "wordcount-python").status, 201);
    let job = |id: &str, memory_mb: u32| {
        json!({"id": id, "plugin": "py@1", "topics": ["t"], "partitions": [0],
               "settings": {"plugin_memory_mb": memory_mb}})
        .to_string()
    };
    // The Python interpreter needs more than 8 MiB: refused, naming the job's own cap.
    let r = s.call("POST", "/v1/jobs", Some(TOKEN), job("small", 8).as_bytes());
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("memory limit of 8388608 bytes"),
        "{}",
        r.text()
    );
    let r = s.call("POST", "/v1/jobs", Some(TOKEN), job("roomy", 96).as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["spec"]["settings"]["plugin_memory_mb"], 96);
    let r = s.call("POST", "/v1/jobs", Some(TOKEN), job("zero", 0).as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["reason"], "bad_settings");
}

/// `host run` and the API check a job's settings with one rule: the same bad values are
/// refused with the same words (the flag and the field both named), and neither clamps.
#[test]
fn cli_and_api_refuse_the_same_settings_with_the_same_message() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:1", Some(TOKEN), &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let wc = plugin("wordcount");
    let cases: [(&[&str], Value); 3] = [
        (&["--outbox-max-mb", "5000"], json!({"outbox_max_mb": 5000})),
        (
            &["--redis-wait-timeout-ms", "0"],
            json!({"redis_wait_timeout_ms": 0}),
        ),
        (&["--on-error", "dlq"], json!({"on_error": "dlq"})),
    ];
    for (flags, settings) in cases {
        let mut args = vec![
            "run",
            "--plugin",
            wc.to_str().expect("path"),
            "--topic",
            "t",
            "--brokers",
            "127.0.0.1:1",
            "--redis",
            "redis://127.0.0.1:1",
        ];
        args.extend_from_slice(flags);
        let out = streamhost_tests::host(&args, cache.path());
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let job = json!({"id": "bad", "plugin": "wc@1", "topics": ["t"], "settings": settings});
        let r = s.call("POST", "/v1/jobs", Some(TOKEN), job.to_string().as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["reason"], "bad_settings");
        let message = r.json()["error"].as_str().expect("error text").to_owned();
        assert!(message.contains("settings."), "{message}");
        assert!(
            stderr.contains(&format!("error: {message}")),
            "{flags:?}: the CLI said {stderr:?}, the API {message:?}"
        );
    }
}

/// With no job running, `/metrics` still describes the server: its build, jobs by state,
/// the registry's plugins and the admin requests it answered.
#[test]
fn metrics_describe_the_server_with_no_job_running() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:1", Some(TOKEN), &[], cache.path());
    assert_eq!(s.call("GET", "/v1/plugins", None, b"").status, 200);
    assert_eq!(s.call("GET", "/v1/nothing-here", None, b"").status, 404);
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let body = s.call("GET", "/metrics", None, b"").text();
    let has = |line: &str| body.lines().any(|l| l == line);
    let version = env!("CARGO_PKG_VERSION");
    for line in [
        format!("streamhost_build_info{{version=\"{version}\",contracts=\"0.2.0,0.1.0\"}} 1"),
        "streamhost_jobs{state=\"running\"} 0".to_owned(),
        "streamhost_jobs{state=\"failed\"} 0".to_owned(),
        "streamhost_plugins 1".to_owned(),
        "streamhost_admin_requests_total{route=\"/v1/plugins\",method=\"GET\",status=\"200\"} 1"
            .to_owned(),
        "streamhost_admin_requests_total{route=\"(no route)\",method=\"GET\",status=\"404\"} 1"
            .to_owned(),
        "streamhost_admin_requests_total{route=\"/v1/plugins/{name}/{version}\",method=\"PUT\",status=\"201\"} 1"
            .to_owned(),
    ] {
        assert!(has(&line), "{line} is not in /metrics:\n{body}");
    }
}

#[test]
fn a_page_of_another_site_cannot_change_anything() {
    // A loopback server without a token: any local process may change it, but a page a
    // browser loaded from elsewhere must not (its cross-site requests carry its Origin).
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, &Kafka::shared().brokers(), None, &[], cache.path());
    let body = br#"{"id": "x", "plugin": "wc@1", "topics": ["t"]}"#;
    let from = |origin: &str| {
        streamhost_tests::http::request_with(
            &s.addr,
            "POST",
            "/v1/jobs",
            None,
            &[("Origin", origin), ("Content-Type", "text/plain")],
            body,
        )
        .expect("answer")
    };
    let refused = from("http://evil.example");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["reason"], "cross_origin");
    // The console's own page (same origin) gets as far as the registry lookup.
    let own = from(&format!("http://{}", s.addr));
    assert_eq!(own.status, 404, "{}", own.text());
    assert_eq!(own.json()["reason"], "not_found");
    assert!(redis.hgetall("streamhost:serve:jobs").is_empty());
    let info = s.call("GET", "/v1/info", None, b"").json();
    assert_eq!(info["token_required"], false);
}

/// A job waiting for a topic that does not exist is shown as waiting, with the reason,
/// at once: in its view, the job list and `/metrics`; once the topic exists it runs.
#[test]
fn a_job_waiting_for_a_missing_topic_says_so_until_it_exists() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, &brokers, None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let (id, topic) = (unique("w"), unique("later"));
    let spec = json!({"id": id, "plugin": "wc@1", "topics": [topic]});
    let created = s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    wait_until(MINUTE, "the job to show it waits", || {
        s.job(&id)["status"] == "waiting"
    });
    let view = s.job(&id);
    let why = view["error"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("topic {topic} does not exist")),
        "{view}"
    );
    let metrics = s.call("GET", "/metrics", None, b"").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("state=\"waiting\"") && l.trim_end().ends_with(" 1")),
        "{metrics}"
    );
    create_topic(&brokers, &topic, 1);
    wait_until(MINUTE, "the job to run once the topic exists", || {
        s.job(&id)["status"] == "running"
    });
}

/// A job whose brokers do not answer is shown as waiting for them, with the address and
/// the last error, while the server keeps trying.
#[test]
fn a_job_waiting_for_kafka_says_so() {
    let redis = Redis::start_in_memory();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, "127.0.0.1:1", None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let id = unique("nobroker");
    let spec = json!({"id": id, "plugin": "wc@1", "topics": ["t"]});
    let created = s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    wait_until(MINUTE, "the job to show it waits for Kafka", || {
        s.job(&id)["status"] == "waiting"
    });
    let view = s.job(&id);
    let why = view["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("Kafka at 127.0.0.1:1 does not answer"),
        "{view}"
    );
}

/// A job whose output topic does not exist waits for it, naming it, rather than holding
/// each batch for librdkafka's metadata timeout with no word of why.
#[test]
fn a_job_waiting_for_its_output_topic_names_it() {
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    let cache = tempfile::tempdir().expect("cache");
    let s = serve(&redis, &brokers, None, &[], cache.path());
    assert_eq!(s.upload("wc", "1", "wordcount").status, 201);
    let (id, input, output) = (unique("out"), unique("in"), unique("counts"));
    create_topic(&brokers, &input, 1);
    let spec = json!({"id": id, "plugin": "wc@1", "topics": [input], "output_topic": output,
                      "config": {"emit": "true"}});
    let created = s.call("POST", "/v1/jobs", None, spec.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    wait_until(MINUTE, "the job to name its missing output topic", || {
        s.job(&id)["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("topic {output} does not exist")))
    });
    create_topic(&brokers, &output, 1);
    wait_until(MINUTE, "the job to run once it exists", || {
        s.job(&id)["status"] == "running"
    });
}
