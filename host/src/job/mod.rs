//! `host run`: one job (a plugin over some topics) in this process. Owns the consumer,
//! one worker thread per assigned partition, the producer and the Redis store; stops
//! cleanly on a signal or when a worker fails.

mod partitions;
pub mod settings;

use partitions::Shared;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::kafka::consumer::{self as source, Assignments, SourceConfig};
use crate::kafka::mirror::{Mirror, MirrorHandle};
use crate::kafka::producer::{Outlet, Sink};
use crate::pipeline::executor::NativeFactory;
use crate::pipeline::relay::{Delivery, RelaySettings};
use crate::pipeline::slot::PluginSlot;
use crate::runtime::Plugin;
use crate::store::committer::Committer;
use crate::store::redis::{Redis, RedisStore};
use crate::store::{StateStore, StoreError};
use crate::sync::Locked;
use crate::telemetry::progress::{Progress, ProgressMode, Reporter, Wait};
use settings::JobSettings;

pub struct JobConfig {
    /// The plugin, swappable while the job runs (`host serve`).
    pub plugin: PluginSlot,
    pub plugin_config: Vec<(String, String)>,
    pub topics: Vec<String>,
    pub brokers: String,
    pub group: String,
    pub job: String,
    /// Where Redis is; the settings' `redis_wait_*` apply on top.
    pub redis: crate::store::redis::RedisConfig,
    pub settings: JobSettings,
    pub output_topic: Option<String>,
    pub kafka: Vec<(String, String)>,
    /// Static assignment: these partitions of every topic, no group membership.
    pub partitions: Option<Vec<i32>>,
    /// Where to serve /metrics, /healthz and /readyz.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Logic compiled into the process that replaces the plugin (the benchmarks' native
    /// baseline; `None` everywhere else).
    pub native: Option<NativeFactory>,
    /// Metrics to update; `None`: the job makes its own (served at `metrics_addr`).
    pub metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
    pub progress_mode: ProgressMode,
    /// Set once the job consumes (its partitions assigned or the group joined).
    pub ready: Arc<AtomicBool>,
    /// Updated after every commit (records, committed offsets, lag).
    pub progress: Arc<Progress>,
}

impl JobConfig {
    /// A job of `plugin` over `topics` with `settings` (checked here: whoever builds a
    /// job, `host run` or the API, gets the same refusal); the rest at its defaults.
    pub fn new(
        plugin: Plugin,
        topics: Vec<String>,
        group: String,
        job: String,
        redis: crate::store::redis::RedisConfig,
        settings: JobSettings,
    ) -> Result<Self, settings::SettingsError> {
        settings.validate()?;
        Ok(Self {
            plugin: PluginSlot::new(plugin),
            plugin_config: Vec::new(),
            topics,
            brokers: "localhost:9092".into(),
            group,
            job,
            redis,
            settings,
            output_topic: None,
            kafka: Vec::new(),
            partitions: None,
            metrics_addr: None,
            native: None,
            metrics: None,
            progress_mode: ProgressMode::Off,
            ready: Arc::new(AtomicBool::new(false)),
            progress: Default::default(),
        })
    }
}

/// How often this host announces itself in Redis, and how long an announcement lasts.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT_TTL: Duration = Duration::from_secs(10);

