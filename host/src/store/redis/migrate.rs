//! The move from layout 1 (releases before hash tags: `streamhost:GROUP:offsets:TOPIC`,
//! `streamhost:JOB:state`) to the layout in `keys`, done by the first host of this
//! release that opens the job.
//!
//! Once and atomically: one script renames every hash and records the layout in the job's
//! meta hash, or does nothing because another host already did. Fenced: each old key is
//! left as a string, so a host of the old release that is somehow still running fails
//! its next commit with WRONGTYPE instead of writing beside the migrated data; and the
//! migration refuses to start while old hosts still heartbeat. Layout 1 only ever ran on
//! a single server (its commit spans two slots), so there is nothing to migrate on a
//! cluster.

use redis::{Script, Value};

use super::RedisStore;
use super::keys::{Keys, legacy};
use crate::store::{StateScope, StoreError};

const MIGRATE_SCRIPT: &str = include_str!("migrate.lua");

const TOMBSTONE: &str = "streamhost: moved by an upgrade to ";

/// Migrates `job`'s layout-1 data, if there is any. Returns the scope the job has now
/// (`None`: neither layout holds anything).
pub(super) fn from_layout_1(
    store: &RedisStore,
    group: &str,
    job: &str,
    wanted: Option<StateScope>,
) -> Result<Option<StateScope>, StoreError> {
    let old_state = legacy::state(job);
    let offsets_prefix = legacy::offsets(group, "");
    let topics: Vec<String> = scan(store, &format!("{offsets_prefix}*"))?
        .into_iter()
        .filter_map(|k| k.strip_prefix(&offsets_prefix).map(str::to_owned))
        .collect();
    let state_type: String =
        store.with_conn(&old_state, |c| redis::cmd("TYPE").arg(&old_state).query(c))?;
    let has_state = state_type == "hash";
    let mut old_topics = Vec::new();
    for topic in topics {
        let key = legacy::offsets(group, &topic);
        let t: String = store.with_conn(&key, |c| redis::cmd("TYPE").arg(&key).query(c))?;
        if t == "hash" {
            old_topics.push(topic);
        }
    }
    if old_topics.is_empty() && !has_state {
        return Ok(None);
    }
    if wanted == Some(StateScope::Partition) {
        return Err(StoreError::Config {
            what: "--state-scope partition".into(),
            detail: format!(
                "job {job} has offsets and state from an older release ({old_state}, \
                 {offsets_prefix}*), which are kept per job; start it once with \
                 --state-scope job (the default) to migrate them, or give the partitioned \
                 layout a new job name (--job)"
            ),
        });
    }
    let old_hosts = scan(store, &legacy::members_pattern(group))?;
    if !old_hosts.is_empty() {
        return Err(StoreError::Config {
            what: format!("the upgrade of job {job}"),
            detail: format!(
                "hosts of an older release still run group {group} (heartbeat keys {}); \
                 stop them, then start this release again: it migrates the job's offsets \
                 and state once",
                old_hosts.join(", ")
            ),
        });
    }
    let keys = Keys::new(job, group, StateScope::Job);
    let script = Script::new(MIGRATE_SCRIPT);
    let mut inv = script.key(keys.meta());
    inv.key(keys.topics())
        .key(&old_state)
        .key(keys.state(None)?)
        .arg(super::now_ms())
        .arg(TOMBSTONE);
    for topic in &old_topics {
        inv.key(legacy::offsets(group, topic))
            .key(keys.offsets(topic, 0))
            .arg(topic);
    }
    let reply: Vec<Value> = store.with_conn(&keys.meta(), |c| inv.invoke(c))?;
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    };
    match reply.first() {
        Some(Value::Int(1)) => {
            tracing::info!(
                job, group, hashes = text(reply.get(1)), topics = ?old_topics,
                "migrated the job's offsets and state from the layout of older releases"
            );
            Ok(Some(StateScope::Job))
        }
        Some(Value::Int(0)) => {
            let scope = text(reply.get(1));
            scope.parse().map(Some).map_err(|e| StoreError::Command {
                key: keys.meta(),
                detail: format!("field scope: {e}"),
            })
        }
        Some(Value::Int(2)) => Err(StoreError::Command {
            key: text(reply.get(1)),
            detail: format!(
                "job {job} has data in both the old layout ({old_state}) and the new one; \
                 nothing was migrated. Keep one: delete the keys of the layout you do not \
                 want (see docs/operating.md, \"Redis keys\")"
            ),
        }),
        other => Err(StoreError::Command {
            key: keys.meta(),
            detail: format!("unexpected reply from the migration script: {other:?}"),
        }),
    }
}

fn scan(store: &RedisStore, pattern: &str) -> Result<Vec<String>, StoreError> {
    store.with_conn(pattern, |c| {
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(500)
                .query(c)?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    })
}
