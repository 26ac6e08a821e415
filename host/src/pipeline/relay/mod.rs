//! `--delivery exactly-once`: the relay that publishes one partition's outbox in Kafka
//! transactions.
//!
//! The partition worker does not produce a batch's emits: its fenced commit writes them to
//! the partition's outbox in Redis together with the state and the offsets
//! (`store::redis::outbox`). This relay, one per partition worker, reads the outbox and
//! publishes it with a transactional producer whose `transactional.id` belongs to the
//! partition, and commits its position (the next outbox sequence number) to the Kafka
//! group `streamhost-relay.JOB.GROUP` *inside the same transaction*
//! (`send_offsets_to_transaction`): the broker makes the records and the position visible
//! together, or neither. Invariants:
//!
//! 1. an outbox entry exists iff its batch's offsets and state committed (one script);
//! 2. the relay group's position moves only with a committed transaction, so every entry
//!    below it was published exactly once, and none at or above it is visible;
//! 3. one producer per partition's `transactional.id` can commit: `init_transactions`
//!    fences the previous one (a crashed or paused host) and ends its open transaction;
//! 4. entries below the position are trimmed; the outbox holds only unpublished emits.
//!
//! Recovery, each time a partition is assigned: `init_transactions`, read the position,
//! trim below it, publish from it. A crash anywhere leaves either a committed transaction
//! (position moved) or an aborted or abandoned one (position unchanged; the next
//! `init_transactions` aborts it), never half of one.
//!
//! The relays of a host run their transactions side by side: on Apache Kafka transactions
//! of different transactional ids do not wait for each other. (Running them one at a time
//! only helped a broker that defers a commit while another transaction overlaps it, as
//! tansu does; on Kafka it cost a quarter of the exactly-once throughput, bench/run
//! delivery.)

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, config::RDKafkaLogLevel};
use rdkafka::{Offset, TopicPartitionList};

use crate::batch::effects::stamped_emits;
use crate::kafka::errors::QuietContext;
use crate::store::redis::RedisStore;
use crate::store::redis::outbox::Entry;
use crate::store::{StateStore, StoreError};
mod outbox;
mod transaction;

use transaction::{TxnError, classify};

use crate::retry::{Backoff, Limit, Retry};
use crate::sync::Locked;
use crate::telemetry::metrics::{Metrics, PartitionLabels};
use outbox::OutboxState;
pub use outbox::{Blocked, Outbox};

/// How a job delivers what its plugin emits.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Produce a batch's emits before its commit; a crash in between sends them again.
    #[default]
    AtLeastOnce,
    /// Commit a batch's emits to the Redis outbox with its state; a relay publishes them
    /// in Kafka transactions, once, to `read_committed` consumers.
    ExactlyOnce,
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Delivery::AtLeastOnce => "at-least-once",
            Delivery::ExactlyOnce => "exactly-once",
        })
    }
}

/// What every relay of a job shares.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub brokers: String,
    pub kafka: Vec<(String, String)>,
    pub output_topic: Option<String>,
    pub job: String,
    pub group: String,
    /// Shortest time between two transactions of one partition.
    pub interval: Duration,
    /// Most bytes of committed, unpublished emits per partition before commits wait.
    pub max_pending_bytes: u64,
}

impl RelaySettings {
    /// The Kafka group whose committed offsets are the relays' positions.
    pub fn relay_group(&self) -> String {
        format!("streamhost-relay.{}.{}", self.job, self.group)
    }

    pub fn transactional_id(&self, topic: &str, partition: i32) -> String {
        format!("{}{topic}.{partition}", self.transactional_id_prefix())
    }

    /// What every transactional id of the job's relays starts with: the prefix an ACL
    /// grants.
    pub fn transactional_id_prefix(&self) -> String {
        format!("streamhost-relay.{}.{}.", self.job, self.group)
    }
}

/// The relay producer's context: librdkafka's errors and logs through the host's
/// [`QuietContext`], failed deliveries counted (no future per record: a transaction's
/// records are many, and the commit reports a failed one as well).
#[derive(Default)]
struct RelayContext {
    quiet: QuietContext,
    failed: AtomicU64,
    last_failure: Mutex<Option<String>>,
}

