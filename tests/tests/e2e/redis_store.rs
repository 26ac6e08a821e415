//! The Redis store's commit script against a real redis-server: fencing, atomicity,
//! binary values, the key layout.

use std::sync::Arc;

use streamhost::batch::effects::Effects;
use streamhost::runtime::OutputRecord;
use streamhost::store::committer::{CommitRequest, Committer};
use streamhost::store::redis::RedisStore;
use streamhost::store::redis::outbox;
use streamhost::store::{Commit, CommitOutcome, StateStore, StoreError};
use streamhost_tests::services::{Redis, offsets_key};

fn commit(
    store: &RedisStore,
    e: &Effects,
    expected: Option<i64>,
    from: i64,
    until: i64,
) -> Result<CommitOutcome, StoreError> {
    store.commit(&Commit {
        topic: "t",
        partition: 2,
        expected,
        from_offset: from,
        until_offset: until,
        writes: &e.state,
        time: &e.time,
        outbox: None,
    })
}

/// Job `jb` reads topic `t` as group `grp`.
fn offsets(redis: &Redis) -> std::collections::BTreeMap<String, String> {
    redis.hgetall(&offsets_key("jb", "grp", "t"))
}

fn word(redis: &Redis) -> Option<String> {
    redis::cmd("HGET")
        .arg("streamhost:{jb}:state")
        .arg("word")
        .query(&mut redis.conn())
        .unwrap()
}

#[test]
fn fenced_commits_apply_nothing() {
    let redis = Redis::start_in_memory();
    let store = Arc::new(RedisStore::connect(&redis.url(), "grp", "jb").unwrap());
    let mut e = Effects::new(1 << 20);
    e.add("word".into(), 3).unwrap();
    e.set("bytes".into(), vec![0, 255, 10]).unwrap();
    assert_eq!(
        commit(&store, &e, None, 0, 10).unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(offsets(&redis), [("2".to_owned(), "10".to_owned())].into());
    assert_eq!(word(&redis), Some("3".to_owned()));
    assert_eq!(
        store.get_many(Some(0), &["bytes", "nope"]).unwrap(),
        vec![Some(vec![0, 255, 10]), None]
    );

    // A second "first batch" and a batch from a stale position are both fenced.
    assert_eq!(
        commit(&store, &e, None, 0, 10).unwrap(),
        CommitOutcome::Fenced { stored: Some(10) }
    );
    assert_eq!(
        commit(&store, &e, Some(5), 5, 12).unwrap(),
        CommitOutcome::Fenced { stored: Some(10) }
    );
    assert_eq!(word(&redis), Some("3".to_owned()), "nothing applied");
    assert_eq!(offsets(&redis), [("2".to_owned(), "10".to_owned())].into());

    assert_eq!(
        commit(&store, &e, Some(10), 10, 20).unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(word(&redis), Some("6".to_owned()));
}

#[test]
fn an_increment_of_a_non_integer_fails_the_whole_commit() {
    let redis = Redis::start_in_memory();
    let store = RedisStore::connect(&redis.url(), "grp", "jb").unwrap();
    let mut e = Effects::new(1 << 20);
    e.set("name".into(), b"alice".to_vec()).unwrap();
    commit(&store, &e, None, 0, 1).unwrap();

    let mut e = Effects::new(1 << 20);
    e.set("other".into(), b"x".to_vec()).unwrap();
    e.add("name".into(), 1).unwrap();
    let err = commit(&store, &e, Some(1), 1, 2).unwrap_err();
    assert!(
        matches!(&err, StoreError::NotAnInteger { key, .. } if key == "name"),
        "{err}"
    );
    let state = redis.hgetall("streamhost:{jb}:state");
    assert!(
        !state.contains_key("other"),
        "no write of the failed commit landed: {state:?}"
    );
    assert_eq!(offsets(&redis), [("2".to_owned(), "1".to_owned())].into());
}

#[test]
fn an_unreachable_redis_is_a_clear_error() {
    let port = streamhost_tests::services::free_port();
    let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "g", "g")
        .err()
        .expect("no server there");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("Redis at redis://127.0.0.1:{port} is unavailable")),
        "{msg}"
    );
    assert!(msg.contains("--redis"), "{msg}");
}

