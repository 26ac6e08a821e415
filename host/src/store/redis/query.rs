//! Reading a job's state from outside its batches (the console, `GET /v1/jobs/{id}/state`,
//! `host state`): one key, or the keys under a prefix, page by page.
//!
//! Only HGET and COUNT-bounded HSCAN steps reach Redis, never KEYS, HGETALL or a script:
//! each command touches a bounded part of the hash, so a read of a state of millions of
//! keys never holds up the commits queued behind it (Redis runs one command at a time).
//! A page is a few HSCAN steps; its cursor is Redis's own, so paging is stateless on our
//! side. HSCAN's guarantee carries over: every key present for the whole scan is returned
//! (a key may come twice if the hash is resized meanwhile; callers that count dedupe).

use super::RedisStore;
use crate::store::{StateScope, StoreError};

/// One HSCAN step's (field, value) pairs.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys examined per HSCAN step (Redis's COUNT hint).
const STEP: usize = 1000;

/// HSCAN steps per page at most: a rare prefix answers with an empty page and a cursor
/// rather than scanning the whole hash in one request.
const MAX_STEPS: usize = 20;

/// The largest page a caller may ask for.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub key: String,
    pub value: Vec<u8>,
    /// The partition whose state holds it (`--state-scope partition`).
    pub partition: Option<i32>,
}

/// One page of a scan; `cursor` is `None` when the scan is complete.
#[derive(Debug, Default)]
pub struct StatePage {
    pub entries: Vec<StateEntry>,
    pub cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad state cursor {0:?}: pass back the cursor of the previous page, or none to start")]
pub struct BadCursor(pub String);

/// Where a scan stands: which partition's hash (partition scope), and Redis's cursor in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    partition: Option<i32>,
    cursor: u64,
}

impl Position {
    fn parse(s: &str) -> Result<Position, BadCursor> {
        let bad = || BadCursor(s.to_owned());
        match s.split_once(':') {
            Some(("j", c)) => Ok(Position {
                partition: None,
                cursor: c.parse().map_err(|_| bad())?,
            }),
            Some((p, c)) if p.starts_with('p') => Ok(Position {
                partition: Some(p[1..].parse().map_err(|_| bad())?),
                cursor: c.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }

    fn render(self) -> String {
        match self.partition {
            None => format!("j:{}", self.cursor),
            Some(p) => format!("p{p}:{}", self.cursor),
        }
    }
}

/// HSCAN's MATCH pattern for "starts with `prefix`": glob characters escaped.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

impl RedisStore {
    /// Records that `partition` has state of its own (`--state-scope partition`), so that
    /// reads outside batches know which hashes to look in.
    pub fn register_partition(&self, partition: i32) -> Result<(), StoreError> {
        let key = self.keys.partitions();
        self.with_conn(&key, |c| {
            redis::cmd("SADD").arg(&key).arg(partition).query::<i64>(c)
        })?;
        Ok(())
    }

    /// The partitions with state of their own, in order (empty under the job scope).
    pub fn state_partitions(&self) -> Result<Vec<i32>, StoreError> {
        if self.keys.scope == StateScope::Job {
            return Ok(Vec::new());
        }
        let key = self.keys.partitions();
        let raw: Vec<String> =
            self.with_conn(&key, |c| redis::cmd("SMEMBERS").arg(&key).query(c))?;
        let mut partitions: Vec<i32> = raw.iter().filter_map(|p| p.parse().ok()).collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// The value of `key`: in the job's state, or under the partition scope in
    /// `partition`'s (every partition's when `None`, first match wins).
    pub fn state_get(
        &self,
        key: &str,
        partition: Option<i32>,
    ) -> Result<Option<StateEntry>, StoreError> {
        let partitions = match (self.keys.scope, partition) {
            (StateScope::Job, _) => vec![None],
            (StateScope::Partition, Some(p)) => vec![Some(p)],
            (StateScope::Partition, None) => {
                self.state_partitions()?.into_iter().map(Some).collect()
            }
        };
        for p in partitions {
            let hash = self.keys.state(p.or(Some(0)))?;
            let value: Option<Vec<u8>> =
                self.with_conn(&hash, |c| redis::cmd("HGET").arg(&hash).arg(key).query(c))?;
            if let Some(value) = value {
                return Ok(Some(StateEntry {
                    key: key.to_owned(),
                    value,
                    partition: p,
                }));
            }
        }
        Ok(None)
    }

    /// Up to about `limit` keys starting with `prefix`, from `cursor` (`None`: the start).
    /// A page may hold a few more than `limit` (an HSCAN step is not cut) or none at all
    /// while the cursor goes on (a rare prefix).
    pub fn state_scan(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Result<StatePage, BadCursor>, StoreError> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let partitions = self.state_partitions()?;
        let mut at = match cursor {
            Some(c) => match Position::parse(c) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            },
            None => Position {
                partition: partitions.first().copied(),
                cursor: 0,
            },
        };
        if self.keys.scope == StateScope::Partition && at.partition.is_none() {
            // No partition has recorded state yet.
            return Ok(Ok(StatePage::default()));
        }
        let pattern = prefix_pattern(prefix);
        let mut page = StatePage::default();
        for _ in 0..MAX_STEPS {
            let hash = self.keys.state(at.partition.or(Some(0)))?;
            let (next, pairs): (u64, Fields) = self.with_conn(&hash, |c| {
                redis::cmd("HSCAN")
                    .arg(&hash)
                    .arg(at.cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(STEP.max(limit))
                    .query(c)
            })?;
            page.entries
                .extend(pairs.into_iter().map(|(k, v)| StateEntry {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    value: v,
                    partition: at.partition,
                }));
            at.cursor = next;
            if next == 0 {
                // This hash is done: on to the next partition's, or the end.
                let following = at
                    .partition
                    .and_then(|p| partitions.iter().copied().find(|&q| q > p));
                match following {
                    Some(p) => {
                        at = Position {
                            partition: Some(p),
                            cursor: 0,
                        }
                    }
                    None => return Ok(Ok(page)),
                }
            }
            if page.entries.len() >= limit {
                break;
            }
        }
        page.cursor = Some(at.render());
        Ok(Ok(page))
    }
}

#[cfg(test)]
mod tests {
    use super::{Position, prefix_pattern};

    #[test]
    fn glob_characters_in_a_prefix_are_literal() {
        assert_eq!(prefix_pattern("user:"), "user:*");
        assert_eq!(prefix_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
    }

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        for p in [
            Position {
                partition: None,
                cursor: 17,
            },
            Position {
                partition: Some(3),
                cursor: 0,
            },
        ] {
            assert_eq!(Position::parse(&p.render()).unwrap(), p);
        }
        for junk in ["", "17", "x:1", "p:1", "j:-1", "pz:3"] {
            assert!(Position::parse(junk).is_err(), "{junk}");
        }
    }
}
