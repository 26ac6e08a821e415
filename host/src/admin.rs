//! `host serve`: the admin HTTP API. Plugins go into the registry (Redis), jobs are
//! defined, inspected, hot-swapped and deleted over `/v1`; `/metrics`, `/healthz` and
//! `/readyz` sit beside it. The API is described in docs/openapi.json.
//!
//! Each job runs as in `host run` (its own consumer, producer, Redis connections and
//! partition threads) on a thread of its own: one job failing does not touch another.
//! Job definitions live in Redis (`streamhost:serve:jobs`, id → JSON), so a restarted
//! server resumes its jobs; their offsets and state are in Redis anyway.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use clap::ValueEnum;
use futures::StreamExt;
use redis::Commands;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cli::ServeArgs;
use crate::job::JobConfig;
use crate::metrics::Metrics;
use crate::pipeline::{BatchLimits, PluginSlot};
use crate::policy::{ErrorPolicy, OnError};
use crate::progress::{Progress, ProgressMode};
use crate::registry::{Entry, Reference, Registry, RegistryError};
use crate::runtime::{InstanceSettings, Limits, Plugin, Runtime, RuntimeOptions};
use crate::source::ResetPolicy;
use crate::store::memory::MemoryStore;

const JOBS_KEY: &str = "streamhost:serve:jobs";

/// How far past the upload limit a body is still read (and discarded) to answer cleanly.
const DRAIN_CAP: u64 = 16 << 20;

/// A job as clients define it. Unknown fields are refused, so a typo is an error, not a
/// silently ignored setting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// a-z, 0-9, '-', '_', '.'; made up when not given.
    #[serde(default)]
    pub id: String,
    /// A registry reference: NAME, NAME@VERSION or NAME@sha256:<hex>.
    pub plugin: String,
    pub topics: Vec<String>,
    /// Consumer group and Redis offsets namespace [default: the job id].
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub output_topic: Option<String>,
    /// Passed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Static assignment instead of the consumer group.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    #[serde(default)]
    pub settings: JobSettings,
}

/// The `host run` settings a job may set; the defaults are `host run`'s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    pub batch_max_records: u64,
    pub batch_max_bytes: u64,
    pub batch_linger_ms: u64,
    /// earliest | latest | none
    pub offset_reset: String,
    /// retry | dlq | skip | stop
    pub on_error: String,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub dlq_topic: Option<String>,
    pub redis_give_up_ms: u64,
    pub max_inflight_mb: u32,
    /// The sandbox of this job's plugin instances.
    pub plugin_memory_mb: u32,
    pub plugin_timeout_ms: u64,
    pub max_effects_mb: u32,
    pub kafka_commit: bool,
    /// librdkafka properties for this job (added to the server's -X).
    pub kafka: BTreeMap<String, String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            batch_max_records: 1000,
            batch_max_bytes: 4 << 20,
            batch_linger_ms: 100,
            offset_reset: "earliest".into(),
            on_error: "retry".into(),
            max_retries: 5,
            retry_backoff_ms: 200,
            retry_backoff_max_ms: 10_000,
            dlq_topic: None,
            redis_give_up_ms: 300_000,
            max_inflight_mb: 16,
            plugin_memory_mb: 64,
            plugin_timeout_ms: 10_000,
            max_effects_mb: 64,
            kafka_commit: true,
            kafka: BTreeMap::new(),
        }
    }
}

/// What a PATCH may change while the job runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobPatch {
    plugin: String,
}

#[derive(Debug, Clone)]
enum JobState {
    Running,
    Failed(String),
    Stopped,
}

