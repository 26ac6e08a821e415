//! The job's partitions: where each starts (its stored offset in Redis), the worker that
//! runs it, and what happens when the group assigns or revokes it (`Assignments`, called
//! by the polling thread outside librdkafka's rebalance callback).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;
use std::time::Duration;

use super::JobConfig;
use crate::kafka::bulk::KafkaPartition;
use crate::kafka::consumer::{Assignments, ResetPolicy, SourceContext};
use crate::kafka::mirror::MirrorHandle;
use crate::kafka::producer::Outlet;
use crate::pipeline::executor::{Executor, Processor};
use crate::pipeline::relay::{self, RelaySettings};
use crate::pipeline::worker::{Ownership, PartitionWorker};
use crate::retry::{Limit, Retry};
use crate::runtime::{InstanceSettings, Runner};
use crate::store::committer::Committer;
use crate::store::redis::RedisStore;
use crate::store::{StateStore, StoreError};
use crate::sync::Locked;
use crate::telemetry::progress::Progress;

type Key = (String, i32);

pub(super) struct Running {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) thread: JoinHandle<()>,
}

pub(super) struct Shared {
    pub(super) config: JobConfig,
    pub(super) metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub(super) store: Arc<RedisStore>,
    pub(super) committer: Arc<Committer>,
    pub(super) sink: Arc<Outlet>,
    /// `--delivery exactly-once`: what each partition's relay is started with.
    pub(super) relay: Option<RelaySettings>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) failure: Mutex<Option<String>>,
    /// Failures reported by worker threads.
    pub(super) failures: Arc<Mutex<Vec<String>>>,
    pub(super) progress: Arc<Progress>,
    /// Set once the consumer exists (the mirror commits through it).
    pub(super) mirror: Mutex<MirrorHandle>,
    pub(super) prepared: Mutex<Vec<PartitionWorker>>,
    pub(super) running: Mutex<HashMap<Key, Running>>,
}

