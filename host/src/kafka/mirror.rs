//! The best-effort mirror of committed offsets to the Kafka consumer group, so that
//! kafka-consumer-groups and lag exporters see a job's progress. Redis stays the source of
//! truth: the mirror runs after the Redis commit, on a thread of its own, and its failures
//! are logged and counted, never acted on.
//!
//! Workers `offer` the offset of each committed batch; the thread commits the newest
//! offset of every partition that moved, at most every `EVERY`, with a synchronous commit
//! (librdkafka reports the outcome of asynchronous manual commits only through a callback
//! the event API does not deliver, so a failure would go unseen).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::consumer::SourceContext;
use crate::sync::Locked;

const EVERY: Duration = Duration::from_millis(500);
const WARN_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Pending {
    offsets: BTreeMap<(String, i32), i64>,
    stop: bool,
}

/// What workers hold: where to leave offsets for the mirror thread.
#[derive(Clone, Default)]
pub struct MirrorHandle {
    inner: Option<Arc<(Mutex<Pending>, Condvar)>>,
}

impl MirrorHandle {
    /// A handle that mirrors nothing (`--no-kafka-commit`).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// The partition's offset is committed in Redis up to `until`.
    pub fn offer(&self, topic: &str, partition: i32, until: i64) {
        if let Some(inner) = &self.inner {
            let (pending, wake) = &**inner;
            pending
                .locked()
                .offsets
                .insert((topic.to_owned(), partition), until);
            wake.notify_one();
        }
    }
}

pub struct Mirror {
    handle: MirrorHandle,
    thread: Option<JoinHandle<()>>,
    /// Receives once the thread has made its last commit.
    done: mpsc::Receiver<()>,
}

impl Mirror {
    /// `failures` counts the Kafka commits that failed (a metric).
    pub fn start(
        consumer: Arc<BaseConsumer<SourceContext>>,
        failures: Counter,
    ) -> std::io::Result<Mirror> {
        let inner = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let (finished, done) = mpsc::channel();
        let shared = inner.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-mirror".into())
            .spawn(move || {
                run(&consumer, &shared, &failures);
                let _ = finished.send(());
            })?;
        Ok(Mirror {
            handle: MirrorHandle { inner: Some(inner) },
            thread: Some(thread),
            done,
        })
    }

    pub fn handle(&self) -> MirrorHandle {
        self.handle.clone()
    }

    /// Commits what is pending one last time and stops. A commit stuck on an unreachable
    /// broker is not waited for beyond `patience`: the mirror is best effort.
    pub fn stop(mut self, patience: Duration) {
        if let Some(inner) = &self.handle.inner {
            inner.0.locked().stop = true;
            inner.1.notify_one();
        }
        if self.done.recv_timeout(patience).is_ok()
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
    }
}

fn run(
    consumer: &BaseConsumer<SourceContext>,
    inner: &(Mutex<Pending>, Condvar),
    failures: &Counter,
) {
    let (pending, wake) = inner;
    let mut last_warning: Option<Instant> = None;
    loop {
        let (batch, stopping) = {
            let mut p = pending.locked();
            if p.offsets.is_empty() && !p.stop {
                p = wake
                    .wait_timeout(p, EVERY)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            (std::mem::take(&mut p.offsets), p.stop)
        };
        if !batch.is_empty() {
            let mut tpl = TopicPartitionList::new();
            let mut built = Ok(());
            for ((topic, partition), offset) in &batch {
                built =
                    built.and(tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)));
            }
            if let Err(e) = built.and_then(|()| consumer.commit(&tpl, CommitMode::Sync)) {
                let n = failures.inc() + 1;
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        error = %e, failures = n,
                        "mirroring committed offsets to the Kafka group failed; Redis holds the \
                         offsets and nothing is lost, but Kafka lag tools show stale progress"
                    );
                }
            }
        }
        if stopping {
            return;
        }
        // Coalesce: let more batches commit before the next Kafka commit.
        std::thread::sleep(EVERY.min(Duration::from_millis(100)));
    }
}
