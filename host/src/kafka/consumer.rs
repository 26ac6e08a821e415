//! The Kafka side: one consumer per host process, partitions from the consumer group (or
//! a static list), each partition's messages split off into its own queue for its worker.
//!
//! Redis holds the offsets (`enable.auto.commit=false`); `mirror.rs` copies them to the
//! Kafka group afterwards, best effort, only so that Kafka's lag tools see progress.
//! On assignment every partition starts at its Redis offset; where
//! Redis has none, at the reset policy's position, except that a partition the job has
//! never seen while it has offsets for other partitions of the topic (the topic grew)
//! starts at the earliest offset.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;

use super::config::Client;
use super::errors::Diagnostics;
use crate::sync::Locked;

/// Where a partition without a stored offset starts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ResetPolicy {
    /// The oldest record still in the partition.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// Refuse to start the partition: an error names it.
    None,
}

impl ResetPolicy {
    fn librdkafka(self) -> &'static str {
        match self {
            ResetPolicy::Earliest => "earliest",
            ResetPolicy::Latest => "latest",
            ResetPolicy::None => "error",
        }
    }
}

/// What the job does when partitions come and go, on the thread that polls.
pub trait Assignments: Send + Sync {
    /// Sets each partition's start offset in `tpl` (and prepares its worker) before the
    /// assignment takes effect. Called outside librdkafka's rebalance callback (see
    /// [`assign_offered`]): it reads Redis, and may wait for it.
    fn assigning(&self, consumer: &Arc<BaseConsumer<SourceContext>>, tpl: &mut TopicPartitionList);
    /// Starts the workers of the partitions just assigned.
    fn assigned(&self, tpl: &TopicPartitionList);
    /// Stops the workers of `tpl` (finishing or abandoning their batch) before the
    /// partitions are released.
    fn revoking(&self, tpl: &TopicPartitionList);
}

#[derive(Default)]
pub struct SourceContext {
    assignments: OnceLock<Weak<dyn Assignments>>,
    /// Partitions the group gave this member and the rebalance callback handed on: the
    /// polling thread reads their offsets and assigns them right after the poll returns
    /// ([`assign_offered`]).
    offered: Mutex<Option<TopicPartitionList>>,
    /// Set when the job stops: an assignment that arrives while the consumer closes is
    /// taken at once, with no workers (librdkafka waits for it before it leaves).
    closing: AtomicBool,
    pub diagnostics: Diagnostics,
}

impl SourceContext {
    /// The job is stopping: see `closing`.
    pub fn closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.diagnostics.error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.diagnostics.log(level, fac, message);
    }
}

impl ConsumerContext for SourceContext {
    /// Under a cooperative protocol (classic `cooperative-sticky`, or KIP-848's
    /// `group.protocol=consumer`) `tpl` holds only the partitions that move: the others
    /// keep processing through the rebalance. Under an eager one it is the whole
    /// assignment.
    fn rebalance(
        &self,
        base: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assignments = self.assignments.get().and_then(Weak::upgrade);
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            // The assignment is taken after the callback returns: preparing a partition
            // reads its offset in Redis (and may wait out a Redis restart), which must not
            // happen inside librdkafka's callback. librdkafka waits for the assign call.
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                if !self.closing.load(Ordering::SeqCst) =>
            {
                let mut offered = self.offered.locked();
                match offered.as_mut() {
                    Some(list) => {
                        for e in tpl.elements() {
                            list.add_partition(e.topic(), e.partition());
                        }
                    }
                    None => *offered = Some(tpl.clone()),
                }
                tracing::debug!(partitions = %describe(tpl), "partitions offered");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = take(base, tpl, cooperative) {
                    tracing::warn!(error = %e, "taking partitions while closing");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                release(base, &assignments, tpl, cooperative);
                tracing::info!(partitions = %describe(tpl), owned = %owned(base), "partitions revoked");
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; releasing the partitions");
                release(base, &assignments, tpl, cooperative);
            }
        }
    }
}

/// Takes the partitions the group offered in the last poll (if any): prepares their
/// workers (reading their offsets in Redis), assigns them at those offsets, and starts
/// the workers. Called by the polling thread after each poll.
pub fn assign_offered(consumer: &Arc<BaseConsumer<SourceContext>>) {
    let Some(mut tpl) = consumer.context().offered.locked().take() else {
        return;
    };
    let assignments = consumer.context().assignments.get().and_then(Weak::upgrade);
    if let Some(a) = &assignments {
        a.assigning(consumer, &mut tpl);
    }
    let cooperative = matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    if let Err(e) = take(consumer, &tpl, cooperative) {
        tracing::error!(error = %e, "assigning partitions failed");
    }
    tracing::info!(partitions = %describe(&tpl), owned = %owned(consumer), "partitions assigned");
    if let Some(a) = &assignments {
        a.assigned(&tpl);
    }
}