impl Shared {
    pub(super) fn fail(&self, message: String) {
        tracing::error!("{message}");
        let mut failure = self.failure.locked();
        failure.get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Where a partition starts, and the stored offset its first commit is fenced on.
    fn start_of(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        topic: &str,
        partition: i32,
    ) -> Result<(Offset, Option<i64>), String> {
        let stored = self.stored_offsets(consumer, topic, partition)?;
        if let Some(&offset) = stored.get(&partition) {
            return Ok((Offset::Offset(offset), Some(offset)));
        }
        if !stored.is_empty() {
            tracing::info!(
                topic,
                partition,
                "no offset stored for this partition yet, though the group has offsets of other partitions of the topic (a partition added to the topic, or one that never had a record committed): starting at the earliest offset"
            );
            return Ok((Offset::Beginning, None));
        }
        match self.config.settings.offset_reset {
            ResetPolicy::Earliest => Ok((Offset::Beginning, None)),
            ResetPolicy::Latest => Ok((Offset::End, None)),
            ResetPolicy::None => Err(format!(
                "no offset stored for group {} topic {topic} partition {partition} (Redis key {}) and \
                 --offset-reset is none; set one with `host offsets set`, or use --offset-reset earliest|latest",
                self.config.group,
                self.store.keys().offsets(topic, partition),
            )),
        }
    }

    /// The topic's stored offsets (under the partition scope, of the partitions Kafka
    /// knows, each in a hash of its own); an unreachable Redis is waited for as a commit
    /// waits (up to --redis-give-up-ms), so an assignment during a Redis restart does not
    /// fail.
    fn stored_offsets(
        &self,
        consumer: &BaseConsumer<SourceContext>,
        topic: &str,
        partition: i32,
    ) -> Result<std::collections::BTreeMap<i32, i64>, String> {
        let partitions = match self.store.scope() {
            crate::store::StateScope::Job => Vec::new(),
            crate::store::StateScope::Partition => {
                let mut known = topic_partitions(consumer, topic);
                if !known.contains(&partition) {
                    known.push(partition);
                }
                known
            }
        };
        let policy = self.config.settings.error_policy();
        let stopping = || self.stop.load(Ordering::SeqCst);
        let mut retry = Retry::new(policy.backoff, Limit::For(policy.redis_give_up), &stopping);
        loop {
            let e = match self.store.offsets(topic, &partitions) {
                Ok(stored) => return Ok(stored),
                Err(e @ StoreError::Unavailable { .. }) => e,
                Err(e) => return Err(format!("reading the stored offsets of {topic}: {e}")),
            };
            let announce = |pause| tracing::warn!(topic, error = %e, "reading stored offsets; retrying in {pause:?}");
            if let Err(halt) = retry.again(announce) {
                return Err(format!(
                    "reading the stored offsets of {topic}: {e} ({halt})"
                ));
            }
        }
    }

    fn prepare(
        &self,
        consumer: &Arc<BaseConsumer<SourceContext>>,
        topic: &str,
        partition: i32,
    ) -> Result<Offset, String> {
        let (offset, expected) = self.start_of(consumer, topic, partition)?;
        if self.store.scope() == crate::store::StateScope::Partition
            && let Err(e) = self.store.register_partition(partition)
        {
            // Only reads outside batches (the console, `host state`) need it.
            tracing::warn!(topic, partition, error = %e, "recording the partition's state for readers");
        }
        let source = KafkaPartition::open(consumer, topic, partition)?;
        let settings = InstanceSettings {
            store: self.store.clone() as Arc<dyn StateStore>,
            partition: Some(partition),
            config: self.config.plugin_config.clone(),
        };
        let (generation, plugin) = self.config.plugin.current();
        let processor = if let Some(native) = &self.config.native {
            Processor::Native(native())
        } else {
            let mut runner = Runner::new(plugin, settings);
            runner.warm_up().map_err(|e| e.to_string())?;
            Processor::Plugin(runner)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let relay = match &self.relay {
            Some(settings) => Some(
                relay::start(
                    settings,
                    self.store.clone(),
                    (topic, partition),
                    expected,
                    stop.clone(),
                    self.metrics.clone(),
                )
                .map_err(|e| format!("cannot start the relay of {topic}/{partition}: {e}"))?,
            ),
            None => None,
        };
        let mut exec = Executor::new(
            topic,
            partition,
            &self.config.job,
            processor,
            self.config.settings.error_policy(),
            self.store.clone() as Arc<dyn StateStore>,
            self.sink.clone(),
        )
        .with_time(self.config.settings.time.clone());
        exec.metrics = self.metrics.clone();
        exec.progress = self.progress.clone();
        exec.stop = stop;
        exec.job_stop = self.stop.clone();
        exec.plugin_slot = self
            .config
            .native
            .is_none()
            .then(|| self.config.plugin.clone());
        exec.generation = generation;
        self.prepared.locked().push(PartitionWorker {
            exec,
            source,
            pending: Default::default(),
            in_flight: None,
            committer: self.committer.clone(),
            outlet: self.sink.clone(),
            limits: self.config.settings.batch_limits(),
            reset: self.config.settings.offset_reset,
            expected,
            mirror: self.mirror.locked().clone(),
            relay,
            ownership: match self.config.partitions {
                Some(_) => Ownership::Static,
                None => Ownership::Group,
            },
            group: self.config.group.clone(),
        });
        Ok(offset)
    }

    pub(super) fn stop_workers(&self, which: impl Fn(&Key) -> bool) {
        let taken: Vec<(Key, Running)> = {
            let mut running = self.running.locked();
            let keys: Vec<Key> = running.keys().filter(|k| which(k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| running.remove(&k).map(|r| (k, r)))
                .collect()
        };
        for (_, r) in &taken {
            r.stop.store(true, Ordering::SeqCst);
        }
        for ((topic, partition), r) in taken {
            if r.thread.join().is_err() {
                self.fail(format!("the worker of {topic}/{partition} panicked"));
            }
        }
    }
}

impl Assignments for Shared {
    fn assigning(&self, consumer: &Arc<BaseConsumer<SourceContext>>, tpl: &mut TopicPartitionList) {
        let parts: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic, partition) in parts {
            match self.prepare(consumer, &topic, partition) {
                Ok(offset) => {
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                        self.fail(format!(
                            "{topic}/{partition}: cannot set the start offset: {e}"
                        ));
                    }
                }
                Err(e) => self.fail(e),
            }
        }
    }

    fn assigned(&self, _tpl: &TopicPartitionList) {
        let prepared: Vec<PartitionWorker> = std::mem::take(&mut *self.prepared.locked());
        let mut running = self.running.locked();
        for worker in prepared {
            let key = (worker.exec.topic.clone(), worker.exec.partition);
            let stop = worker.exec.stop.clone();
            let job_stop = self.stop.clone();
            let failure = FailureSink {
                stop: job_stop,
                failures: self.failures.clone(),
            };
            let name = format!("{}-{}", worker.exec.topic, worker.exec.partition);
            let thread = std::thread::Builder::new().name(name).spawn(move || {
                if let Err(e) = worker.run() {
                    failure.report(e.to_string());
                }
            });
            match thread {
                Ok(thread) => {
                    running.insert(key, Running { stop, thread });
                }
                Err(e) => {
                    drop(running);
                    self.fail(format!("cannot start a worker thread: {e}"));
                    return;
                }
            }
        }
    }

    fn revoking(&self, tpl: &TopicPartitionList) {
        let revoked: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        self.stop_workers(|k| revoked.contains(k));
        self.prepared.locked().clear();
    }
}

/// Lets a worker thread report a failure without holding the job's shared state: the
/// message goes to the log and the job's list of failures, and the job's stop flag is
/// raised (only this job's: other jobs of a `host serve` go on).
struct FailureSink {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl FailureSink {
    fn report(&self, message: String) {
        tracing::error!("{message}");
        self.failures.locked().push(message);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The topic's partitions as the consumer's metadata has them (empty if unknown).
pub(super) fn topic_partitions(consumer: &BaseConsumer<SourceContext>, topic: &str) -> Vec<i32> {
    match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
        Ok(md) => md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
        Err(e) => {
            tracing::warn!(topic, error = %e, "reading the topic's partitions");
            Vec::new()
        }
    }
}
