//! Prometheus metrics of a running job, and the small HTTP server that serves them
//! (`--metrics-addr`): `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub job: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub job: String,
    pub topic: String,
    pub partition: String,
    /// ok, failed, skipped, dead_lettered
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub job: String,
    pub plugin: String,
    pub partition: String,
}

fn latency() -> Histogram {
    // 100 µs .. ~100 s
    Histogram::new(exponential_buckets(0.0001, 2.5, 16))
}

fn record_latency() -> Histogram {
    // 1 ms .. ~2 min, 50% apart: fine enough for a p99 of produce-to-commit.
    Histogram::new(exponential_buckets(0.001, 1.5, 30))
}

pub struct Metrics {
    registry: Registry,
    pub records_in: Family<PartitionLabels, Counter>,
    pub records_out: Family<PartitionLabels, Counter>,
    pub batches: Family<OutcomeLabels, Counter>,
    pub retries: Family<PartitionLabels, Counter>,
    pub dead_lettered: Family<PartitionLabels, Counter>,
    pub batch_seconds: Family<PartitionLabels, Histogram, fn() -> Histogram>,
    pub plugin_seconds: Family<PartitionLabels, Histogram, fn() -> Histogram>,
    pub commit_seconds: Family<PartitionLabels, Histogram, fn() -> Histogram>,
    pub commit_latency: Family<PartitionLabels, Histogram, fn() -> Histogram>,
    pub committed_offset: Family<PartitionLabels, Gauge>,
    pub lag: Family<PartitionLabels, Gauge>,
    pub plugin_memory: Family<PluginLabels, Gauge>,
    pub kafka_commit_failures: Family<JobLabels, Counter>,
    pub late_records: Family<LateLabels, Counter>,
    pub timers_fired: Family<PartitionLabels, Counter>,
    pub expired_keys: Family<PartitionLabels, Counter>,
    pub watermark: Family<PartitionLabels, Gauge>,
    /// `--delivery exactly-once`: bytes of committed emits the relay has not published.
    pub outbox_bytes: Family<PartitionLabels, Gauge>,
    pub relay_transactions: Family<PartitionLabels, Counter>,
    pub relay_records: Family<PartitionLabels, Counter>,
    pub build_info: Family<BuildLabels, Gauge>,
    /// `host serve`: jobs by state, refreshed at each scrape.
    pub jobs: Family<StateLabels, Gauge>,
    /// `host serve`: plugin versions in the registry, refreshed at each scrape.
    pub plugins: Gauge,
    /// `host serve`: admin requests by route, method and status.
    pub admin_requests: Family<RequestLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    /// The plugin contract versions this host loads.
    pub contracts: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/v1/jobs/{id}`), not the path: the label's values stay few.
    pub route: String,
    pub method: String,
    pub status: String,
}

/// Labels of a late record's count: what `--late-records` did with it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LateLabels {
    pub job: String,
    pub topic: String,
    pub partition: String,
    /// `processed`, `dropped` or `sent` (to the side topic).
    pub action: String,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("streamhost");
        let m = Metrics {
            records_in: Family::default(),
            records_out: Family::default(),
            batches: Family::default(),
            retries: Family::default(),
            dead_lettered: Family::default(),
            batch_seconds: Family::new_with_constructor(latency),
            plugin_seconds: Family::new_with_constructor(latency),
            commit_seconds: Family::new_with_constructor(latency),
            commit_latency: Family::new_with_constructor(record_latency),
            committed_offset: Family::default(),
            lag: Family::default(),
            plugin_memory: Family::default(),
            kafka_commit_failures: Family::default(),
            late_records: Family::default(),
            timers_fired: Family::default(),
            expired_keys: Family::default(),
            watermark: Family::default(),
            outbox_bytes: Family::default(),
            relay_transactions: Family::default(),
            relay_records: Family::default(),
            build_info: Family::default(),
            jobs: Family::default(),
            plugins: Gauge::default(),
            admin_requests: Family::default(),
            registry: Registry::default(),
        };
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                contracts: format!(
                    "{},{}",
                    crate::runtime::CONTRACT_VERSION,
                    crate::runtime::OLD_CONTRACT_VERSION
                ),
            })
            .set(1);
        registry.register(
            "build_info",
            "The host's version and the plugin contracts it loads (always 1)",
            m.build_info.clone(),
        );
        registry.register(
            "jobs",
            "host serve: jobs by state (starting, running, failed, stopped)",
            m.jobs.clone(),
        );
        registry.register(
            "plugins",
            "host serve: plugin versions in the registry",
            m.plugins.clone(),
        );
        registry.register(
            "admin_requests",
            "host serve: admin requests by route, method and status",
            m.admin_requests.clone(),
        );
        registry.register(
            "records_in",
            "Records read from Kafka and committed",
            m.records_in.clone(),
        );
        registry.register(
            "records_out",
            "Records the plugin emitted, produced and acknowledged",
            m.records_out.clone(),
        );
        registry.register("batches", "Batches by outcome", m.batches.clone());
        registry.register(
            "kafka_commit_failures",
            "Failed best-effort commits of offsets to the Kafka group (Redis is unaffected)",
            m.kafka_commit_failures.clone(),
        );
        registry.register(
            "retries",
            "Batch attempts that failed and were retried",
            m.retries.clone(),
        );
        registry.register(
            "dead_lettered_records",
            "Records sent to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "A batch from its first attempt to its commit",
            m.batch_seconds.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "One process call of the plugin",
            m.plugin_seconds.clone(),
        );
        registry.register(
            "commit_duration_seconds",
            "A batch's commit, from its hand-over to Redis's answer",
            m.commit_seconds.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "From a record's Kafka timestamp (its producer's clock, or the broker's for \
             LogAppendTime topics) to the commit of its batch, once per record",
            m.commit_latency.clone(),
        );
        registry.register(
            "outbox_bytes",
            "Exactly-once delivery: bytes of committed emits in the Redis outbox that the \
             relay has not yet published in a Kafka transaction",
            m.outbox_bytes.clone(),
        );
        registry.register(
            "relay_transactions",
            "Exactly-once delivery: Kafka transactions the relay committed",
            m.relay_transactions.clone(),
        );
        registry.register(
            "relay_records",
            "Exactly-once delivery: records published in committed Kafka transactions",
            m.relay_records.clone(),
        );
        registry.register(
            "committed_offset",
            "Next offset to read, as committed in Redis",
            m.committed_offset.clone(),
        );
        registry.register(
            "lag",
            "Records between the committed offset and the partition's end",
            m.lag.clone(),
        );
        registry.register(
            "plugin_memory_bytes",
            "Linear memory of the partition's plugin instance",
            m.plugin_memory.clone(),
        );
        registry.register(
            "late_records",
            "Records older than the watermark minus the allowed lateness, by what \
             --late-records did with them",
            m.late_records.clone(),
        );
        registry.register(
            "timers_fired",
            "Timers that fired and whose batch committed",
            m.timers_fired.clone(),
        );
        registry.register(
            "expired_keys",
            "State keys deleted because their expiry passed",
            m.expired_keys.clone(),
        );
        registry.register(
            "watermark_ms",
            "The partition's committed watermark, ms since the Unix epoch",
            m.watermark.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Registers a partition's counters at zero when its worker starts, as exporters do:
    /// a counter that appears only once something happened makes `rate()` and alerts on
    /// retries or dead letters miss the first occurrence.
    pub fn partition_started(&self, labels: &PartitionLabels) {
        drop(self.records_in.get_or_create(labels));
        drop(self.records_out.get_or_create(labels));
        drop(self.retries.get_or_create(labels));
        drop(self.dead_lettered.get_or_create(labels));
        drop(self.timers_fired.get_or_create(labels));
        drop(self.expired_keys.get_or_create(labels));
        for action in ["processed", "dropped", "sent"] {
            drop(self.late_records.get_or_create(&LateLabels {
                job: labels.job.clone(),
                topic: labels.topic.clone(),
                partition: labels.partition.clone(),
                action: action.to_owned(),
            }));
        }
        for outcome in ["ok", "failed", "skipped", "dead_lettered"] {
            drop(self.batches.get_or_create(&OutcomeLabels {
                job: labels.job.clone(),
                topic: labels.topic.clone(),
                partition: labels.partition.clone(),
                outcome: outcome.to_owned(),
            }));
        }
    }

    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process is up) and `/readyz` (`ready` is set: the
/// job is connected and consuming) on `addr`, from a thread of its own.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {addr}: {e}"))?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let app = routes(metrics, ready);
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "metrics server runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "metrics server stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "metrics server listener"),
                }
            });
        })?;
    tracing::info!(addr = %bound, "serving /metrics, /healthz, /readyz");
    Ok(bound)
}

/// `/metrics`, `/healthz` and `/readyz`, for `host run --metrics-addr`.
pub fn routes(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> axum::Router {
    routes_with(metrics, ready, Arc::new(|| {}))
}

/// The same, running `before_scrape` before each `/metrics` answer (`host serve` counts
/// its jobs and plugins then).
pub fn routes_with(
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    before_scrape: Arc<dyn Fn() + Send + Sync>,
) -> axum::Router {
    use axum::Router;
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    Router::new()
        .route(
            "/metrics",
            get(move || {
                before_scrape();
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}