#[test]
fn an_increment_that_would_overflow_fails_the_whole_commit() {
    let redis = Redis::start_in_memory();
    let store = RedisStore::connect(&redis.url(), "grp", "jb").unwrap();
    let mut e = Effects::new(1 << 20);
    e.set("big".into(), b"9223372036854775800".to_vec())
        .unwrap();
    commit(&store, &e, None, 0, 1).unwrap();

    let mut e = Effects::new(1 << 20);
    e.add("small".into(), 1).unwrap();
    e.add("big".into(), 100).unwrap();
    let err = commit(&store, &e, Some(1), 1, 2).unwrap_err();
    assert!(
        matches!(&err, StoreError::Overflow { key, .. } if key == "big"),
        "{err}"
    );
    assert!(
        !redis.hgetall("streamhost:{jb}:state").contains_key("small"),
        "nothing of the commit landed"
    );
    assert_eq!(offsets(&redis), [("2".to_owned(), "1".to_owned())].into());
}

/// Redis, the store of job `jb` (group `grp`, state scope job) and its committer.
fn job_store() -> (Redis, Arc<RedisStore>, Committer) {
    let redis = Redis::start_in_memory();
    let store = Arc::new(RedisStore::connect(&redis.url(), "grp", "jb").unwrap());
    let committer = Committer::start(store.clone() as Arc<dyn StateStore>);
    (redis, store, committer)
}

fn request(partition: i32, expected: Option<i64>, until: i64, e: Effects) -> CommitRequest {
    CommitRequest {
        topic: "t".to_owned(),
        partition,
        expected,
        from_offset: expected.unwrap_or(0),
        until_offset: until,
        writes: e.state,
        time: e.time,
        outbox: None,
        outbox_seq: None,
    }
}

fn adds(pairs: &[(&str, i64)]) -> Effects {
    let mut e = Effects::new(1 << 20);
    for (k, d) in pairs {
        e.add((*k).to_owned(), *d).unwrap();
    }
    e
}

fn state(redis: &Redis, key: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg("streamhost:{jb}:state")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap()
}

#[test]
fn batches_of_several_partitions_commit_in_one_run_each_fenced_on_its_own() {
    let (redis, _store, committer) = job_store();
    let first: Vec<CommitRequest> = (0..4)
        .map(|p| request(p, None, 10, adds(&[("word", 1), (&format!("p{p}"), 5)])))
        .collect();
    let results = committer.commit_now(&first);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(CommitOutcome::Committed))),
        "{results:?}"
    );
    assert_eq!(
        state(&redis, "word").as_deref(),
        Some("4"),
        "increments of one key add up"
    );

    // Partition 2 comes from a stale position: it alone is fenced, the others apply.
    let second = vec![
        request(0, Some(10), 20, adds(&[("word", 10)])),
        request(1, Some(10), 20, adds(&[("word", 10)])),
        request(2, Some(3), 20, adds(&[("word", 1000), ("p2", 1000)])),
        request(3, Some(10), 20, adds(&[("word", 10)])),
    ];
    let results = committer.commit_now(&second);
    assert!(
        matches!(results[2], Ok(CommitOutcome::Fenced { stored: Some(10) })),
        "{results:?}"
    );
    for i in [0, 1, 3] {
        assert!(
            matches!(results[i], Ok(CommitOutcome::Committed)),
            "{results:?}"
        );
    }
    assert_eq!(state(&redis, "word").as_deref(), Some("34"));
    assert_eq!(
        state(&redis, "p2").as_deref(),
        Some("5"),
        "nothing of the fenced batch"
    );
    let stored = offsets(&redis);
    assert_eq!(stored.get("2").map(String::as_str), Some("10"));
    assert_eq!(stored.get("3").map(String::as_str), Some("20"));
}

#[test]
fn a_bad_increment_fails_only_its_own_batch_of_a_run() {
    let (redis, _store, committer) = job_store();
    let mut text = Effects::new(1 << 20);
    text.set("name".into(), b"abc".to_vec()).unwrap();
    assert!(matches!(
        committer.commit_now(&[request(0, None, 1, text)])[0],
        Ok(CommitOutcome::Committed)
    ));
    let results = committer.commit_now(&[
        request(0, Some(1), 2, adds(&[("name", 1), ("ok", 1)])),
        request(1, None, 5, adds(&[("ok", 2)])),
    ]);
    assert!(
        matches!(&results[0], Err(StoreError::NotAnInteger { key, .. }) if key == "name"),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Ok(CommitOutcome::Committed)),
        "{results:?}"
    );
    assert_eq!(state(&redis, "ok").as_deref(), Some("2"));
    assert_eq!(state(&redis, "name").as_deref(), Some("abc"));
    assert_eq!(offsets(&redis).get("0").map(String::as_str), Some("1"));
}