impl ClientContext for RelayContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.quiet.log(level, fac, message);
    }
}

impl ProducerContext for RelayContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            *self.last_failure.locked() = Some(e.to_string());
        }
    }
}

type RelayProducer = ThreadedProducer<RelayContext>;

/// One transaction's records, as the producer takes them.
type Records<'a> = Vec<BaseRecord<'a, [u8], [u8]>>;

/// Most bytes of entries one transaction publishes.
const MAX_TRANSACTION_BYTES: usize = 16 << 20;

/// Threads handing one transaction's records to the producer.
const ENQUEUE_THREADS: usize = 2;

/// Entries read from Redis per request.
const READ_PAGE: usize = 256;

/// How long one call into the transactional producer waits before it looks at the stop
/// flag again (then it repeats the call, as librdkafka allows for retriable errors).
const CALL_SLICE: Duration = Duration::from_secs(2);

/// How often the relay looks into the outbox when no commit told it about an entry.
const IDLE_POLL: Duration = Duration::from_secs(1);

const WARN_EVERY: Duration = Duration::from_secs(5);

/// Pauses before a new transactional producer, before publishing an aborted transaction
/// again, and between reads of an unreachable Redis: the relay waits for as long as it
/// takes (the worker's commits wait at the outbox bound meanwhile).
const RESTART_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
const ABORT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
const REDIS_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));

