//! What a partition's worker and its relay share: the committed entries not yet
//! published, and whether a commit may go ahead (the outbox's bound, the relay's health).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::WARN_EVERY;
use crate::sync::Locked;

/// The state a partition's worker and its relay share: which entries are committed and
/// not yet published, and how the relay is doing.
pub struct Outbox {
    pub(super) state: Mutex<OutboxState>,
    pub(super) changed: Condvar,
    pub(super) max_bytes: u64,
    pub(super) gauge: prometheus_client::metrics::gauge::Gauge,
    /// The highest offset this partition's worker handed to a commit (or the stored one
    /// it started from; `i64::MIN`: none). A stored offset beyond it was committed by
    /// another worker: this host lost the partition (see [`Relay::still_owner`]).
    pub(super) submitted: AtomicI64,
}

#[derive(Default)]
pub(super) struct OutboxState {
    /// The relay fenced the previous owner and knows its position.
    pub(super) ready: bool,
    /// Entries at or above `next`: sequence number -> bytes.
    pub(super) pending: BTreeMap<u64, u64>,
    pub(super) pending_bytes: u64,
    /// The relay's position: every entry below it is published.
    pub(super) next: u64,
    /// Why the relay gave up (the job stops with it).
    pub(super) failure: Option<String>,
    /// The relay gave up for good (not because the partition moved on): the worker stops
    /// and fails the job even when no commit is waiting.
    pub(super) fatal: bool,
    /// The job is stopping: publish what is committed now, then stop (`drained`).
    pub(super) draining: bool,
    pub(super) drained: bool,
}

impl OutboxState {
    pub(super) fn add(&mut self, seq: u64, bytes: u64) {
        if seq >= self.next && self.pending.insert(seq, bytes).is_none() {
            self.pending_bytes += bytes;
        }
    }

    /// Everything below `next` is published.
    pub(super) fn published_below(&mut self, next: u64) {
        self.next = next;
        let kept = self.pending.split_off(&next);
        let done = std::mem::replace(&mut self.pending, kept);
        self.pending_bytes -= done.values().sum::<u64>();
    }
}

/// Why a commit may not go ahead.
#[derive(Debug)]
pub enum Blocked {
    /// The worker is stopping.
    Stopping,
    /// The relay gave up; the message says why and what to do.
    Failed(String),
}

impl Outbox {
    pub(super) fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.locked()
    }

    /// Waits for a change, or at most `tick`: stop flags and clocks change unannounced.
    pub(super) fn wait<'a>(
        &self,
        state: MutexGuard<'a, OutboxState>,
        tick: Duration,
    ) -> MutexGuard<'a, OutboxState> {
        self.changed
            .wait_timeout(state, tick)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    /// Waits until a batch whose entry has `bytes` may commit: the relay is ready and the
    /// outbox has room (an entry alone larger than the bound still goes, when the outbox
    /// is empty). Warns while Kafka keeps the relay from making room.
    pub fn wait_for_room(
        &self,
        bytes: u64,
        stopping: &dyn Fn() -> bool,
        what: &str,
    ) -> Result<(), Blocked> {
        let started = Instant::now();
        let mut warned: Option<Instant> = None;
        let mut state = self.lock();
        loop {
            // A fenced relay stops its worker first: that is a stop, not a failure.
            if stopping() {
                return Err(Blocked::Stopping);
            }
            if let Some(f) = &state.failure {
                return Err(Blocked::Failed(f.clone()));
            }
            let room = state.pending_bytes == 0 || state.pending_bytes + bytes <= self.max_bytes;
            if state.ready && room {
                return Ok(());
            }
            if started.elapsed() >= WARN_EVERY && warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                if state.ready {
                    tracing::warn!(
                        partition = what,
                        pending_bytes = state.pending_bytes,
                        bound = self.max_bytes,
                        waited_s = started.elapsed().as_secs(),
                        "the outbox is full: the relay cannot publish to Kafka (see its warnings); commits wait until it can, nothing is lost"
                    );
                } else {
                    tracing::warn!(
                        partition = what,
                        waited_s = started.elapsed().as_secs(),
                        "waiting for the exactly-once relay to take over the partition's transactional id (is Kafka reachable?)"
                    );
                }
                warned = Some(Instant::now());
            }
            state = self.wait(state, Duration::from_millis(100));
        }
    }

    /// Why the relay gave up for good, if it did.
    pub fn fatal(&self) -> Option<String> {
        let state = self.lock();
        state
            .fatal
            .then(|| state.failure.clone().unwrap_or_default())
    }

    /// A batch's entry committed.
    pub fn committed(&self, seq: u64, bytes: u64) {
        let mut state = self.lock();
        state.add(seq, bytes);
        self.gauge.set(state.pending_bytes as i64);
        drop(state);
        self.changed.notify_all();
    }

    /// The worker is about to commit up to `until`.
    pub fn submitting(&self, until: i64) {
        self.submitted.fetch_max(until, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(max_bytes: u64) -> Outbox {
        Outbox {
            state: Mutex::new(OutboxState::default()),
            changed: Condvar::new(),
            max_bytes,
            gauge: Default::default(),
            submitted: AtomicI64::new(i64::MIN),
        }
    }

    #[test]
    fn published_entries_leave_the_outbox_and_late_duplicates_are_ignored() {
        let mut s = OutboxState::default();
        s.add(1, 10);
        s.add(2, 20);
        s.add(2, 20);
        assert_eq!(s.pending_bytes, 30, "an entry counts once");
        s.published_below(2);
        assert_eq!((s.pending_bytes, s.pending.len()), (20, 1));
        s.add(1, 10);
        assert_eq!(
            s.pending_bytes, 20,
            "an entry below the position is published"
        );
        s.published_below(3);
        assert_eq!(s.pending_bytes, 0);
    }

    #[test]
    fn a_commit_waits_for_the_relay_and_for_room() {
        let o = outbox(100);
        let never = || false;
        let always = || true;
        // Not ready (the relay has not fenced the previous owner): a stopping worker leaves.
        assert!(matches!(
            o.wait_for_room(1, &always, "t/0"),
            Err(Blocked::Stopping)
        ));
        o.lock().ready = true;
        assert!(o.wait_for_room(60, &never, "t/0").is_ok());
        o.committed(1, 60);
        // Full: waits; a failure of the relay ends the wait with its reason.
        o.lock().failure = Some("Kafka refused the transactional id".into());
        match o.wait_for_room(60, &never, "t/0") {
            Err(Blocked::Failed(why)) => assert!(why.contains("transactional id")),
            other => panic!("expected the relay's failure, got {other:?}"),
        }
        o.lock().failure = None;
        // An entry larger than the bound goes when the outbox is empty.
        o.lock().published_below(2);
        assert!(o.wait_for_room(1000, &never, "t/0").is_ok());
    }
}