fn take(
    base: &BaseConsumer<SourceContext>,
    tpl: &TopicPartitionList,
    cooperative: bool,
) -> Result<(), KafkaError> {
    if cooperative {
        base.incremental_assign(tpl)
    } else {
        base.assign(tpl)
    }
}

/// Stops the workers of `tpl`, then hands the partitions back.
fn release(
    base: &BaseConsumer<SourceContext>,
    assignments: &Option<Arc<dyn Assignments>>,
    tpl: &TopicPartitionList,
    cooperative: bool,
) {
    if let Some(a) = assignments {
        a.revoking(tpl);
    }
    let released = if cooperative {
        base.incremental_unassign(tpl)
    } else {
        base.unassign()
    };
    if let Err(e) = released {
        tracing::warn!(error = %e, partitions = %describe(tpl), "releasing partitions failed");
    }
}

/// The whole assignment after a (possibly incremental) change: what a log reader needs to
/// know which partitions a host holds now.
fn owned(base: &BaseConsumer<SourceContext>) -> String {
    base.assignment()
        .map_or_else(|e| format!("unknown ({e})"), |tpl| describe(&tpl))
}

pub fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Watches that every topic of a job exists until each has been seen once: a missing
/// topic does not fail a subscription, it just delivers nothing, so without this a job
/// whose topic was never created (or misspelt) would wait in silence.
pub struct TopicCheck {
    missing: Vec<String>,
    brokers: String,
    started: Instant,
    give_up: Duration,
    next_check: Instant,
    last_warning: Option<Instant>,
}

/// How often a missing topic is looked up, and how often the warning repeats.
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(1);
const TOPIC_WARN_EVERY: Duration = Duration::from_secs(10);

impl TopicCheck {
    pub fn new(topics: &[String], brokers: &str, give_up: Duration) -> Self {
        Self {
            missing: topics.to_vec(),
            brokers: brokers.to_owned(),
            started: Instant::now(),
            give_up,
            next_check: Instant::now(),
            last_warning: None,
        }
    }

    /// The topics not found yet.
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// How long the wait goes on before it gives up.
    pub fn left(&self) -> Duration {
        self.give_up.saturating_sub(self.started.elapsed())
    }

    /// Looks the missing topics up (at most once a second). `Ok(true)` once every topic
    /// exists; `Err` with the message for the user once the wait is over.
    pub fn poll<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<bool, String> {
        if self.missing.is_empty() {
            return Ok(true);
        }
        if Instant::now() < self.next_check {
            return Ok(false);
        }
        self.next_check = Instant::now() + TOPIC_CHECK_EVERY;
        let mut still = Vec::new();
        for topic in std::mem::take(&mut self.missing) {
            match consumer.fetch_metadata(Some(&topic), Duration::from_secs(5)) {
                Ok(md) => {
                    let exists = md.topics().iter().any(|t| {
                        t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                    });
                    if !exists {
                        still.push(topic);
                    }
                }
                // The broker did not answer: not a missing topic; the consumer's own
                // errors say why.
                Err(_) => still.push(topic),
            }
        }
        self.missing = still;
        if self.missing.is_empty() {
            if self.last_warning.is_some() {
                tracing::info!("every topic exists now; consuming");
            }
            return Ok(true);
        }
        let list = self.missing.join(", ");
        if self.started.elapsed() >= self.give_up {
            return Err(format!(
                "topic {list} does not exist on {}: waited {} s (--kafka-give-up-ms); create it, \
                 or check --topic, --output-topic and --brokers",
                self.brokers,
                self.started.elapsed().as_secs()
            ));
        }
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= TOPIC_WARN_EVERY)
        {
            let left = self.left().as_secs();
            tracing::warn!(
                brokers = %self.brokers,
                "topic {list} does not exist (yet); create it, or check --topic, --output-topic \
                 and --brokers; waiting, giving up in {left} s"
            );
            self.last_warning = Some(Instant::now());
        }
        Ok(false)
    }
}

pub struct SourceConfig<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub reset: ResetPolicy,
    /// Cap on fetched, unprocessed bytes per partition.
    pub max_inflight_kb: u64,
    /// Records librdkafka tries to keep prefetched per partition.
    pub prefetch_records: usize,
    pub overrides: &'a [(String, String)],
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "Kafka at {brokers} could not be reached for {waited_s} s ({attempts} attempts; last \
         error: {last}); check that the brokers run and are reachable from this host, that \
         --brokers (STREAMHOST_BROKERS) names them, and that security.protocol matches their \
         listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); or wait longer with \
         --kafka-give-up-ms"
    )]
    GaveUp {
        brokers: String,
        waited_s: u64,
        attempts: u32,
        last: String,
    },
    #[error("Kafka at {brokers}: {cause}")]
    Configuration { brokers: String, cause: String },
}