struct JobHandle {
    spec: JobSpec,
    entry: Entry,
    /// `None` when the job could not start (it is shown as failed).
    slot: Option<PluginSlot>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    state: Arc<Mutex<JobState>>,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    fn view(&self) -> serde_json::Value {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (status, error) = match state {
            JobState::Running if self.ready.load(Ordering::Relaxed) => ("running", None),
            JobState::Running => ("starting", None),
            JobState::Failed(e) => ("failed", Some(e)),
            JobState::Stopped => ("stopped", None),
        };
        let partitions: Vec<serde_json::Value> = self
            .progress
            .partitions()
            .into_iter()
            .map(|(topic, partition, committed, lag)| {
                json!({"topic": topic, "partition": partition, "committed": committed, "lag": lag})
            })
            .collect();
        json!({
            "id": self.spec.id,
            "spec": self.spec,
            "status": status,
            "error": error,
            "plugin_version": self.entry.version,
            "plugin_digest": self.entry.digest,
            "records": self.progress.records(),
            "partitions": partitions,
        })
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An API error: a status and a JSON body `{"error": message, "reason": code}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "reason": self.reason });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::BadName(_)
            | RegistryError::BadVersion(_)
            | RegistryError::BadReference(_) => StatusCode::BAD_REQUEST,
            RegistryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Conflict { .. } => StatusCode::CONFLICT,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RegistryError::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.reason(), e.to_string())
    }
}

fn redis_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "redis_unavailable",
        format!("Redis: {e}"),
    )
}

struct Admin {
    /// Validates uploads; jobs with the default sandbox run on it too.
    runtime: Arc<Runtime>,
    /// One runtime per distinct sandbox setting of the jobs (they share the disk cache).
    runtimes: Mutex<HashMap<Limits, Arc<Runtime>>>,
    cache_dir: std::path::PathBuf,
    registry: Registry,
    redis: redis::Client,
    redis_url: String,
    brokers: String,
    kafka: Vec<(String, String)>,
    upload_limit: u64,
    token: Option<String>,
    metrics: Arc<Metrics>,
    jobs: Mutex<HashMap<String, JobHandle>>,
}

type Shared = Arc<Admin>;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn bad_request(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason, message)
}

impl Admin {
    fn stored_specs(&self) -> Result<Vec<JobSpec>, ApiError> {
        let mut conn = self.redis.get_connection().map_err(redis_down)?;
        let all: Vec<(String, String)> = conn.hgetall(JOBS_KEY).map_err(redis_down)?;
        Ok(all
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str(&json) {
                Ok(spec) => Some(spec),
                Err(e) => {
                    tracing::error!(job = %id, error = %e, key = JOBS_KEY, "unreadable job definition skipped");
                    None
                }
            })
            .collect())
    }

    fn store_spec(&self, spec: &JobSpec, create: bool) -> Result<bool, ApiError> {
        let mut conn = self.redis.get_connection().map_err(redis_down)?;
        let json = serde_json::to_string(spec).unwrap_or_default();
        if create {
            conn.hset_nx(JOBS_KEY, &spec.id, json).map_err(redis_down)
        } else {
            conn.hset::<_, _, _, ()>(JOBS_KEY, &spec.id, json)
                .map_err(redis_down)?;
            Ok(true)
        }
    }

    /// Checks a spec, loads its plugin and runs its `init` with the job's config, so that
    /// a job that cannot start is refused with the reason instead of failing later.
    fn prepare(&self, spec: &JobSpec) -> Result<(Entry, Plugin), ApiError> {
        if !valid_id(&spec.id) {
            return Err(bad_request(
                "bad_id",
                format!(
                    "bad job id {:?}: use 1-64 characters a-z, 0-9, '-', '_', '.'",
                    spec.id
                ),
            ));
        }
        if spec.topics.is_empty() || spec.topics.iter().any(|t| t.is_empty()) {
            return Err(bad_request(
                "bad_topics",
                "topics must name at least one topic",
            ));
        }
        parse_settings(&spec.settings)?;
        let reference = Reference::parse(&spec.plugin)?;
        let runtime = self.runtime_for(&limits_of(&spec.settings))?;
        let (entry, plugin) = self.registry.load(&runtime, &reference)?;
        self.check_init(&plugin, spec)?;
        Ok((entry, plugin))
    }

    fn runtime_for(&self, limits: &Limits) -> Result<Arc<Runtime>, ApiError> {
        if limits == self.runtime.limits() {
            return Ok(self.runtime.clone());
        }
        let mut runtimes = self.runtimes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = runtimes.get(limits) {
            return Ok(r.clone());
        }
        let runtime = Runtime::new(RuntimeOptions {
            cache_dir: Some(self.cache_dir.clone()),
            limits: limits.clone(),
        })
        .map(Arc::new)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "runtime",
                format!("starting a WebAssembly runtime: {e:#}"),
            )
        })?;
        runtimes.insert(limits.clone(), runtime.clone());
        Ok(runtime)
    }

    fn check_init(&self, plugin: &Plugin, spec: &JobSpec) -> Result<(), ApiError> {
        let settings = InstanceSettings {
            store: Arc::new(MemoryStore::new()),
            partition: None,
            config: spec.config.clone().into_iter().collect(),
        };
        plugin.instantiate(&settings).map(drop).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "init_failed",
                e.to_string(),
            )
        })
    }

    fn start(&self, spec: JobSpec, entry: Entry, plugin: Plugin) -> Result<JobHandle, ApiError> {
        let (reset, on_error) = parse_settings(&spec.settings)?;
        let s = &spec.settings;
        let slot = PluginSlot::new(plugin);
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let group = spec.group.clone().unwrap_or_else(|| spec.id.clone());
        let mut kafka = self.kafka.clone();
        kafka.extend(s.kafka.clone());
        let config = JobConfig {
            plugin: slot.clone(),
            plugin_config: spec.config.clone().into_iter().collect(),
            topics: spec.topics.clone(),
            brokers: self.brokers.clone(),
            group: group.clone(),
            job: group,
            redis: self.redis_url.clone(),
            limits: BatchLimits {
                max_records: s.batch_max_records.max(1) as usize,
                max_bytes: s.batch_max_bytes.max(1) as usize,
                linger: Duration::from_millis(s.batch_linger_ms),
            },
            limits_plugin: limits_of(s),
            reset,
            output_topic: spec.output_topic.clone(),
            kafka,
            partitions: spec.partitions.clone(),
            policy: ErrorPolicy {
                on_error,
                max_retries: s.max_retries,
                backoff_initial: Duration::from_millis(s.retry_backoff_ms.max(1)),
                backoff_max: Duration::from_millis(s.retry_backoff_max_ms.max(s.retry_backoff_ms)),
                dlq_topic: s.dlq_topic.clone(),
                redis_give_up: Duration::from_millis(s.redis_give_up_ms.max(1)),
            },
            max_inflight_mb: s.max_inflight_mb.max(1),
            metrics_addr: None,
            native_wordcount: false,
            kafka_commit: s.kafka_commit,
            metrics: Some(self.metrics.clone()),
            progress_mode: ProgressMode::Off,
            progress: progress.clone(),
            ready: ready.clone(),
        };
        let state = Arc::new(Mutex::new(JobState::Running));
        let (job_state, job_stop, id) = (state.clone(), stop.clone(), spec.id.clone());
        let thread = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let span = tracing::info_span!("job", id = %id);
                let _enter = span.enter();
                let outcome = crate::job::run(config, job_stop);
                let mut state = job_state.lock().unwrap_or_else(|p| p.into_inner());
                *state = match outcome {
                    Ok(()) => JobState::Stopped,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "job failed; other jobs go on");
                        JobState::Failed(format!("{e:#}"))
                    }
                };
            })
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "thread",
                    format!("cannot start a job thread: {e}"),
                )
            })?;
        tracing::info!(job = %spec.id, plugin = %spec.plugin, digest = %entry.digest, "job started");
        Ok(JobHandle {
            spec,
            entry,
            progress,
            slot: Some(slot),
            stop,
            ready,
            state,
            thread: Some(thread),
        })
    }
}

fn limits_of(s: &JobSettings) -> Limits {
    Limits {
        memory_bytes: (s.plugin_memory_mb as usize) << 20,
        call_timeout: Duration::from_millis(s.plugin_timeout_ms),
        effects_bytes: (s.max_effects_mb as usize) << 20,
    }
}

fn parse_settings(s: &JobSettings) -> Result<(ResetPolicy, OnError), ApiError> {
    if !(1..=65536).contains(&s.plugin_memory_mb)
        || !(1..=65536).contains(&s.max_effects_mb)
        || s.plugin_timeout_ms == 0
    {
        return Err(bad_request(
            "bad_settings",
            "settings.plugin_memory_mb and settings.max_effects_mb must be 1-65536, \
             settings.plugin_timeout_ms at least 1",
        ));
    }
    let reset = ResetPolicy::from_str(&s.offset_reset, true).map_err(|_| {
        bad_request(
            "bad_settings",
            format!(
                "settings.offset_reset {:?}: use earliest, latest or none",
                s.offset_reset
            ),
        )
    })?;
    let on_error = OnError::from_str(&s.on_error, true).map_err(|_| {
        bad_request(
            "bad_settings",
            format!(
                "settings.on_error {:?}: use retry, dlq, skip or stop",
                s.on_error
            ),
        )
    })?;
    if on_error == OnError::Dlq && s.dlq_topic.is_none() {
        return Err(bad_request(
            "bad_settings",
            "settings.on_error dlq needs settings.dlq_topic",
        ));
    }
    Ok((reset, on_error))
}

/// Runs blocking work (Redis, compiling a plugin) off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("handler failed: {e}"),
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn put_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = admin.upload_limit;
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload is {size} bytes, over the limit of {limit} bytes (--max-upload-mb)"
            ),
        )
    };
    // Far too large by its announced length: refuse before reading. Slightly too large:
    // read it to the end (discarding) before answering, so the client is not cut off
    // mid-upload and sees the JSON answer.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced
        && len > limit + DRAIN_CAP
    {
        return Err(too_large(len.to_string()));
    }
    let mut bytes = Vec::new();
    let mut seen: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| bad_request("bad_body", format!("reading the upload: {e}")))?;
        seen += chunk.len() as u64;
        if seen > limit + DRAIN_CAP {
            return Err(too_large(format!("more than {seen}")));
        }
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large(seen.to_string()));
    }
    if bytes.is_empty() {
        return Err(bad_request(
            "empty",
            "the request body is empty: send the component's bytes",
        ));
    }
    let entry = blocking(move || {
        Ok(admin
            .registry
            .push(&admin.runtime, &name, Some(&version), &bytes, limit)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(entry)).into_response())
}

async fn list_plugins(State(admin): State<Shared>) -> Result<Response, ApiError> {
    let list = blocking(move || Ok(admin.registry.list()?)).await?;
    Ok(axum::Json(json!({ "plugins": list })).into_response())
}

async fn get_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let entry = blocking(move || {
        let reference = Reference::parse(&format!("{name}@{version}"))?;
        Ok(admin.registry.resolve(&reference)?)
    })
    .await?;
    Ok(axum::Json(entry).into_response())
}

async fn delete_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let reference = Reference::parse(&format!("{name}@{version}"))?;
        let entry = admin.registry.resolve(&reference)?;
        let users: Vec<String> = admin
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|j| j.entry.name == entry.name && j.entry.version == entry.version)
            .map(|j| j.spec.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in_use",
                format!(
                    "{name}@{version} is used by job(s) {}; swap or delete them first",
                    users.join(", ")
                ),
            ));
        }
        admin.registry.remove(&entry.name, &entry.version)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_job(
    State(admin): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| bad_request("bad_json", format!("job definition: {e}")))?;
    let view = blocking(move || {
        if spec.id.is_empty() {
            spec.id = format!(
                "job-{:x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros())
            );
        }
        let (entry, plugin) = admin.prepare(&spec)?;
        if admin
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&spec.id)
            || !admin.store_spec(&spec, true)?
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_exists",
                format!("job {} already exists; PATCH or DELETE it", spec.id),
            ));
        }
        let handle = admin.start(spec.clone(), entry, plugin)?;
        let view = handle.view();
        admin
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.id.clone(), handle);
        Ok(view)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

async fn list_jobs(State(admin): State<Shared>) -> Response {
    let jobs = admin.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let mut views: Vec<serde_json::Value> = jobs.values().map(JobHandle::view).collect();
    views.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    axum::Json(json!({ "jobs": views })).into_response()
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no job {id}; GET /v1/jobs lists them"),
    )
}

async fn get_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let jobs = admin.jobs.lock().unwrap_or_else(|p| p.into_inner());
    let job = jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    Ok(axum::Json(job.view()).into_response())
}

/// Swaps the job's plugin: running partitions switch at their next batch boundary.
async fn patch_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let patch: JobPatch = serde_json::from_slice(&body).map_err(|e| {
        bad_request(
            "bad_json",
            format!("{e}; only `plugin` can change on a running job (delete and recreate it for other changes)"),
        )
    })?;
    let view = blocking(move || {
        let spec = {
            let jobs = admin.jobs.lock().unwrap_or_else(|p| p.into_inner());
            jobs.get(&id).ok_or_else(|| job_not_found(&id))?.spec.clone()
        };
        let mut new_spec = spec.clone();
        new_spec.plugin = patch.plugin;
        let (entry, plugin) = admin.prepare(&new_spec)?;
        admin.store_spec(&new_spec, false)?;
        let mut jobs = admin.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
        let running = matches!(
            *job.state.lock().unwrap_or_else(|p| p.into_inner()),
            JobState::Running
        );
        if let (true, Some(slot)) = (running, &job.slot) {
            let generation = slot.swap(plugin);
            tracing::info!(job = %id, plugin = %new_spec.plugin, digest = %entry.digest, generation, "plugin swap requested");
            job.spec = new_spec;
            job.entry = entry;
        } else {
            // A failed or stopped job starts again on the new version.
            job.stop_and_join();
            *job = admin.start(new_spec, entry, plugin)?;
        }
        Ok(job.view())
    })
    .await?;
    Ok(axum::Json(view).into_response())
}

async fn delete_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let job = admin
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(mut job) = job else {
            return Err(job_not_found(&id));
        };
        job.stop_and_join();
        let mut conn = admin.redis.get_connection().map_err(redis_down)?;
        conn.hdel::<_, _, ()>(JOBS_KEY, &id).map_err(redis_down)?;
        tracing::info!(job = %id, "job deleted");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Mutating calls need `Authorization: Bearer <token>` when a token is configured.
async fn authorize(State(admin): State<Shared>, request: Request, next: Next) -> Response {
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD);
    if let (true, Some(token)) = (mutating, &admin.token) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this call needs the header `Authorization: Bearer <token>` with the server's --admin-token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn router(admin: Shared, ready: Arc<AtomicBool>) -> Router {
    let v1 = Router::new()
        .route("/v1/plugins", get(list_plugins))
        .route(
            "/v1/plugins/{name}/{version}",
            put(put_plugin).get(get_plugin).delete(delete_plugin),
        )
        .route("/v1/jobs", get(list_jobs).post(create_job))
        .route(
            "/v1/jobs/{id}",
            get(get_job).patch(patch_job).delete(delete_job),
        )
        // The upload handler enforces its own limit with a JSON answer.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(admin.clone(), authorize))
        .with_state(admin.clone());
    v1.merge(crate::metrics::routes(admin.metrics.clone(), ready))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_route",
                "no such route; the API is described in docs/openapi.json",
            )
        })
}

/// Runs the admin server until SIGINT/SIGTERM, then stops every job cleanly.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = args.admin_addr;
    let token = args.admin_token.filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the admin API on {addr} without a token: set --admin-token \
             (or STREAMHOST_ADMIN_TOKEN), or bind to a loopback address such as 127.0.0.1"
        );
    }
    // The first signal stops every job cleanly; a second one exits at once.
    let stop = crate::job::stop_on_signals()?;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::runtime::default_cache_dir);
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(cache_dir.clone()),
        ..RuntimeOptions::default()
    })
    .context("starting the WebAssembly runtime")?;
    let admin = Arc::new(Admin {
        runtime: Arc::new(runtime),
        runtimes: Mutex::new(HashMap::new()),
        cache_dir,
        registry: Registry::connect(&args.redis)?,
        redis: redis::Client::open(args.redis.as_str())
            .with_context(|| format!("Redis URL {}", args.redis))?,
        redis_url: args.redis.clone(),
        brokers: args.brokers,
        kafka: args.kafka,
        upload_limit: args.max_upload_mb << 20,
        token,
        metrics: Metrics::new(),
        jobs: Mutex::new(HashMap::new()),
    });

    // Resume the jobs defined before a restart. One that cannot start is shown as failed.
    let specs = admin
        .stored_specs()
        .map_err(|e| anyhow::anyhow!("reading job definitions from {JOBS_KEY}: {}", e.message))?;
    for spec in specs {
        let id = spec.id.clone();
        let handle = admin
            .prepare(&spec)
            .and_then(|(entry, plugin)| admin.start(spec.clone(), entry, plugin));
        match handle {
            Ok(h) => {
                admin
                    .jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, h);
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e.message, "cannot resume job");
                let entry = Entry {
                    name: String::new(),
                    version: String::new(),
                    digest: String::new(),
                    size: 0,
                    pushed_at_ms: 0,
                };
                admin.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    id,
                    JobHandle {
                        slot: None,
                        progress: Arc::default(),
                        spec,
                        entry,
                        stop: Arc::new(AtomicBool::new(true)),
                        ready: Arc::new(AtomicBool::new(false)),
                        state: Arc::new(Mutex::new(JobState::Failed(e.message))),
                        thread: None,
                    },
                );
            }
        }
    }

    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on --admin-addr {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    if admin.token.is_none() {
        tracing::warn!(addr = %bound, "no --admin-token: serving on loopback only; any local user can change plugins and jobs");
    }
    tracing::info!(addr = %bound, "admin API on http://{bound}/v1, metrics on /metrics");
    let ready = Arc::new(AtomicBool::new(true));
    let app = router(admin.clone(), ready);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the HTTP runtime")?;
    let wait_stop = stop.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                while !wait_stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await
    })
    .context("admin HTTP server")?;

    tracing::info!("stopping every job");
    let mut jobs = std::mem::take(&mut *admin.jobs.lock().unwrap_or_else(|p| p.into_inner()));
    for job in jobs.values() {
        job.stop.store(true, Ordering::SeqCst);
    }
    for job in jobs.values_mut() {
        job.stop_and_join();
    }
    Ok(())
}
