//! The Redis key layout. Every key one commit touches carries the same hash tag (the part
//! in braces), so on a Redis Cluster the commit script runs in one slot and stays atomic:
//!
//! * `--state-scope job` (tag `{JOB}`): all partitions share one state hash.
//!   - `streamhost:{JOB}:offsets:GROUP:TOPIC`: HASH, field = partition, value = next offset.
//!   - `streamhost:{JOB}:state`: HASH of the job's state; integers as decimal strings.
//! * `--state-scope partition` (tag `{JOB:P}` per partition number P): each partition
//!   number has its own state and offsets, in its own slot, so a job spreads over shards.
//!   - `streamhost:{JOB:P}:offsets:GROUP:TOPIC`: HASH with the one field P.
//!   - `streamhost:{JOB:P}:state`: HASH of partition P's state.
//! * Per partition, beside its offsets (same tag as the offsets):
//!   - `streamhost:{TAG}:clock:GROUP:TOPIC`: HASH, field = partition, value =
//!     `max-event-time,watermark` (ms; empty when unknown).
//!   - `streamhost:{TAG}:timers:GROUP:TOPIC:P:event` and `...:processing`: ZSET of the
//!     partition's pending timers (`t` + timer key) and expiries (`x` + state key), scored
//!     by when they are due (ms).
//! * Per job, whatever the scope (tag `{JOB}`):
//!   - `streamhost:{JOB}:meta`: HASH: `layout` (2), `scope` (job|partition), and when the
//!     job was migrated from the old layout, `migrated_at_ms`.
//!   - `streamhost:{JOB}:topics:GROUP`: SET of the topics the group has offsets for.
//!   - `streamhost:{JOB}:members:GROUP`: ZSET of the running hosts, scored by when their
//!     heartbeat expires (ms since the epoch), so `host offsets set` can refuse to move
//!     offsets under a live job.
//!   - `streamhost:{JOB}:partitions`: SET of the partition numbers that have state of
//!     their own (`--state-scope partition`), so reads outside a batch find their hashes.
//!   - `streamhost:{TAG}:outbox:GROUP:TOPIC:P` (`--delivery exactly-once`): STREAM of the
//!     partition's committed emits not yet published, entry `SEQ-0` = one batch's
//!     offset range and records; `streamhost:{TAG}:outbox-seq:GROUP:TOPIC`: HASH, field = partition,
//!     value = the last `SEQ` handed out (see `outbox`).
//! * A dead-letter replay's cursor is kept like a partition's offset, under the
//!   pseudo-topic `dlq-replay:DLQ_TOPIC:DLQ_PARTITION` (see `pipeline::replay`).
//!
//! The layout before hash tags (layout 1) is in `legacy`; `migrate` moves it.

use crate::store::{StateScope, StoreError};

/// The keys of one job's offsets and state.
#[derive(Debug, Clone)]
pub struct Keys {
    pub job: String,
    pub group: String,
    pub scope: StateScope,
}

impl Keys {
    pub fn new(job: &str, group: &str, scope: StateScope) -> Keys {
        Keys {
            job: job.to_owned(),
            group: group.to_owned(),
            scope,
        }
    }

    fn tag(&self, partition: i32) -> String {
        match self.scope {
            StateScope::Job => format!("{{{}}}", self.job),
            StateScope::Partition => format!("{{{}:{partition}}}", self.job),
        }
    }

    /// The offsets hash that holds `partition`'s offset of `topic`.
    pub fn offsets(&self, topic: &str, partition: i32) -> String {
        format!(
            "streamhost:{}:offsets:{}:{topic}",
            self.tag(partition),
            self.group
        )
    }

    /// The hash that holds `partition`'s clock of `topic`.
    pub fn clock(&self, topic: &str, partition: i32) -> String {
        format!(
            "streamhost:{}:clock:{}:{topic}",
            self.tag(partition),
            self.group
        )
    }