/// How often the start-up wait repeats its warning.
const BROKER_WARN_EVERY: Duration = Duration::from_secs(5);

/// Waits until the brokers answer a metadata request, bounded by `give_up` (returns Ok
/// early when `stop` is raised). One warning every few seconds with the attempt count
/// and the last reason; a configuration problem (credentials, certificates) ends the
/// wait at once.
pub fn wait_for_brokers(
    consumer: &BaseConsumer<SourceContext>,
    brokers: &str,
    give_up: Duration,
    stop: &std::sync::atomic::AtomicBool,
    waiting: &dyn Fn(Option<String>),
) -> Result<(), ConnectError> {
    let started = Instant::now();
    let mut attempts: u32 = 0;
    let mut last_warning: Option<Instant> = None;
    loop {
        // Errors reach the context through the consumer's queue: serve it (nothing is
        // subscribed or assigned yet, so no record can come).
        let _ = consumer.poll(Duration::ZERO);
        let error = match consumer.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(_) => {
                if attempts > 0 {
                    tracing::info!(brokers, attempts, "Kafka is reachable");
                    waiting(None);
                }
                return Ok(());
            }
            Err(e) => e,
        };
        attempts += 1;
        let _ = consumer.poll(Duration::ZERO);
        let context = &consumer.context().diagnostics;
        if let Some(cause) = context.configuration_error() {
            return Err(ConnectError::Configuration {
                brokers: brokers.to_owned(),
                cause: cause.to_owned(),
            });
        }
        let last = context.last_error().unwrap_or_else(|| error.to_string());
        if started.elapsed() >= give_up {
            return Err(ConnectError::GaveUp {
                brokers: brokers.to_owned(),
                waited_s: started.elapsed().as_secs(),
                attempts,
                last,
            });
        }
        let left = give_up.saturating_sub(started.elapsed()).as_secs();
        waiting(Some(format!(
            "Kafka at {brokers} does not answer ({last}); the job gives up in {left} s"
        )));
        if last_warning.is_none_or(|t| t.elapsed() >= BROKER_WARN_EVERY) {
            tracing::warn!(brokers, attempts, error = %last, "waiting for Kafka; giving up in {left} s");
            last_warning = Some(Instant::now());
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
    }
}

/// Creates the consumer and ties its rebalance callbacks to `assignments`.
pub fn consumer(
    config: &SourceConfig<'_>,
    assignments: Weak<dyn Assignments>,
) -> Result<Arc<BaseConsumer<SourceContext>>, KafkaError> {
    let mut c = super::config::client_config(Client::Consumer, config.brokers, &[], &[]);
    c.set("group.id", config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", config.reset.librdkafka())
        // Find partitions added to a topic within seconds rather than minutes.
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("enable.partition.eof", "false")
        .set("max.poll.interval.ms", "30000")
        // Per partition, since every partition has its own queue.
        .set(
            "queued.max.messages.kbytes",
            config.max_inflight_kb.to_string(),
        )
        // librdkafka refills a partition's queue below this many records (default
        // 100,000): small records cost far more than their size once unpacked.
        .set("queued.min.messages", config.prefetch_records.to_string())
        // ...and re-checks a full queue soon rather than after the default second.
        .set("fetch.queue.backoff.ms", "10")
        // A broker that holds an empty fetch for its whole wait (librdkafka's mock
        // cluster does) would add up to this much to every record's latency (default 500).
        .set("fetch.wait.max.ms", "100")
        // A fetch response stays in memory until its last record is consumed: keep one
        // response to a sixteenth of the cap, 1 MiB by default (a larger single record
        // still comes through).
        .set(
            "fetch.max.bytes",
            (config.max_inflight_kb * 64)
                .clamp(1 << 20, 1 << 30)
                .to_string(),
        );
    let kip848 = config
        .overrides
        .iter()
        .any(|(k, v)| k == "group.protocol" && v.eq_ignore_ascii_case("consumer"));
    if !kip848 {
        // The classic protocol: a host that dies loses its partitions to the others after
        // this long (librdkafka's default, 45 s, keeps them idle for too long), and a
        // rebalance moves only the partitions it must (cooperative-sticky, KIP-429), so
        // the others keep processing. Under KIP-848 (`-X group.protocol=consumer`) the
        // broker sets both, and librdkafka refuses them here.
        c.set("session.timeout.ms", "10000")
            .set("partition.assignment.strategy", "cooperative-sticky");
    }
    // The user's properties win over the host's defaults above (those of consumers).
    for (k, v) in config
        .overrides
        .iter()
        .filter(|(k, _)| Client::Consumer.takes(k))
    {
        c.set(k, v);
    }
    let consumer: Arc<BaseConsumer<SourceContext>> =
        Arc::new(c.create_with_context(SourceContext::default())?);
    let _ = consumer.context().assignments.set(assignments);
    Ok(consumer)
}
