//! The console in a real browser (Debian's chromium, headless, over the DevTools
//! protocol): an operator uploads plugins, starts a job, watches it count, queries a key,
//! hot-swaps the plugin, finds the poison record among the dead letters, replays it and
//! stops the job; then the page with 200 jobs defined is timed. Screenshots go to
//! build/screenshots/.

use std::time::{Duration, Instant};

use serde_json::json;
use streamhost_tests::browser::Browser;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::serve::serve;
use streamhost_tests::services::{Redis, create_topic, produce, producer};
use streamhost_tests::{plugin, repo_root};

const TOKEN: &str = "console-token";
const WAIT: Duration = Duration::from_secs(60);

/// A JS string literal of `s`.
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The text of the first element matching `selector` ('' when none).
fn text_of(selector: &str) -> String {
    format!(
        "(document.querySelector({}) || {{textContent: ''}}).textContent.trim()",
        js(selector)
    )
}

fn upload(b: &mut Browser, name: &str, version: &str, file: &str) {
    b.set_files("#upload-file", &[&plugin(file)]);
    b.fill("#upload-name", name);
    b.fill("#upload-version", version);
    b.click("#upload-submit");
    let row = format!(
        "#plugins tr[data-plugin={}]",
        js(&format!("{name}@{version}"))
    );
    b.wait_for(
        &format!("document.querySelector({}) !== null", js(&row)),
        WAIT,
        &format!("{name}@{version} in the plugin table"),
    );
    let result = b.eval(&text_of("#upload-result"));
    assert!(
        result
            .as_str()
            .is_some_and(|r| r.contains(&format!("{name}@{version}"))),
        "{result}"
    );
}

