//! Takes commits off the workers' critical path (step 5 of `pipeline::worker`). A worker
//! hands its batch's commit over and processes its next batch while the store applies this
//! one; it waits for the answer only before it commits (or produces) the next. Commits of
//! several partitions that are due at the same moment go to the store together
//! (`StateStore::commit_all`): Redis applies them in one script run with their writes
//! merged, each batch still fenced on its own stored offset (`store::redis::commit`).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::time::TimeWrites;
use super::{Commit, CommitOutcome, Committed, StateScope, StateStore, StateWrites, StoreError};
use crate::sync::Locked;

/// Most batches one script run commits: bounds the script's size and the time other
/// commands wait behind it.
const MAX_ROUND: usize = 64;

/// Threads committing under the partition scope (every partition has its own hash slot,
/// so their commits run side by side); the job scope has one, which merges.
const PARTITION_SCOPE_THREADS: usize = 4;

/// One batch's commit, owned: the worker goes on while it is applied.
#[derive(Debug)]
pub struct CommitRequest {
    pub topic: String,
    pub partition: i32,
    /// The stored offset the commit is fenced on (`None`: nothing stored yet).
    pub expected: Option<i64>,
    pub from_offset: i64,
    pub until_offset: i64,
    pub writes: StateWrites,
    /// The partition's clock, timers and expiries after the batch.
    pub time: TimeWrites,
    /// Its emits, encoded for the outbox (`--delivery exactly-once`; `None`: none).
    pub outbox: Option<Vec<u8>>,
    /// Set once committed: the sequence number of its outbox entry.
    pub outbox_seq: Option<u64>,
}

impl CommitRequest {
    fn as_commit(&self) -> Commit<'_> {
        Commit {
            topic: &self.topic,
            partition: self.partition,
            expected: self.expected,
            from_offset: self.from_offset,
            until_offset: self.until_offset,
            writes: &self.writes,
            time: &self.time,
            outbox: self.outbox.as_deref(),
        }
    }
}

struct Slot {
    partition: i32,
    request: Mutex<Option<CommitRequest>>,
    answer: Mutex<Option<(Result<CommitOutcome, StoreError>, Instant)>>,
    answered: Condvar,
}

/// A commit on its way; [`Ticket::wait`] gives its outcome.
pub struct Ticket {
    slot: Arc<Slot>,
    submitted: Instant,
}

impl Ticket {
    /// Whether Redis answered (then `wait` returns at once).
    pub fn is_answered(&self) -> bool {
        self.slot.answer.locked().is_some()
    }

    /// Blocks until Redis answered. Returns the outcome, how long the commit took from
    /// submission to answer, and the request (to submit again after a failure).
    pub fn wait(
        self,
    ) -> (
        Result<CommitOutcome, StoreError>,
        std::time::Duration,
        CommitRequest,
    ) {
        let mut answer = self.slot.answer.locked();
        let (result, at) = loop {
            match answer.take() {
                Some(a) => break a,
                None => {
                    answer = self
                        .slot
                        .answered
                        .wait(answer)
                        .unwrap_or_else(|p| p.into_inner())
                }
            }
        };
        drop(answer);
        // The commit threads only read the request; `wait` takes `self`, so it runs once.
        let request = self
            .slot
            .request
            .locked()
            .take()
            .expect("a ticket's request stays in its slot until the ticket's wait takes it");
        (
            result,
            at.saturating_duration_since(self.submitted),
            request,
        )
    }
}

/// The job's commit threads.
pub struct Committer {
    store: Arc<dyn StateStore>,
    lanes: Vec<Sender<Arc<Slot>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Committer {
    pub fn start(store: Arc<dyn StateStore>) -> Self {
        let count = match store.scope() {
            StateScope::Job => 1,
            StateScope::Partition => PARTITION_SCOPE_THREADS,
        };
        let mut lanes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = mpsc::channel();
            let store = store.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("commit-{i}"))
                .spawn(move || run(&*store, &rx));
            // Without the thread, submit() commits on the worker's thread instead.
            if let Ok(handle) = spawned {
                lanes.push(tx);
                threads.push(handle);
            }
        }
        Self {
            store,
            lanes,
            threads,
        }
    }

    /// Commits `requests` now, on this thread, together where the scope allows (what a
    /// commit thread does with the requests it found waiting).
    pub fn commit_now(&self, requests: &[CommitRequest]) -> Vec<Result<CommitOutcome, StoreError>> {
        let commits: Vec<Commit<'_>> = requests.iter().map(|r| r.as_commit()).collect();
        self.store
            .commit_all(&commits)
            .into_iter()
            .map(|r| r.map(|(outcome, _)| outcome))
            .collect()
    }

    /// Hands a commit over; the batch's partition counts as committing until it is answered.
    pub fn submit(&self, request: CommitRequest) -> Ticket {
        let partition = request.partition;
        let slot = Arc::new(Slot {
            partition,
            request: Mutex::new(Some(request)),
            answer: Mutex::new(None),
            answered: Condvar::new(),
        });
        let ticket = Ticket {
            slot: slot.clone(),
            submitted: Instant::now(),
        };
        self.store.barrier().started(partition);
        let lane = partition.unsigned_abs() as usize % self.lanes.len().max(1);
        match self.lanes.get(lane) {
            Some(lane) => {
                if let Err(mpsc::SendError(slot)) = lane.send(slot) {
                    commit_round(&*self.store, &[slot]);
                }
            }
            None => commit_round(&*self.store, &[slot]),
        }
        ticket
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.lanes.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(store: &dyn StateStore, rx: &Receiver<Arc<Slot>>) {
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(slot) => round.push(slot),
                Err(_) => break,
            }
        }
        commit_round(store, &round);
    }
}

fn commit_round(store: &dyn StateStore, round: &[Arc<Slot>]) {
    let mut guards: Vec<_> = round.iter().map(|s| s.request.locked()).collect();
    let commits: Vec<Commit<'_>> = guards
        .iter()
        .filter_map(|g| g.as_ref().map(CommitRequest::as_commit))
        .collect();
    let answers: Vec<Result<Committed, StoreError>> = store.commit_all(&commits);
    drop(commits);
    let mut results = Vec::with_capacity(answers.len());
    let mut answers = answers.into_iter();
    for guard in guards.iter_mut() {
        if let Some(request) = guard.as_mut()
            && let Some(answer) = answers.next()
        {
            results.push(answer.map(|(outcome, seq)| {
                request.outbox_seq = (seq > 0).then_some(seq);
                outcome
            }));
        }
    }
    drop(guards);
    let answered = Instant::now();
    for slot in round.iter().rev() {
        let result = results.pop().unwrap_or(Err(StoreError::Command {
            key: format!("partition {}", slot.partition),
            detail: "the store answered no commit for this batch".to_owned(),
        }));
        *slot.answer.locked() = Some((result, answered));
        slot.answered.notify_all();
        store.barrier().settled(slot.partition);
    }
}
