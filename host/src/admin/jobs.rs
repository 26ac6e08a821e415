//! `/v1/jobs`: a job's definition (kept in Redis so a restarted server resumes it), its
//! start on a thread of its own, its view (status, plugin, records, offsets, lag), the
//! hot swap of its plugin, and its removal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redis::Commands;
use serde_json::json;

use super::api::{ApiError, bad_request, blocking, redis_down};
use super::registry::{Entry, Reference};
use super::spec::{JobPatch, JobSpec, check_settings, valid_id};
use super::{Admin, Shared};
use crate::job::JobConfig;
use crate::pipeline::slot::PluginSlot;
use crate::runtime::{InstanceSettings, Limits, Plugin, Runtime, RuntimeOptions};
use crate::store::memory::MemoryStore;
use crate::sync::Locked;
use crate::telemetry::progress::Progress;

/// Where job definitions live: HASH, job id → the JobSpec as JSON.
pub const JOBS_KEY: &str = "streamhost:serve:jobs";

#[derive(Debug, Clone)]
enum JobState {
    Running,
    Failed(String),
    Stopped,
}

pub(super) struct JobHandle {
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
    /// A job that could not start: shown with its reason until it is swapped or deleted.
    fn failed(spec: JobSpec, reason: String) -> Self {
        let entry = Entry {
            name: String::new(),
            version: String::new(),
            digest: String::new(),
            size: 0,
            pushed_at_ms: 0,
        };
        JobHandle {
            slot: None,
            progress: Arc::default(),
            spec,
            entry,
            stop: Arc::new(AtomicBool::new(true)),
            ready: Arc::new(AtomicBool::new(false)),
            state: Arc::new(Mutex::new(JobState::Failed(reason))),
            thread: None,
        }
    }

    /// A job defined but not running: shown with its plugin until it is started.
    fn stopped(spec: JobSpec, entry: Entry) -> Self {
        JobHandle {
            slot: None,
            progress: Arc::default(),
            spec,
            entry,
            stop: Arc::new(AtomicBool::new(true)),
            ready: Arc::new(AtomicBool::new(false)),
            state: Arc::new(Mutex::new(JobState::Stopped)),
            thread: None,
        }
    }

    pub(super) fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    pub(super) fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// The job's state as the API and `/metrics` name it, and its error if it failed.
    pub(super) fn status(&self) -> (&'static str, Option<String>) {
        let state = self.state.locked().clone();
        match state {
            JobState::Running if let Some(why) = self.progress.waiting_for() => {
                ("waiting", Some(why))
            }
            JobState::Running if self.ready.load(Ordering::Relaxed) => ("running", None),
            JobState::Running => ("starting", None),
            JobState::Failed(e) => ("failed", Some(e)),
            JobState::Stopped => ("stopped", None),
        }
    }

    fn view(&self) -> serde_json::Value {
        let (status, error) = self.status();
        let p = &self.progress;
        let partitions: Vec<serde_json::Value> = p
            .partitions()
            .into_iter()
            .map(|(topic, partition, committed, lag)| {
                let end = lag.map(|l| committed + l);
                json!({"topic": topic, "partition": partition, "committed": committed, "end": end, "lag": lag})
            })
            .collect();
        let (errors, dead_lettered) = p.error_counts();
        let rate: Vec<(i64, f64)> = p
            .rates()
            .into_iter()
            .map(|(t, r)| (t, (r * 10.0).round() / 10.0))
            .collect();
        json!({
            "id": self.spec.id,
            "spec": self.spec.shown(),
            "status": status,
            "error": error,
            "plugin_name": self.entry.name,
            "plugin_version": self.entry.version,
            "plugin_digest": self.entry.digest,
            "records": p.records(),
            "partitions": partitions,
            "rate": rate,
            "errors": errors,
            "dead_lettered": dead_lettered,
            "recent_errors": p.recent_errors(),
        })
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Admin {
    /// Starts the jobs defined before a restart. One that cannot start is shown as failed.
    pub(super) fn resume_stored_jobs(&self) -> Result<(), ApiError> {
        for spec in self.stored_specs()? {
            let id = spec.id.clone();
            let handle = if spec.stopped {
                // A stopped job is not loaded: only its registry entry is shown.
                self.entry_of(&spec)
                    .map(|entry| JobHandle::stopped(spec.clone(), entry))
            } else {
                self.prepare(&spec)
                    .and_then(|(entry, plugin)| self.start(spec.clone(), entry, plugin))
            };
            let handle = handle.unwrap_or_else(|e| {
                tracing::error!(job = %id, error = %e.message, "cannot resume job");
                JobHandle::failed(spec, e.message)
            });
            self.jobs.locked().insert(id, handle);
        }
        Ok(())
    }

    /// The registry entry a job runs: the bytes of its pinned digest when it has one (a
    /// NAME alone stays on the version it was created or swapped to).
    fn entry_of(&self, spec: &JobSpec) -> Result<Entry, ApiError> {
        let reference = Reference::parse(&spec.plugin)?;
        let Some(pinned) = &spec.plugin_digest else {
            return Ok(self.registry.resolve(&reference)?);
        };
        if let Reference::Latest(name) = &reference {
            let pinned = Reference::Digest(name.clone(), pinned.clone());
            return Ok(self.registry.resolve(&pinned)?);
        }
        let entry = self.registry.resolve(&reference)?;
        if entry.digest != *pinned {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "digest_changed",
                format!(
                    "job {} runs {} with digest {pinned}, but the registry now has digest {} \
                     under that name (a version's bytes never change, so the registry was \
                     edited outside the host); push the job's bytes under a new version and \
                     PATCH the job to it",
                    spec.id, spec.plugin, entry.digest
                ),
            ));
        }
        Ok(entry)
    }

