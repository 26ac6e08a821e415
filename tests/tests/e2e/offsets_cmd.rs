//! `host offsets show|set|reset` against a running and a stopped job, on Apache Kafka,
//! whose end offsets are exact.

use std::time::Duration;

use serde_json::Value;
use streamhost_tests::kafka::{Kafka, unique};
use streamhost_tests::services::{Host, Redis, create_topic, produce, producer};
use streamhost_tests::{host, run_args, text_values};

const MINUTE: Duration = Duration::from_secs(60);

struct Env {
    redis: Redis,
    brokers: String,
    /// The job's group (and so its job id).
    group: String,
    cache: tempfile::TempDir,
}

impl Env {
    fn offsets(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["offsets"];
        all.extend_from_slice(args);
        let redis = self.redis.url();
        all.extend_from_slice(&[
            "--group",
            &self.group,
            "--brokers",
            &self.brokers,
            "--redis",
            &redis,
        ]);
        host(&all, self.cache.path())
    }

    fn show(&self) -> Vec<(i64, i64, i64)> {
        let out = self.offsets(&["show", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r["committed"].as_i64().unwrap_or(-1),
                    r["end"].as_i64().unwrap(),
                    r["lag"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    }
}

#[test]
fn show_set_and_reset() {
    let words = unique("words");
    let env = Env {
        redis: Redis::start(),
        brokers: Kafka::shared().brokers(),
        group: unique("g"),
        cache: tempfile::tempdir().unwrap(),
    };
    let g = &env.group;
    create_topic(&env.brokers, &words, 2);
    let p = producer(&env.brokers);
    produce(&p, &words, 0, &text_values(1, 50));
    produce(&p, &words, 1, &text_values(2, 50));

    let args = run_args(
        &env.brokers,
        &env.redis.url(),
        &words,
        g,
        &["--partitions", "0,1"],
    );
    let mut job = Host::spawn(&args, env.cache.path());
    job.wait_for(MINUTE, "the job to catch up", || {
        env.redis.offsets(g, &words) == [(0, 50), (1, 50)].into()
    });
    assert_eq!(env.show(), vec![(50, 50, 0), (50, 50, 0)]);

    // Moving offsets under a running job is refused, unless forced.
    let refused = env.offsets(&["set", "--topic", &words, "--to", "10"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("group {g} has 1 live member(s)")) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        env.redis.offsets(g, &words),
        [(0, 50), (1, 50)].into(),
        "nothing moved"
    );
    let forced = env.offsets(&["set", "--topic", &words, "--to", "50", "--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );

    job.signal(libc::SIGTERM);
    assert!(job.wait(MINUTE).success());

    let set = env.offsets(&["set", "--topic", &words, "--partition", "0", "--to", "10"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert_eq!(env.show(), vec![(10, 50, 40), (50, 50, 0)]);
    // Moved back, partition 0 starts its watermark again; partition 1 keeps its.
    let clocks = env
        .redis
        .hgetall(&format!("streamhost:{{{g}}}:clock:{g}:{words}"));
    assert_eq!(
        clocks.keys().collect::<Vec<_>>(),
        ["1"],
        "partition 0's clock is gone: {clocks:?}"
    );

    assert!(env.offsets(&["reset", "--topic", &words]).status.success());
    assert_eq!(env.show(), vec![(0, 50, 50), (0, 50, 50)]);

    assert!(
        env.offsets(&["set", "--topic", &words, "--to", "latest"])
            .status
            .success()
    );
    assert_eq!(env.show(), vec![(50, 50, 0), (50, 50, 0)]);

    let bad = env.offsets(&["set", "--topic", &words, "--to", "-3"]);
    assert_eq!(bad.status.code(), Some(2), "a bad offset is a usage error");
}

/// `--to latest` never moves a committed offset backwards without `--force`: an end offset
/// below the committed one means the broker answered wrong (some brokers do) or the topic
/// was recreated. `show` says the lag is unknown then.
#[test]
fn latest_below_the_committed_offset_is_refused_and_shown_as_unknown_lag() {
    let words = unique("words");
    let env = Env {
        redis: Redis::start_in_memory(),
        brokers: Kafka::shared().brokers(),
        group: unique("g"),
        cache: tempfile::tempdir().unwrap(),
    };
    let g = &env.group;
    create_topic(&env.brokers, &words, 1);
    produce(&producer(&env.brokers), &words, 0, &text_values(3, 20));
    // Committed past the broker's end, as after a wrong end offset or a recreated topic.
    let set = env.offsets(&["set", "--topic", &words, "--to", "1000"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );

    let refused = env.offsets(&["set", "--topic", &words, "--to", "latest"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("would move offsets backwards")
            && err.contains(&format!("{words}/0: end"))
            && err.contains("committed 1000")
            && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        env.redis.offsets(g, &words),
        [(0, 1000)].into(),
        "nothing moved"
    );

    let shown = env.offsets(&["show"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with(words.as_str()))
        .unwrap_or_default();
    assert!(
        row.trim_end().ends_with('?'),
        "lag shown as unknown: {text}"
    );
    assert!(text.contains("the lag is unknown"), "{text}");
    let rows = env.show();
    assert_eq!(
        (rows[0].0, rows[0].2),
        (1000, -1),
        "JSON lag is null: {rows:?}"
    );

    let forced = env.offsets(&["set", "--topic", &words, "--to", "latest", "--force"]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stderr).contains("warning: moving offsets backwards"));
    assert!(env.redis.offsets(g, &words)[&0] < 1000);
}

/// A group no job ran is an error that names it; a topic the group once read that no
/// longer exists (here: mistyped by a job that then stopped) is skipped by name, and the
/// other topics are still shown.
#[test]
fn an_unknown_group_is_named_and_a_missing_topic_is_skipped() {
    let (words, wrods) = (unique("words"), unique("wrods"));
    let env = Env {
        redis: Redis::start(),
        brokers: Kafka::shared().brokers(),
        group: unique("g"),
        cache: tempfile::tempdir().unwrap(),
    };
    let none = env.offsets(&["show"]);
    assert_eq!(none.status.code(), Some(1));
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(
        err.contains(&format!("group {} has no offsets in Redis", env.group)),
        "{err}"
    );

    create_topic(&env.brokers, &words, 1);
    produce(&producer(&env.brokers), &words, 0, &text_values(3, 20));
    let topics = format!("{words},{wrods}");
    let args = run_args(
        &env.brokers,
        &env.redis.url(),
        &topics,
        &env.group,
        &["--partitions", "0", "--kafka-give-up-ms", "2000"],
    );
    let mut job = Host::spawn(&args, env.cache.path());
    assert!(
        !job.wait(MINUTE).success(),
        "the mistyped topic stops the job"
    );

    let out = env.offsets(&["show"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&words), "{stdout}");
    assert!(
        stderr.contains(&format!("skipped topic {wrods}: it does not exist")),
        "{stderr}"
    );
}