#[test]
fn writes_of_one_key_in_several_batches_apply_in_order() {
    let (redis, _store, committer) = job_store();
    let mut seed = Effects::new(1 << 20);
    seed.set("gone".into(), b"x".to_vec()).unwrap();
    committer.commit_now(&[request(9, None, 1, seed)]);
    let mut a = Effects::new(1 << 20);
    a.set("k".into(), b"5".to_vec()).unwrap();
    a.delete("gone".into()).unwrap();
    let mut b = adds(&[("k", 2), ("gone", 3)]);
    b.set("last".into(), b"b".to_vec()).unwrap();
    let mut c = Effects::new(1 << 20);
    c.set("last".into(), b"c".to_vec()).unwrap();
    let results = committer.commit_now(&[
        request(0, None, 1, a),
        request(1, None, 1, b),
        request(2, None, 1, c),
    ]);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(CommitOutcome::Committed))),
        "{results:?}"
    );
    assert_eq!(state(&redis, "k").as_deref(), Some("7"));
    assert_eq!(state(&redis, "gone").as_deref(), Some("3"));
    assert_eq!(state(&redis, "last").as_deref(), Some("c"));
}

#[test]
fn counters_beyond_what_a_double_holds_stay_exact_and_big_batches_commit() {
    let (redis, _store, committer) = job_store();
    // 2^53 + 1: a Lua number would round it.
    let mut big = Effects::new(1 << 20);
    big.set("big".into(), b"9007199254740993".to_vec()).unwrap();
    committer.commit_now(&[request(0, None, 1, big)]);
    // More keys than one command may take from the script's stack.
    let mut many = adds(&[("big", 2)]);
    for i in 0..5000 {
        many.add(format!("w{i}"), i).unwrap();
    }
    let results = committer.commit_now(&[
        request(0, Some(1), 2, many),
        request(1, None, 2, adds(&[("w4999", 1)])),
    ]);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(CommitOutcome::Committed))),
        "{results:?}"
    );
    assert_eq!(state(&redis, "big").as_deref(), Some("9007199254740995"));
    assert_eq!(state(&redis, "w4999").as_deref(), Some("5000"));
    assert_eq!(state(&redis, "w1234").as_deref(), Some("1234"));
    let fields: i64 = redis::cmd("HLEN")
        .arg("streamhost:{jb}:state")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(fields, 5001);
}

#[test]
fn a_read_waits_for_its_partitions_commit_in_flight() {
    let (_redis, store, committer) = job_store();
    for round in 1..=50i64 {
        let ticket = committer.submit(request(
            3,
            (round > 1).then_some(round - 1),
            round,
            adds(&[("n", 1)]),
        ));
        // The batch after it reads while the commit may still be on its way.
        let seen = store.get_many(Some(3), &["n"]).unwrap();
        assert_eq!(
            seen,
            vec![Some(round.to_string().into_bytes())],
            "round {round}"
        );
        let (outcome, _, _) = ticket.wait();
        assert!(matches!(outcome, Ok(CommitOutcome::Committed)));
    }
}