    pub(super) fn stop_all_jobs(&self) {
        let mut jobs = std::mem::take(&mut *self.jobs.locked());
        for job in jobs.values() {
            job.stop.store(true, Ordering::SeqCst);
        }
        for job in jobs.values_mut() {
            job.stop_and_join();
        }
    }

    fn stored_specs(&self) -> Result<Vec<JobSpec>, ApiError> {
        let mut conn = self.redis.connect().map_err(redis_down)?;
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
        let mut conn = self.redis.connect().map_err(redis_down)?;
        let json = serde_json::to_string(spec).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("job {} cannot be stored as JSON: {e}", spec.id),
            )
        })?;
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
        check_settings(&spec.settings)?;
        let entry = self.entry_of(spec)?;
        let runtime = self.runtime_for(&spec.settings.sandbox.limits())?;
        let (entry, plugin) = self.registry.load_entry(&runtime, entry)?;
        self.check_init(&plugin, spec)?;
        Ok((entry, plugin))
    }

    pub(super) fn runtime_for(&self, limits: &Limits) -> Result<Arc<Runtime>, ApiError> {
        if limits == self.runtime.limits() {
            return Ok(self.runtime.clone());
        }
        let mut runtimes = self.runtimes.locked();
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
        let s = &spec.settings;
        let stop = Arc::new(AtomicBool::new(false));
        let group = spec.namespace().to_owned();
        let mut config = JobConfig::new(
            plugin,
            spec.topics.clone(),
            group.clone(),
            group,
            self.redis_config.clone(),
            s.clone(),
        )
        .map_err(|e| bad_request("bad_settings", e.to_string()))?;
        let (slot, ready, progress) = (
            config.plugin.clone(),
            config.ready.clone(),
            config.progress.clone(),
        );
        config.plugin_config = spec.config.clone().into_iter().collect();
        config.brokers = self.brokers.clone();
        config.kafka = self.kafka.clone();
        config.kafka.extend(s.kafka.clone());
        config.output_topic = spec.output_topic.clone();
        config.partitions = spec.partitions.clone();
        config.metrics = Some(self.metrics.clone());
        let state = Arc::new(Mutex::new(JobState::Running));
        let (job_state, job_stop, id) = (state.clone(), stop.clone(), spec.id.clone());
        let thread = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let span = tracing::info_span!("job", id = %id);
                let _enter = span.enter();
                let outcome = crate::job::run(config, job_stop);
                let mut state = job_state.locked();
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

pub async fn create_job(
    State(admin): State<Shared>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let mut spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| bad_request("bad_json", format!("job definition: {e}")))?;
    let view = blocking(move || {
        if spec.id.is_empty() {
            spec.id = format!("job-{:x}", crate::clock::unix_nanos() / 1000);
        }
        let (entry, plugin) = admin.prepare(&spec)?;
        spec.plugin_digest = Some(entry.digest.clone());
        if admin.jobs.locked().contains_key(&spec.id) || !admin.store_spec(&spec, true)? {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_exists",
                format!("job {} already exists; PATCH or DELETE it", spec.id),
            ));
        }
        let handle = if spec.stopped {
            JobHandle::stopped(spec.clone(), entry)
        } else {
            admin.start(spec.clone(), entry, plugin)?
        };
        let view = handle.view();
        admin.jobs.locked().insert(spec.id.clone(), handle);
        Ok(view)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

pub async fn list_jobs(State(admin): State<Shared>) -> Response {
    let jobs = admin.jobs.locked();
    let mut views: Vec<serde_json::Value> = jobs.values().map(JobHandle::view).collect();
    views.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    axum::Json(json!({ "jobs": views })).into_response()
}

pub(super) fn job_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no job {id}; GET /v1/jobs lists them"),
    )
}

