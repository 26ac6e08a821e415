//! Takes commits off the workers' critical path. A worker hands its batch's commit over
//! and processes its next batch while Redis applies this one; it waits for the answer only
//! before it commits (or produces) the next. Commits of several partitions that are due at
//! the same moment share one script run: under the job scope they write one state hash, so
//! their writes are merged (one `HINCRBY` for a word three partitions counted) and every
//! batch is still fenced on its own stored offset inside the same atomic script.
//!
//! A merged run that finds any batch fenced or any write invalid writes nothing; its
//! batches then commit one by one, which applies the good ones and names the bad one.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{Head, RedisStore, ScriptReply, Write, merge_writes};
use crate::store::time::TimeWrites;
use crate::store::{CommitOutcome, StateScope, StateWrites, StoreError};
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
    fn head(&self) -> Head<'_> {
        Head {
            topic: &self.topic,
            partition: self.partition,
            expected: self.expected,
            until: self.until_offset,
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
    store: Arc<RedisStore>,
    lanes: Vec<Sender<Arc<Slot>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Committer {
    pub fn start(store: Arc<RedisStore>) -> Self {
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
                .spawn(move || run(&store, &rx));
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

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    /// Commits `requests` now, on this thread, together where the scope allows (what a
    /// commit thread does with the requests it found waiting).
    pub fn commit_now(&self, requests: &[CommitRequest]) -> Vec<Result<CommitOutcome, StoreError>> {
        let requests: Vec<&CommitRequest> = requests.iter().collect();
        commit_together(&self.store, &requests)
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
        self.store.commit_started(partition);
        let lane = partition.unsigned_abs() as usize % self.lanes.len().max(1);
        match self.lanes.get(lane) {
            Some(lane) => {
                if let Err(mpsc::SendError(slot)) = lane.send(slot) {
                    commit_round(&self.store, &[slot]);
                }
            }
            None => commit_round(&self.store, &[slot]),
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

fn run(store: &RedisStore, rx: &Receiver<Arc<Slot>>) {
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

fn commit_round(store: &RedisStore, round: &[Arc<Slot>]) {
    let mut guards: Vec<_> = round.iter().map(|s| s.request.locked()).collect();
    let requests: Vec<&CommitRequest> = guards.iter().filter_map(|g| g.as_ref()).collect();
    let answers = commit_together(store, &requests);
    drop(requests);
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
            key: store.keys().meta(),
            detail: "the commit was lost before it ran".to_owned(),
        }));
        *slot.answer.locked() = Some((result, answered));
        slot.answered.notify_all();
        store.commit_settled(slot.partition);
    }
}

/// Per request its outcome and the sequence number of its outbox entry (0: none).
type Answer = Result<(CommitOutcome, u64), StoreError>;

fn commit_together(store: &RedisStore, requests: &[&CommitRequest]) -> Vec<Answer> {
    if requests.len() > 1 && store.scope() == StateScope::Job {
        merged(store, requests)
    } else {
        requests.iter().map(|r| single(store, r)).collect()
    }
}

fn single(store: &RedisStore, request: &CommitRequest) -> Answer {
    let writes: Vec<(&str, Write<'_>)> = request
        .writes
        .iter()
        .map(|(k, w)| (k.as_str(), Write::from(w)))
        .collect();
    match store.run_commit(&[request.head()], &writes)? {
        ScriptReply::Committed { seqs } => {
            Ok((CommitOutcome::Committed, seqs.first().copied().unwrap_or(0)))
        }
        ScriptReply::Fenced { stored, .. } => Ok((CommitOutcome::Fenced { stored }, 0)),
    }
}

fn merged(store: &RedisStore, requests: &[&CommitRequest]) -> Vec<Answer> {
    if let Some(writes) = merge_writes(requests.iter().map(|r| &r.writes)) {
        let heads: Vec<Head<'_>> = requests.iter().map(|r| r.head()).collect();
        match store.run_commit(&heads, &writes) {
            Ok(ScriptReply::Committed { seqs }) => {
                return (0..requests.len())
                    .map(|i| Ok((CommitOutcome::Committed, seqs.get(i).copied().unwrap_or(0))))
                    .collect();
            }
            // Redis is away: every batch of the run gets the same answer, and retries.
            Err(StoreError::Unavailable { url, detail }) => {
                return requests
                    .iter()
                    .map(|_| {
                        Err(StoreError::Unavailable {
                            url: url.clone(),
                            detail: detail.clone(),
                        })
                    })
                    .collect();
            }
            // Fenced or invalid: nothing was written; one by one finds which batch.
            Ok(ScriptReply::Fenced { .. }) | Err(_) => {}
        }
    }
    requests.iter().map(|r| single(store, r)).collect()
}