/// Timers, expiries and the clock commit with the offsets, through the fence, and a due
/// read finds them earliest first with what is left after them.
#[test]
fn timers_and_the_clock_commit_with_the_offsets_and_read_back_due() {
    use streamhost::store::time::{Clock, TimeDomain, TimeKey};
    let (redis, store, _committer) = job_store();
    let mut e = adds(&[("count", 1)]);
    for (k, at) in [("w1", 3000), ("w2", 1000), ("w3", 2000)] {
        e.time.set(TimeKey::timer(TimeDomain::Event, k), at);
    }
    e.time
        .set(TimeKey::expiry(TimeDomain::Processing, "count"), 50);
    let clock = Clock {
        max_event_time: Some(2500),
        watermark: Some(2200),
    };
    e.time.clock = Some(clock);
    assert_eq!(
        commit(&store, &e, None, 0, 10).unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.clock("t", 2).unwrap(), Some(clock));

    let due = store.due("t", 2, [Some(2000), Some(10)], 100).unwrap();
    let keys: Vec<(&str, i64)> = due
        .entries
        .iter()
        .map(|(k, at)| (k.key.as_str(), *at))
        .collect();
    assert_eq!(keys, [("w2", 1000), ("w3", 2000)]);
    assert_eq!(due.next, [Some(3000), Some(50)], "what is left after them");
    let page = store.due("t", 2, [Some(5000), None], 1).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.next[0], Some(1000), "a full page says more may be due");

    // A fenced commit moves no timer and no clock.
    let mut stale = Effects::new(1 << 20);
    stale.time.remove(TimeKey::timer(TimeDomain::Event, "w2"));
    stale.time.clock = Some(Clock::default());
    assert_eq!(
        commit(&store, &stale, Some(4), 4, 12).unwrap(),
        CommitOutcome::Fenced { stored: Some(10) }
    );
    let zset = "streamhost:{jb}:timers:grp:t:2:event";
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(zset)
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(members, ["tw2", "tw3", "tw1"]);
    assert_eq!(store.clock("t", 2).unwrap(), Some(clock));

    // The next batch fires w2: its removal commits with it.
    let mut next = Effects::new(1 << 20);
    next.time.remove(TimeKey::timer(TimeDomain::Event, "w2"));
    assert_eq!(
        commit(&store, &next, Some(10), 10, 12).unwrap(),
        CommitOutcome::Committed
    );
    let due = store.due("t", 2, [Some(i64::MAX), None], 100).unwrap();
    assert_eq!(due.entries.len(), 2);
    assert_eq!(
        store.clock("t", 2).unwrap(),
        Some(clock),
        "no clock given: kept"
    );
}

/// Partition 0's commit of `[expected, until)` adding `word`, with one emit in its outbox.
fn with_emit(expected: Option<i64>, until: i64, word: i64) -> CommitRequest {
    let mut r = request(0, expected, until, adds(&[("word", word)]));
    let emit = OutputRecord {
        topic: Some("out".to_owned()),
        key: Some(b"k".to_vec()),
        value: Some(until.to_string().into_bytes()),
        headers: Vec::new(),
    };
    r.outbox = Some(outbox::encode(&[emit], expected.unwrap_or(0), until));
    r
}

/// An outbox counter deleted by hand would hand out a sequence number the stream already
/// used: the whole commit fails with the repair in its message, nothing of it lands, and
/// once the counter is repaired as it says the same commit goes through.
#[test]
fn an_outbox_counter_reset_behind_its_stream_fails_the_whole_commit() {
    let (redis, store, committer) = job_store();
    for (expected, until) in [(None, 10), (Some(10), 20)] {
        let r = committer.commit_now(&[with_emit(expected, until, 1)]);
        assert!(matches!(r[0], Ok(CommitOutcome::Committed)), "{r:?}");
    }
    let counter = "streamhost:{jb}:outbox-seq:grp:t";
    let stream = "streamhost:{jb}:outbox:grp:t:0";
    let _: i64 = redis::cmd("HDEL")
        .arg(counter)
        .arg("0")
        .query(&mut redis.conn())
        .unwrap();

    let r = committer.commit_now(&[with_emit(Some(20), 30, 100)]);
    let Err(StoreError::Command { key, detail }) = &r[0] else {
        panic!("the commit was not refused: {r:?}");
    };
    assert_eq!(key, stream);
    assert!(
        detail.contains(counter) && detail.contains("XINFO STREAM"),
        "the message says which counter to repair and how: {detail}"
    );
    assert_eq!(state(&redis, "word").as_deref(), Some("2"), "no state");
    assert_eq!(offsets(&redis).get("0").map(String::as_str), Some("20"));
    let seqs = |store: &RedisStore| -> Vec<u64> {
        let entries = store.outbox_read("t", 0, 0, 100).unwrap();
        entries.iter().map(|e| e.seq).collect()
    };
    assert_eq!(seqs(&store), [1, 2], "no entry");

    // The repair the message describes: the counter at the stream's last id.
    let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query(&mut redis.conn())
        .unwrap();
    let last: String = redis::from_redis_value_ref(&info["last-generated-id"]).unwrap();
    let last = last.split('-').next().unwrap().to_owned();
    let _: i64 = redis::cmd("HSET")
        .arg(counter)
        .arg("0")
        .arg(&last)
        .query(&mut redis.conn())
        .unwrap();
    let r = committer.commit_now(&[with_emit(Some(20), 30, 100)]);
    assert!(matches!(r[0], Ok(CommitOutcome::Committed)), "{r:?}");
    assert_eq!(state(&redis, "word").as_deref(), Some("102"));
    assert_eq!(seqs(&store), [1, 2, 3]);
}
