//! The Redis store's commit script against a real redis-server: fencing, atomicity,
//! binary values, the key layout.

use std::sync::Arc;

use streamhost::batch::effects::Effects;
use streamhost::store::redis::RedisStore;
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
