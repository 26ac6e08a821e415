//! The executor under each error policy, with native logic that fails as scripted.

use super::*;
use crate::batch::BatchBuilder;
use crate::store::memory::MemoryStore;
use crate::sync::Locked;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Answers each call with the next scripted outcome (then succeeds), counting the
/// records it saw.
struct Scripted {
    outcomes: VecDeque<Option<ProcessError>>,
    seen: Arc<Mutex<Vec<usize>>>,
}

impl NativeLogic for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn process(&mut self, batch: &Batch) -> Result<Effects, ProcessError> {
        self.seen.locked().push(batch.records.len());
        match self.outcomes.pop_front().flatten() {
            Some(e) => Err(e),
            None => {
                let mut effects = Effects::new(1 << 20);
                effects
                    .add("records".into(), batch.records.len() as i64)
                    .map_err(|cause| ProcessError::Effects {
                        plugin: "scripted".into(),
                        cause,
                    })?;
                Ok(effects)
            }
        }
    }
}

fn retryable() -> Option<ProcessError> {
    Some(ProcessError::Retryable {
        plugin: "scripted".into(),
        message: "try again".into(),
    })
}

fn poison(index: u32) -> Option<ProcessError> {
    Some(ProcessError::Poison {
        plugin: "scripted".into(),
        index,
        message: "bad record".into(),
    })
}

fn executor(
    on_error: OnError,
    outcomes: Vec<Option<ProcessError>>,
) -> (Executor, Arc<Mutex<Vec<usize>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = ErrorPolicy {
        on_error,
        max_retries: 2,
        backoff: crate::retry::Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
        dlq_topic: Some("dead".into()),
        redis_give_up: Duration::from_secs(1),
        kafka_give_up: Duration::from_secs(1),
    };
    let exec = Executor::new(
        "t",
        0,
        "j",
        Processor::Native(Box::new(Scripted {
            outcomes: outcomes.into(),
            seen: seen.clone(),
        })),
        policy,
        Arc::new(MemoryStore::new()),
        Arc::new(Outlet::kept()),
    );
    (exec, seen)
}

fn batch(records: usize) -> Batch {
    let mut b = BatchBuilder::new("t", 0);
    for i in 0..records {
        let value = format!("r{i}");
        b.push(
            i as i64,
            None,
            None,
            Some(value.as_bytes()),
            std::iter::empty(),
        )
        .expect("record fits");
    }
    b.finish(None)
}

fn kept(exec: &Executor) -> Vec<OutputRecord> {
    exec.outlet.take_kept()
}

fn header<'a>(r: &'a OutputRecord, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| h.value.as_deref())
}

#[test]
fn a_retryable_failure_is_retried_and_the_success_kept() {
    let (mut exec, seen) = executor(OnError::Retry, vec![retryable(), retryable()]);
    let mut b = batch(3);
    let done = exec
        .process_with_policy(&mut b)
        .expect("ok")
        .expect("not stopped");
    assert!(!done.set_aside);
    assert_eq!(*seen.locked(), vec![3, 3, 3]);
    assert_eq!(done.effects.state.len(), 1);
}

#[test]
fn retry_gives_up_after_max_retries_with_the_error() {
    let (mut exec, seen) = executor(OnError::Retry, (0..5).map(|_| retryable()).collect());
    let err = exec
        .process_with_policy(&mut batch(2))
        .err()
        .expect("gave up");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    assert_eq!(seen.locked().len(), 3);
}

#[test]
fn skip_commits_the_range_without_its_effects() {
    let (mut exec, _) = executor(OnError::Skip, (0..5).map(|_| retryable()).collect());
    let done = exec
        .process_with_policy(&mut batch(2))
        .expect("ok")
        .expect("not stopped");
    assert!(done.set_aside);
    assert!(done.effects.state.is_empty() && done.effects.emits.is_empty());
    assert_eq!(exec.set_aside, 1);
}

#[test]
fn a_poison_record_is_dead_lettered_and_the_batch_runs_again_without_it() {
    let (mut exec, seen) = executor(OnError::Dlq, vec![poison(1)]);
    let mut b = batch(3);
    let done = exec
        .process_with_policy(&mut b)
        .expect("ok")
        .expect("not stopped");
    assert!(!done.set_aside);
    assert_eq!(*seen.locked(), vec![3, 2]);
    assert_eq!(
        (b.from_offset, b.until_offset),
        (0, 3),
        "the range is unchanged"
    );
    let dead = kept(&exec);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].topic.as_deref(), Some("dead"));
    assert_eq!(dead[0].value.as_deref(), Some(&b"r1"[..]));
    assert_eq!(header(&dead[0], dlq::SOURCE_OFFSET), Some(&b"1"[..]));
}

#[test]
fn stop_fails_at_the_first_error_and_a_poison_record_under_retry_stops_too() {
    let (mut exec, seen) = executor(OnError::Stop, vec![retryable()]);
    assert!(exec.process_with_policy(&mut batch(1)).is_err());
    assert_eq!(seen.locked().len(), 1);
    let (mut exec, _) = executor(OnError::Retry, vec![poison(0)]);
    let err = exec
        .process_with_policy(&mut batch(1))
        .err()
        .expect("stops");
    assert!(
        err.to_string().contains("use --on-error dlq or skip"),
        "{err}"
    );
}

#[test]
fn a_stop_during_the_backoff_abandons_the_batch() {
    let (mut exec, _) = executor(OnError::Retry, (0..5).map(|_| retryable()).collect());
    exec.policy.backoff =
        crate::retry::Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
    exec.job_stop.store(true, Ordering::SeqCst);
    assert!(
        exec.process_with_policy(&mut batch(1))
            .expect("no error")
            .is_none()
    );
}