#[test]
fn an_operator_drives_the_console_end_to_end() {
    let mut b = Browser::launch().unwrap_or_else(|e| {
        panic!("{e}\nthe console test needs Debian's chromium; scripts/test installs it")
    });
    let redis = Redis::start_in_memory();
    let brokers = Kafka::shared().brokers();
    // The job and its input topic share a name, as an operator might name them.
    let (clicks, dead) = (unique("clicks"), unique("clicks-dead"));
    create_topic(&brokers, &clicks, 1);
    create_topic(&brokers, &dead, 1);
    let cache = tempfile::tempdir().unwrap();
    let s = serve(&redis, &brokers, Some(TOKEN), &[], cache.path());
    let shots = repo_root().join("build/screenshots");
    let base = format!("http://{}", s.addr);

    // Without the token the console is read-only.
    b.goto(&format!("{base}/"));
    b.wait_for(
        "document.body.classList.contains('rendered')",
        WAIT,
        "the first render",
    );
    assert_eq!(b.eval(&text_of("#mode")), "read-only");
    assert_eq!(
        b.eval("document.querySelector('#upload-submit').disabled"),
        true
    );
    assert_eq!(
        b.eval("document.querySelector('a#metrics-link').getAttribute('href')"),
        "/metrics"
    );
    b.fill("#token", TOKEN);
    b.click("#token-save");
    b.wait_for(
        &format!("{} === 'admin'", text_of("#mode")),
        WAIT,
        "admin mode",
    );

    // Upload: version 1 (faulty: marks "poison" records as poison, counts the rest under
    // "ok") and version 2 (wordcount, which counts the word "poison" like any other).
    upload(&mut b, "logic", "1", "faulty");
    upload(&mut b, "logic", "2", "wordcount");

    // Start a job on version 1 that dead-letters what it cannot handle.
    b.fill("#new-job-id", &clicks);
    b.fill("#new-job-plugin", "logic@1");
    b.fill("#new-job-topics", &clicks);
    b.fill("#new-job-on-error", "dlq");
    b.fill("#new-job-dlq", &dead);
    b.click("#new-job-submit");
    let row = format!("#jobs tr[data-job=\"{clicks}\"]");
    b.wait_for(
        &format!("{} === 'running'", text_of(&format!("{row} td.status"))),
        WAIT,
        "the job to run",
    );
    assert_eq!(b.eval(&text_of(&format!("{row} td.plugin"))), "logic@1");
    assert_eq!(
        b.eval(&text_of("#plugins tr[data-plugin=\"logic@1\"] td.used-by")),
        clicks.as_str()
    );

    // Counts and lag move as records arrive.
    let mut values = vec![b"tap".to_vec(); 150];
    values.insert(70, b"poison".to_vec());
    produce(&producer(&brokers), &clicks, 0, &values);
    b.wait_for(
        &format!(
            "{} === '150' && {} === '0'",
            text_of(&format!("{row} td.records")),
            text_of(&format!("{row} td.lag"))
        ),
        WAIT,
        "150 records counted and no lag",
    );
    assert_eq!(b.eval(&text_of(&format!("{row} td.dead-lettered"))), "1");

    // The job's details: its partition, a key of its state, its dead letter.
    b.click(&format!("{row} td.id a, {row} td.id button"));
    b.wait_for(
        &format!(
            "(() => {{ const d = document.querySelector('#job-detail'); \
              return d && d.dataset.job === {} && !d.hidden && d.offsetParent !== null; }})()",
            js(&clicks)
        ),
        WAIT,
        "the details panel",
    );
    b.wait_for(
        &format!("{} === '151'", text_of("#partitions td.committed")),
        WAIT,
        "the committed offset in the details",
    );
    b.fill("#state-key", "ok");
    b.click("#state-get");
    b.wait_for(
        &format!("{} === '150'", text_of("#state-results td.value")),
        WAIT,
        "the value of key ok",
    );
    b.fill("#state-prefix", "o");
    b.click("#state-search");
    b.wait_for(
        &format!("{} === 'ok'", text_of("#state-results td.key")),
        WAIT,
        "the prefix search",
    );
    b.click("#dlq-refresh");
    let letter = "#dead-letters tr[data-dlq=\"0:0\"]";
    b.wait_for(
        &format!("{} === 'no'", text_of(&format!("{letter} td.replayed"))),
        WAIT,
        "the poison record among the dead letters",
    );
    assert_eq!(
        b.eval(&text_of(&format!("{letter} td.source"))),
        format!("{clicks}/0@70").as_str()
    );
    assert_eq!(
        b.eval(&text_of(&format!("{letter} td.plugin-version"))),
        "logic@1"
    );
    assert!(
        b.eval(&text_of(&format!("{letter} td.error")))
            .as_str()
            .is_some_and(|e| e.contains("poison")),
    );
    b.screenshot(&shots.join("console-job.png"));

    // Hot swap to version 2, then replay the dead letter through it.
    b.fill(&format!("{row} select.swap"), "logic@2");
    b.click(&format!("{row} button.swap-go"));
    b.wait_for(
        &format!("{} === 'logic@2'", text_of(&format!("{row} td.plugin"))),
        WAIT,
        "the swap",
    );
    b.click("#dlq-replay");
    b.wait_for(
        &format!("{}.includes('replayed 1')", text_of("#dlq-replay-result")),
        WAIT,
        "the replay",
    );
    b.wait_for(
        &format!("{} === 'yes'", text_of(&format!("{letter} td.replayed"))),
        WAIT,
        "the dead letter marked replayed",
    );
    b.fill("#state-key", "poison");
    b.click("#state-get");
    b.wait_for(
        &format!("{} === '1'", text_of("#state-results td.value")),
        WAIT,
        "the replayed record counted once",
    );
    b.screenshot(&shots.join("console-replayed.png"));

    // Stop: the job stays defined, stopped.
    b.eval("window.confirm = () => true; 0");
    b.click(&format!("{row} button.stop"));
    b.wait_for(
        &format!("{} === 'stopped'", text_of(&format!("{row} td.status"))),
        WAIT,
        "the job to stop",
    );
    assert_eq!(s.job(&clicks)["status"], "stopped");

    // 200 jobs defined (stopped, so this machine need not run them): how long the page
    // takes to load and draw them.
    for i in 0..199 {
        let spec = json!({"id": format!("job-{i:03}"), "plugin": "logic@2", "topics": [clicks],
                          "stopped": true});
        let r = s.call("POST", "/v1/jobs", Some(TOKEN), spec.to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let started = Instant::now();
    b.goto(&format!("{base}/"));
    b.wait_for(
        "document.body.classList.contains('rendered') && \
         document.querySelectorAll('#jobs tbody tr[data-job]').length === 200",
        WAIT,
        "200 jobs drawn",
    );
    let wall = started.elapsed();
    let rendered_at = b.eval("window.consoleRenderedAt");
    eprintln!(
        "console with 200 jobs: drawn {rendered_at} ms after navigation start ({wall:?} \
         from the test's side, with the browser's round trips)"
    );
    b.screenshot(&shots.join("console-200-jobs.png"));
    b.eval("0");
    assert_eq!(b.page_errors(), Vec::<String>::new(), "errors on the page");
}