/// A flag raised by the first SIGINT/SIGTERM, for a clean stop; a second signal exits at
/// once (130/143) without committing — nothing half-done can be committed, since a batch
/// commits in one step.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for (signal, code) in [
        (signal_hook::consts::SIGINT, 130),
        (signal_hook::consts::SIGTERM, 143),
    ] {
        signal_hook::flag::register_conditional_shutdown(signal, code, stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Runs the job until `stop` is raised (a signal) or a worker fails.
pub fn run(config: JobConfig, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    // Redis may be restarting as the host starts (or go again right after the wait):
    // wait for it as long as a commit would.
    let waiting_since = Instant::now();
    let redis = Arc::new(Redis::new(&crate::store::redis::RedisConfig {
        wait_replicas: config.settings.redis_wait_replicas,
        wait_timeout: config.settings.redis_wait_timeout(),
        ..config.redis.clone()
    })?);
    let policy = config.settings.error_policy();
    let store = loop {
        let left = policy.redis_give_up.saturating_sub(waiting_since.elapsed());
        crate::store::redis::wait_until_reachable(&redis, left, &stop, &|why| match why {
            Some(why) => config.progress.waiting(Wait::Redis, why),
            None => config.progress.done_waiting(Wait::Redis),
        })?;
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let opened = RedisStore::open(
            redis.clone(),
            &config.group,
            &config.job,
            Some(config.settings.state_scope),
        )
        .and_then(|store| store.register_topics(&config.topics).map(|()| store));
        match opened {
            Ok(store) => break Arc::new(store),
            Err(StoreError::Unavailable { .. }) if !left.is_zero() => continue,
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!(redis = %redis.shown(), scope = %store.scope(), state = ?store.keys().state(Some(0)).ok(), "store ready");
    let sink = Arc::new(Outlet::Kafka(Sink::new(
        &config.brokers,
        &config.kafka,
        config.output_topic.clone(),
    )?));
    let member = format!(
        "{}-{}-{:08x}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
        std::process::id(),
        crate::clock::unix_nanos() % 1_000_000_000
    );
    let (brokers, group, reset) = (
        config.brokers.clone(),
        config.group.clone(),
        config.settings.offset_reset,
    );
    let max_inflight_kb = config.settings.max_inflight_mb as u64 * 1024;
    let prefetch_records = (2 * config.settings.batch_max_records as usize).clamp(10_000, 100_000);
    let kafka = config.kafka.clone();
    let topics = config.topics.clone();
    let partitions = config.partitions.clone();
    let metrics = config
        .metrics
        .clone()
        .unwrap_or_else(crate::telemetry::metrics::Metrics::new);
    let ready = config.ready.clone();
    let progress_mode = config.progress_mode;
    let progress = config.progress.clone();
    if let Some(addr) = config.metrics_addr {
        crate::telemetry::metrics::serve(addr, metrics.clone(), ready.clone())?;
    }
    let relay_settings =
        (config.settings.delivery == Delivery::ExactlyOnce).then(|| RelaySettings {
            brokers: config.brokers.clone(),
            kafka: config.kafka.clone(),
            output_topic: config.output_topic.clone(),
            job: config.job.clone(),
            group: config.group.clone(),
            interval: config.settings.transaction_interval(),
            max_pending_bytes: config.settings.outbox_max_bytes(),
        });
    let shared = Arc::new(Shared {
        metrics,
        config,
        committer: Arc::new(Committer::start(store.clone() as Arc<dyn StateStore>)),
        store: store.clone(),
        sink: sink.clone(),
        relay: relay_settings,
        stop: stop.clone(),
        failure: Mutex::new(None),
        failures: Arc::new(Mutex::new(Vec::new())),
        progress,
        mirror: Mutex::new(MirrorHandle::disabled()),
        prepared: Mutex::new(Vec::new()),
        running: Mutex::new(HashMap::new()),
    });
    let assignments: Arc<dyn Assignments> = shared.clone();
    let consumer = source::consumer(
        &SourceConfig {
            brokers: &brokers,
            group: &group,
            reset,
            max_inflight_kb,
            prefetch_records,
            overrides: &kafka,
        },
        Arc::downgrade(&assignments),
    )
    .context("creating the Kafka consumer")?;

    source::wait_for_brokers(
        &consumer,
        &brokers,
        policy.kafka_give_up,
        &stop,
        &|why| match why {
            Some(why) => shared.progress.waiting(Wait::Kafka, why),
            None => shared.progress.done_waiting(Wait::Kafka),
        },
    )?;
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let mirror = if shared.config.settings.kafka_commit {
        let failures = shared
            .metrics
            .kafka_commit_failures
            .get_or_create(&crate::telemetry::metrics::JobLabels {
                job: shared.config.job.clone(),
            })
            .clone();
        let mirror = Mirror::start(consumer.clone(), failures)
            .context("starting the Kafka offset mirror")?;
        *shared.mirror.locked() = mirror.handle();
        Some(mirror)
    } else {
        None
    };
    if let Err(e) = store.heartbeat(&member, HEARTBEAT_TTL) {
        tracing::warn!(error = %e, "Redis heartbeat");
    }
    match &partitions {
        Some(list) => {
            let mut tpl = TopicPartitionList::new();
            for topic in &topics {
                for &p in list {
                    tpl.add_partition(topic, p);
                }
            }
            tracing::info!(partitions = %source::describe(&tpl), "static assignment");
            shared.assigning(&consumer, &mut tpl);
            consumer.assign(&tpl).context("assigning partitions")?;
            shared.assigned(&tpl);
        }
        None => {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .context("subscribing to the topics")?;
            tracing::info!(topics = ?topics, group = %group, "joining the consumer group");
        }
    }

    ready.store(true, Ordering::SeqCst);
    let mut last_beat = Instant::now();
    let mut reporter = Reporter::new(progress_mode);
    // The output topic too: a job can emit nothing where it does not exist (librdkafka
    // would hold each batch for its metadata timeout, then fail it, with no word of why).
    let watched: Vec<String> = topics
        .iter()
        .chain(shared.config.output_topic.iter())
        .cloned()
        .collect();
    let mut topic_check = Some(source::TopicCheck::new(
        &watched,
        &brokers,
        policy.kafka_give_up,
    ));
    while !stop.load(Ordering::SeqCst) {
        reporter.tick(&shared.progress);
        if let Some(cause) = consumer.context().diagnostics.configuration_error() {
            shared.fail(format!("Kafka at {brokers}: {cause}"));
            break;
        }
        if let Some(check) = &mut topic_check {
            let polled = check.poll(&consumer);
            match &polled {
                Ok(false) if !check.missing().is_empty() => shared.progress.waiting(
                    Wait::Topic,
                    format!(
                        "topic {} does not exist on {brokers}; create it (the job gives up in {} s)",
                        check.missing().join(", "),
                        check.left().as_secs()
                    ),
                ),
                _ => shared.progress.done_waiting(Wait::Topic),
            }
            match polled {
                Ok(true) => topic_check = None,
                Ok(false) => {}
                Err(message) => shared.fail(message),
            }
        }
        // Serves rebalances and client events; records go to the partition queues.
        match consumer.poll(Duration::from_millis(100)) {
            // A missing topic is named by the topic check above, once every 10 s; the
            // consumer's own repeats of it would only add noise.
            Some(Err(e))
                if topic_check.is_some()
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(
                            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
                                | rdkafka::types::RDKafkaErrorCode::UnknownTopic
                        )
                    ) =>
            {
                tracing::debug!(error = %e, "kafka consumer")
            }
            Some(Err(e)) => match crate::kafka::errors::unhealable_consume_error(&e) {
                Some(fix) => {
                    shared.fail(format!("consuming {topics:?} from {brokers}: {e}: {fix}"))
                }
                None => tracing::warn!(error = %e, "kafka consumer"),
            },
            Some(Ok(m)) => tracing::warn!(
                topic = m.topic(),
                partition = m.partition(),
                offset = m.offset(),
                "record on the main queue ignored"
            ),
            None => {}
        }
        source::assign_offered(&consumer);
        if last_beat.elapsed() >= HEARTBEAT_EVERY {
            if let Err(e) = store.heartbeat(&member, HEARTBEAT_TTL) {
                tracing::warn!(error = %e, "Redis heartbeat");
            }
            last_beat = Instant::now();
        }
    }

    reporter.finish();
    ready.store(false, Ordering::SeqCst);
    tracing::info!("stopping: finishing in-flight batches");
    consumer.context().closing();
    shared.stop_workers(|_| true);
    if let Some(mirror) = mirror {
        mirror.stop(Duration::from_secs(5));
    }
    if partitions.is_none() {
        consumer.unsubscribe();
    }
    drop(consumer);
    sink.flush(Duration::from_secs(10));
    if let Err(e) = store.leave(&member) {
        tracing::warn!(error = %e, "leaving the group in Redis");
    }
    let mut failures: Vec<String> = std::mem::take(&mut *shared.failures.locked());
    if let Some(f) = shared.failure.locked().take() {
        failures.insert(0, f);
    }
    match failures.first() {
        Some(first) => anyhow::bail!("{first}"),
        None => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
    }
}