pub async fn get_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let jobs = admin.jobs.locked();
    let job = jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
    Ok(axum::Json(job.view()).into_response())
}

/// Swaps the job's plugin: running partitions switch at their next batch boundary.
pub async fn patch_job(
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
            let jobs = admin.jobs.locked();
            jobs.get(&id).ok_or_else(|| job_not_found(&id))?.spec.clone()
        };
        let mut new_spec = spec.clone();
        new_spec.plugin = patch.plugin;
        new_spec.plugin_digest = None;
        let (entry, plugin) = admin.prepare(&new_spec)?;
        new_spec.plugin_digest = Some(entry.digest.clone());
        admin.store_spec(&new_spec, false)?;
        let old_thread = {
            let mut jobs = admin.jobs.locked();
            let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
            let running = matches!(
                *job.state.locked(),
                JobState::Running
            );
            if job.spec.stopped {
                // Swapped while stopped: it starts on the new version when started.
                job.spec = new_spec;
                job.entry = entry;
                return Ok(job.view());
            }
            if let (true, Some(slot)) = (running, &job.slot) {
                let generation = slot.swap(plugin);
                tracing::info!(job = %id, plugin = %new_spec.plugin, digest = %entry.digest, generation, "plugin swap requested");
                job.spec = new_spec;
                job.entry = entry;
                return Ok(job.view());
            }
            // A failed or stopping job starts again on the new version, once its thread
            // ended; joined outside the jobs lock, as in `stop_job`.
            job.stop.store(true, Ordering::SeqCst);
            job.thread.take()
        };
        if let Some(t) = old_thread {
            let _ = t.join();
        }
        let started = admin.start(new_spec, entry, plugin)?;
        let mut jobs = admin.jobs.locked();
        let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
        *job = started;
        Ok(job.view())
    })
    .await?;
    Ok(axum::Json(view).into_response())
}

/// Stops a job and keeps its definition: it stays stopped across restarts until started.
pub async fn stop_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = blocking(move || {
        let spec = {
            let jobs = admin.jobs.locked();
            jobs.get(&id)
                .ok_or_else(|| job_not_found(&id))?
                .spec
                .clone()
        };
        let stopped = JobSpec {
            stopped: true,
            ..spec
        };
        admin.store_spec(&stopped, false)?;
        // The job thread is joined outside the jobs lock: a job stopping takes up to a
        // batch, and the console and /metrics read the list meanwhile.
        let thread = {
            let mut jobs = admin.jobs.locked();
            let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
            job.stop.store(true, Ordering::SeqCst);
            job.thread.take()
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
        let mut jobs = admin.jobs.locked();
        let job = jobs.get_mut(&id).ok_or_else(|| job_not_found(&id))?;
        *job = JobHandle::stopped(stopped, job.entry.clone());
        let view = job.view();
        drop(jobs);
        tracing::info!(job = %id, "job stopped");
        Ok(view)
    })
    .await?;
    Ok(axum::Json(view).into_response())
}

/// Starts a stopped or failed job again, on the plugin version its definition names.
pub async fn start_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = blocking(move || {
        let (spec, status) = {
            let jobs = admin.jobs.locked();
            let job = jobs.get(&id).ok_or_else(|| job_not_found(&id))?;
            (job.spec.clone(), job.status().0)
        };
        if matches!(status, "running" | "starting" | "waiting") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "job_running",
                format!(
                    "job {id} is already running; stop it first, or PATCH it to swap its plugin"
                ),
            ));
        }
        let spec = JobSpec {
            stopped: false,
            ..spec
        };
        let (entry, plugin) = admin.prepare(&spec)?;
        admin.store_spec(&spec, false)?;
        let handle = admin.start(spec, entry, plugin)?;
        let view = handle.view();
        let old = admin.jobs.locked().insert(id.clone(), handle);
        if let Some(mut old) = old {
            old.stop_and_join();
        }
        tracing::info!(job = %id, "job started again");
        Ok(view)
    })
    .await?;
    Ok(axum::Json(view).into_response())
}

pub async fn delete_job(
    State(admin): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let job = admin.jobs.locked().remove(&id);
        let Some(mut job) = job else {
            return Err(job_not_found(&id));
        };
        job.stop_and_join();
        let mut conn = admin.redis.connect().map_err(redis_down)?;
        conn.hdel::<_, _, ()>(JOBS_KEY, &id).map_err(redis_down)?;
        tracing::info!(job = %id, "job deleted");
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