/// A running relay; dropping it stops the relay and waits for it.
pub struct RelayHandle {
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RelayHandle {
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The job is stopping and its worker committed its last batch: publishes what the
    /// outbox holds in one last transaction (waiting up to `deadline`), so a stopped job
    /// leaves nothing unpublished. The relay stops then (or when dropped).
    pub fn finish(&self, deadline: Duration) {
        let started = Instant::now();
        let mut state = self.outbox.lock();
        state.draining = true;
        self.outbox.changed.notify_all();
        while !state.drained && state.failure.is_none() && started.elapsed() < deadline {
            state = self.outbox.wait(state, Duration::from_millis(50));
        }
        if !state.drained {
            tracing::warn!(
                pending_bytes = state.pending_bytes,
                "exactly-once relay: not everything was published before the stop; the next start publishes the rest"
            );
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.outbox.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a relay's session ended.
enum Ended {
    Stopped,
    /// Another producer took the transactional id.
    Fenced(String),
    /// Another worker committed the partition in Redis: this host lost it.
    Lost(String),
    /// Start a new producer (after a pause).
    Restart(String),
    /// Waiting does not help (configuration, authorisation): the job stops.
    Fatal(String),
}

struct Relay {
    settings: RelaySettings,
    store: Arc<RedisStore>,
    topic: String,
    partition: i32,
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
    /// The partition worker's own stop flag: a fenced relay stops its worker too.
    worker_stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    labels: PartitionLabels,
}

/// Starts the relay of `topic`/`partition`.
/// `stored`: the partition's stored offset its worker starts from.
pub fn start(
    settings: &RelaySettings,
    store: Arc<RedisStore>,
    (topic, partition): (&str, i32),
    stored: Option<i64>,
    worker_stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> std::io::Result<RelayHandle> {
    let labels = PartitionLabels {
        job: settings.job.clone(),
        topic: topic.to_owned(),
        partition: partition.to_string(),
    };
    let outbox = Arc::new(Outbox {
        state: Mutex::new(OutboxState::default()),
        changed: Condvar::new(),
        max_bytes: settings.max_pending_bytes.max(1),
        gauge: metrics.outbox_bytes.get_or_create(&labels).clone(),
        submitted: AtomicI64::new(stored.unwrap_or(i64::MIN)),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let relay = Relay {
        settings: settings.clone(),
        store,
        topic: topic.to_owned(),
        partition,
        outbox: outbox.clone(),
        stop: stop.clone(),
        worker_stop,
        metrics,
        labels,
    };
    let thread = std::thread::Builder::new()
        .name(format!("relay-{partition}"))
        .spawn(move || relay.run())?;
    Ok(RelayHandle {
        outbox,
        stop,
        thread: Some(thread),
    })
}

impl Relay {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn where_(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    /// Sleeps up to `d`, returning early (false) when stopped.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        let mut state = self.outbox.lock();
        while Instant::now() < until {
            if self.stopping() {
                return false;
            }
            state = self
                .outbox
                .wait(state, Duration::from_millis(50).min(until - Instant::now()));
        }
        !self.stopping()
    }

    /// Whether this host still owns the partition, by the one authority on it, the stored
    /// offset: only this worker may have moved it since it started (`None`: Redis cannot
    /// tell now).
    fn still_owner(&self) -> Option<bool> {
        let stored = self
            .store
            .committed_offset(&self.topic, self.partition)
            .ok()?;
        // Read after the stored offset: the worker raises it before each commit, so every
        // commit of this worker that Redis shows is counted (read first, a commit applied
        // in between would look like another worker's).
        let submitted = self.outbox.submitted.load(Ordering::SeqCst);
        Some(stored.is_none_or(|s| submitted == i64::MIN || s <= submitted))
    }

    /// This host lost the partition: stop its worker, publish nothing more.
    fn lost(&self, why: &str) {
        tracing::warn!(
            partition = %self.where_(), transactional_id = %self.settings.transactional_id(&self.topic, self.partition),
            "this host no longer owns the partition ({why}); stopping it here and publishing nothing more of it"
        );
        self.worker_stop.store(true, Ordering::SeqCst);
        let mut state = self.outbox.lock();
        state
            .failure
            .get_or_insert_with(|| "the partition moved to another host".to_owned());
        drop(state);
        self.outbox.changed.notify_all();
    }

    fn run(self) {
        let stopping = || self.stopping();
        let mut retry = Retry::new(RESTART_BACKOFF, Limit::Never, &stopping);
        loop {
            match self.session() {
                Ended::Stopped => return,
                Ended::Fenced(why) => {
                    // Fenced by whom? A host that took the partition over (this one is the
                    // zombie: stop), or a zombie that woke up and took the id back before
                    // its group membership lapsed (take it back: init fences it again).
                    if self.still_owner() == Some(true) {
                        tracing::warn!(partition = %self.where_(), "exactly-once relay: another producer took this partition's transactional id ({why}), but no other worker committed the partition: taking the id back");
                        continue;
                    }
                    self.lost(&why);
                    return;
                }
                Ended::Lost(why) => {
                    self.lost(&why);
                    return;
                }
                Ended::Fatal(why) => {
                    tracing::error!(partition = %self.where_(), "exactly-once relay: {why}");
                    let mut state = self.outbox.lock();
                    state.failure.get_or_insert(why);
                    state.fatal = true;
                    drop(state);
                    self.worker_stop.store(true, Ordering::SeqCst);
                    self.outbox.changed.notify_all();
                    return;
                }
                Ended::Restart(why) => {
                    let announce = |pause| tracing::warn!(partition = %self.where_(), "exactly-once relay: {why}; starting a new transactional producer in {pause:?}");
                    if retry.again(announce).is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Repeats a Redis call while Redis is unavailable (the worker's commits wait for it
    /// meanwhile); other Redis errors stop the job.
    fn redis<T>(&self, what: &str, f: impl Fn() -> Result<T, StoreError>) -> Result<T, Ended> {
        let mut warned: Option<Instant> = None;
        let stopping = || self.stopping();
        let mut retry = Retry::new(REDIS_BACKOFF, Limit::Never, &stopping);
        loop {
            let e = match f() {
                Ok(v) => return Ok(v),
                Err(e @ StoreError::Unavailable { .. }) => e,
                Err(e) => return Err(Ended::Fatal(format!("{what}: {e}"))),
            };
            let announce = |pause| {
                if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(partition = %self.where_(), error = %e, "exactly-once relay: {what}; retrying in {pause:?}");
                    warned = Some(Instant::now());
                }
            };
            if retry.again(announce).is_err() {
                return Err(Ended::Stopped);
            }
        }
    }

    fn session(&self) -> Ended {
        match self.session_inner() {
            Ok(()) => Ended::Stopped,
            Err(e) => e,
        }
    }

    fn session_inner(&self) -> Result<(), Ended> {
        let tid = self.settings.transactional_id(&self.topic, self.partition);
        let producer: RelayProducer = crate::kafka::config::client_config(
            crate::kafka::config::Client::Producer,
            &self.settings.brokers,
            &[
                ("transactional.id", tid.as_str()),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                // Full batches: the transaction's flush sends what is left at once, so
                // lingering costs no latency, and a broker does its per-batch
                // transaction bookkeeping for fewer, larger batches.
                ("linger.ms", "100"),
                ("transaction.timeout.ms", "60000"),
                ("message.timeout.ms", "30000"),
            ],
            &self.settings.kafka,
        )
        .create_with_context(RelayContext::default())
        .map_err(|e| Ended::Fatal(format!("cannot create the transactional producer: {e}")))?;
        let group = self.settings.relay_group();
        let positions: BaseConsumer<QuietContext> = crate::kafka::config::client_config(
            crate::kafka::config::Client::Consumer,
            &self.settings.brokers,
            &[
                ("group.id", group.as_str()),
                ("enable.auto.commit", "false"),
                ("isolation.level", "read_committed"),
            ],
            &self.settings.kafka,
        )
        .create_with_context(QuietContext::default())
        .map_err(|e| Ended::Fatal(format!("cannot create the position reader: {e}")))?;

        // Fence the previous owner of the transactional id; its open transaction ends. Not
        // when another worker has the partition now: that would fence the rightful owner.
        if self.still_owner() == Some(false) {
            return Err(Ended::Lost("another worker committed it".to_owned()));
        }
        let mut warned: Option<Instant> = None;
        loop {
            match producer.init_transactions(CALL_SLICE) {
                Ok(()) => break,
                Err(e) if self.stopping() => {
                    tracing::debug!(error = %e, "init_transactions at stop");
                    return Err(Ended::Stopped);
                }
                Err(e)
                    if e.rdkafka_error_code()
                        == Some(RDKafkaErrorCode::TransactionalIdAuthorizationFailed) =>
                {
                    return Err(Ended::Fatal(format!(
                        "Kafka refused transactional id {tid}: the host's principal may not \
                         use it. Grant it Write on TransactionalId prefix {prefix} and Read \
                         on Group {group} (kafka-acls --add --allow-principal User:... \
                         --operation Write --transactional-id {prefix} \
                         --resource-pattern-type prefixed; docs/operating.md, \"ACLs a job \
                         needs\"), or run with --delivery at-least-once",
                        prefix = self.settings.transactional_id_prefix(),
                    )));
                }
                Err(e) => match classify(&e) {
                    TxnError::Fatal => {
                        return Err(Ended::Fatal(format!(
                            "Kafka refused transactional id {tid} ({e}); check that the \
                             brokers support transactions and that the host's user may \
                             write transactional id {tid} and group {group}, or run with \
                             --delivery at-least-once"
                        )));
                    }
                    _ => {
                        if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                            tracing::warn!(partition = %self.where_(), transactional_id = %tid, error = %e, "exactly-once relay: taking over the transactional id; retrying");
                            warned = Some(Instant::now());
                        }
                    }
                },
            }
        }
        let cgm = positions
            .group_metadata()
            .ok_or_else(|| Ended::Fatal(format!("no group metadata for group {group}")))?;
        let next = loop {
            match self.position(&positions) {
                Ok(p) => break p,
                Err(e) if self.stopping() => {
                    tracing::debug!(error = %e, "reading the position at stop");
                    return Err(Ended::Stopped);
                }
                Err(e) => {
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        tracing::warn!(partition = %self.where_(), group = %group, error = %e, "exactly-once relay: reading its position; retrying");
                        warned = Some(Instant::now());
                    }
                    if !self.pause(Duration::from_millis(500)) {
                        return Err(Ended::Stopped);
                    }
                }
            }
        };
        let mut next = match next {
            Some(n) => n,
            None => self
                .redis("reading the outbox", || {
                    self.store.outbox_first(&self.topic, self.partition)
                })?
                .unwrap_or(1),
        };
        self.redis("trimming the outbox", || {
            self.store.outbox_trim(&self.topic, self.partition, next)
        })?;
        // What the outbox holds counts against its bound.
        let backlog = self.read_outbox(next, usize::MAX)?;
        {
            let mut state = self.outbox.lock();
            state.published_below(next);
            for entry in &backlog {
                state.add(entry.seq, entry.bytes as u64);
            }
            state.ready = true;
            self.outbox.gauge.set(state.pending_bytes as i64);
        }
        self.outbox.changed.notify_all();
        tracing::info!(partition = %self.where_(), transactional_id = %tid, position = next, "exactly-once relay took over");

        let mut last_txn = Instant::now() - self.settings.interval;
        let mut last_look = Instant::now();
        loop {
            // Wait for the interval and for an entry (or look now and then regardless:
            // an entry whose commit's reply was lost is not announced).
            {
                let mut state = self.outbox.lock();
                loop {
                    if self.stopping() {
                        return Err(Ended::Stopped);
                    }
                    let due = last_txn.elapsed() >= self.settings.interval;
                    let announced = state.pending.range(next..).next().is_some();
                    if state.draining || due && (announced || last_look.elapsed() >= IDLE_POLL) {
                        break;
                    }
                    state = self.outbox.wait(state, Duration::from_millis(20));
                }
            }
            last_look = Instant::now();
            let mut entries = self.read_outbox(next, MAX_TRANSACTION_BYTES)?;
            let bytes: usize = entries.iter().map(|e| e.bytes).sum();
            for entry in &mut entries {
                entry.records = stamped_emits(
                    std::mem::take(&mut entry.records),
                    &self.topic,
                    self.partition,
                    entry.from,
                    entry.until,
                );
            }
            let Some(last) = entries.last() else {
                let mut state = self.outbox.lock();
                if state.draining {
                    state.drained = true;
                    drop(state);
                    self.outbox.changed.notify_all();
                    return Ok(());
                }
                continue;
            };
            let until = last.seq + 1;
            if self.still_owner() == Some(false) {
                return Err(Ended::Lost(format!(
                    "another worker committed it; {} entries from {next} left to the new owner",
                    entries.len()
                )));
            }
            last_txn = Instant::now();
            tracing::debug!(partition = %self.where_(), from = next, until, entries = entries.len(), bytes, "exactly-once relay: publishing");
            let records = self.transaction(&producer, &cgm, &entries, until)?;
            tracing::debug!(partition = %self.where_(), until, records, "exactly-once relay: published");
            next = until;
            if let Err(e) = self.store.outbox_trim(&self.topic, self.partition, next) {
                // The next trim takes these too; the position already says they are out.
                tracing::warn!(partition = %self.where_(), error = %e, "trimming the outbox after a transaction");
            }
            {
                let mut state = self.outbox.lock();
                state.published_below(next);
                self.outbox.gauge.set(state.pending_bytes as i64);
            }
            self.outbox.changed.notify_all();
            self.metrics
                .relay_transactions
                .get_or_create(&self.labels)
                .inc();
            self.metrics
                .relay_records
                .get_or_create(&self.labels)
                .inc_by(records);
        }
    }

    /// The outbox's entries from `from` on, page by page until they hold `max_bytes`.
    fn read_outbox(&self, from: u64, max_bytes: usize) -> Result<Vec<Entry>, Ended> {
        let (mut entries, mut bytes, mut from) = (Vec::new(), 0, from);
        while bytes < max_bytes {
            let page = self.redis("reading the outbox", || {
                self.store
                    .outbox_read(&self.topic, self.partition, from, READ_PAGE)
            })?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            bytes += page.iter().map(|e| e.bytes).sum::<usize>();
            entries.extend(page);
        }
        Ok(entries)
    }

    /// The relay group's committed position of this partition (`None`: never committed).
    fn position(&self, positions: &BaseConsumer<QuietContext>) -> Result<Option<u64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        let committed = positions.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .find_partition(&self.topic, self.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) if n > 0 => Some(n as u64),
                _ => None,
            }))
    }
}