    /// The sorted set of `partition`'s timers and expiries in `domain`.
    pub fn timers(
        &self,
        topic: &str,
        partition: i32,
        domain: crate::store::time::TimeDomain,
    ) -> String {
        format!(
            "streamhost:{}:timers:{}:{topic}:{partition}:{}",
            self.tag(partition),
            self.group,
            domain.as_str()
        )
    }

    /// The stream of `partition`'s emits waiting for the relay.
    pub fn outbox(&self, topic: &str, partition: i32) -> String {
        format!(
            "streamhost:{}:outbox:{}:{topic}:{partition}",
            self.tag(partition),
            self.group
        )
    }

    /// The hash that hands out `partition`'s outbox sequence numbers.
    pub fn outbox_seq(&self, topic: &str, partition: i32) -> String {
        format!(
            "streamhost:{}:outbox-seq:{}:{topic}",
            self.tag(partition),
            self.group
        )
    }

    /// The state hash `partition` reads and writes (`None`: outside a partition's batch).
    pub fn state(&self, partition: Option<i32>) -> Result<String, StoreError> {
        match (self.scope, partition) {
            (StateScope::Job, _) => Ok(format!("streamhost:{{{}}}:state", self.job)),
            (StateScope::Partition, Some(p)) => Ok(format!("streamhost:{}:state", self.tag(p))),
            (StateScope::Partition, None) => Err(StoreError::NoPartition),
        }
    }

    pub fn meta(&self) -> String {
        meta_key(&self.job)
    }

    pub fn topics(&self) -> String {
        format!("streamhost:{{{}}}:topics:{}", self.job, self.group)
    }

    pub fn partitions(&self) -> String {
        format!("streamhost:{{{}}}:partitions", self.job)
    }

    pub fn members(&self) -> String {
        format!("streamhost:{{{}}}:members:{}", self.job, self.group)
    }
}

pub fn meta_key(job: &str) -> String {
    format!("streamhost:{{{job}}}:meta")
}

/// Layout 1, written by releases before hash tags; read only to migrate it.
pub mod legacy {
    pub fn offsets(group: &str, topic: &str) -> String {
        format!("streamhost:{group}:offsets:{topic}")
    }

    pub fn state(job: &str) -> String {
        format!("streamhost:{job}:state")
    }

    pub fn members_pattern(group: &str) -> String {
        format!("streamhost:{group}:member:*")
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole key
/// when it has none.
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

#[cfg(test)]
mod tests {
    use super::{Keys, slot_of};
    use crate::store::StateScope;

    #[test]
    fn a_commit_stays_in_one_slot() {
        let job = Keys::new("wc", "g", StateScope::Job);
        let s = slot_of(&job.state(Some(0)).unwrap());
        for p in 0..8 {
            assert_eq!(slot_of(&job.offsets("words", p)), s);
            assert_eq!(slot_of(&job.clock("words", p)), s);
            assert_eq!(slot_of(&job.outbox("words", p)), s);
            assert_eq!(slot_of(&job.outbox_seq("words", p)), s);
            for d in crate::store::time::TimeDomain::ALL {
                assert_eq!(slot_of(&job.timers("words", p, d)), s);
            }
        }
        assert_eq!(slot_of(&job.meta()), s);
        let part = Keys::new("wc", "g", StateScope::Partition);
        let slots: std::collections::BTreeSet<u16> = (0..8)
            .map(|p| {
                let s = slot_of(&part.state(Some(p)).unwrap());
                assert_eq!(slot_of(&part.offsets("words", p)), s);
                assert_eq!(slot_of(&part.offsets("other", p)), s);
                assert_eq!(slot_of(&part.clock("words", p)), s);
                assert_eq!(slot_of(&part.outbox("words", p)), s);
                assert_eq!(slot_of(&part.outbox_seq("words", p)), s);
                let timers = part.timers("words", p, crate::store::time::TimeDomain::Event);
                assert_eq!(slot_of(&timers), s);
                s
            })
            .collect();
        assert_eq!(slots.len(), 8, "each partition has a slot of its own");
        assert!(part.state(None).is_err());
    }

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on redis-server 7.0.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        // An empty tag does not count: the whole key is hashed.
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("123456789"), 0x31C3);
    }
}
