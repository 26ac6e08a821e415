//! `host serve`: the admin HTTP API and the console. Plugins go into the registry (Redis),
//! jobs are defined, inspected, stopped, started, hot-swapped and deleted over `/v1`, their
//! state read and their dead letters replayed; the console at `/` draws itself from the
//! same API; `/metrics`, `/healthz` and `/readyz` sit beside it. The API is described in
//! docs/openapi.json.
//!
//! Each job runs as in `host run` (its own consumer, producer, Redis connections and
//! partition threads) on a thread of its own: one job failing does not touch another.
//! Job definitions live in Redis (`streamhost:serve:jobs`, id → JSON), so a restarted
//! server resumes its jobs; their offsets and state are in Redis anyway.

mod api;
mod console;
mod dead_letters;
mod jobs;
mod plugins;
pub mod registry;
mod spec;
mod state;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post, put};

use crate::runtime::{Limits, Runtime, RuntimeOptions};
use crate::sync::Locked;
use crate::telemetry::metrics::Metrics;
use api::ApiError;
use jobs::{JOBS_KEY, JobHandle};
use registry::Registry;

pub use spec::{JobSettings, JobSpec};

struct Admin {
    /// Validates uploads; jobs with the default sandbox run on it too.
    runtime: Arc<Runtime>,
    /// One runtime per distinct sandbox setting of the jobs (they share the disk cache).
    runtimes: Mutex<HashMap<Limits, Arc<Runtime>>>,
    cache_dir: std::path::PathBuf,
    registry: Registry,
    redis: Arc<crate::store::redis::Redis>,
    /// How the jobs reach Redis (each job opens its own connections).
    redis_config: crate::store::redis::RedisConfig,
    brokers: String,
    kafka: Vec<(String, String)>,
    upload_limit: u64,
    token: Option<String>,
    metrics: Arc<Metrics>,
    jobs: Mutex<HashMap<String, JobHandle>>,
}

type Shared = Arc<Admin>;

fn router(admin: Shared, ready: Arc<AtomicBool>) -> Router {
    let v1 = Router::new()
        .route("/v1/plugins", get(plugins::list_plugins))
        .route(
            "/v1/plugins/{name}/{version}",
            put(plugins::put_plugin)
                .get(plugins::get_plugin)
                .delete(plugins::delete_plugin),
        )
        .route("/v1/jobs", get(jobs::list_jobs).post(jobs::create_job))
        .route(
            "/v1/jobs/{id}",
            get(jobs::get_job)
                .patch(jobs::patch_job)
                .delete(jobs::delete_job),
        )
        .route("/v1/jobs/{id}/stop", post(jobs::stop_job))
        .route("/v1/jobs/{id}/start", post(jobs::start_job))
        .route("/v1/jobs/{id}/state", get(state::scan_state))
        .route("/v1/jobs/{id}/state/{*key}", get(state::get_state))
        .route(
            "/v1/jobs/{id}/dead-letters",
            get(dead_letters::list_dead_letters),
        )
        .route(
            "/v1/jobs/{id}/dead-letters/replay",
            post(dead_letters::replay_dead_letters),
        )
        .route("/v1/info", get(console::info))
        .route("/", get(console::index))
        .route("/console/app.js", get(console::app_js))
        .route("/console/app.css", get(console::app_css))
        // The upload handler enforces its own limit with a JSON answer.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            admin.clone(),
            api::authorize,
        ))
        .with_state(admin.clone());
    let scraped = admin.clone();
    let before_scrape = Arc::new(move || count_jobs_and_plugins(&scraped));
    v1.merge(crate::telemetry::metrics::routes_with(
        admin.metrics.clone(),
        ready,
        before_scrape,
    ))
    .fallback(|| async {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_route",
            "no such route; the API is described in docs/openapi.json",
        )
    })
    .layer(middleware::from_fn_with_state(admin, count_request))
}

/// `streamhost_jobs` and `streamhost_plugins`, as of this scrape. Every state is exported,
/// at zero too, so a `max_over_time` or an alert on `failed` sees the first one.
fn count_jobs_and_plugins(admin: &Admin) {
    let mut counts: HashMap<&'static str, i64> =
        ["starting", "running", "waiting", "failed", "stopped"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    for job in admin.jobs.locked().values() {
        *counts.entry(job.status().0).or_insert(0) += 1;
    }
    for (state, n) in counts {
        let labels = crate::telemetry::metrics::StateLabels {
            state: state.to_owned(),
        };
        admin.metrics.jobs.get_or_create(&labels).set(n);
    }
    // A registry Redis cannot answer now keeps the last count; the scrape still answers.
    match admin.registry.list() {
        Ok(entries) => {
            admin.metrics.plugins.set(entries.len() as i64);
        }
        Err(e) => tracing::debug!(error = %e, "counting plugins for /metrics"),
    }
}

/// The definition of `host serve` job `id`, if the server at `redis` has one (`host state`
/// and `host dlq` take a served job's namespace, plugin and dead-letter topic from it).
pub fn stored_job(redis: &crate::store::redis::Redis, id: &str) -> anyhow::Result<Option<JobSpec>> {
    use redis::Commands;
    let mut conn = redis
        .connect()
        .map_err(|e| redis.error(JOBS_KEY, e))
        .with_context(|| format!("reading job definitions in {JOBS_KEY}"))?;
    let json: Option<String> = conn
        .hget(JOBS_KEY, id)
        .map_err(|e| redis.error(JOBS_KEY, e))?;
    json.map(|j| {
        serde_json::from_str(&j)
            .with_context(|| format!("job {id}'s definition in {JOBS_KEY} is not readable"))
    })
    .transpose()
}

/// The `host serve` job whose namespace (group) is `group`, if one is defined.
pub fn stored_job_in_group(
    redis: &crate::store::redis::Redis,
    group: &str,
) -> anyhow::Result<Option<JobSpec>> {
    use redis::Commands;
    let mut conn = redis
        .connect()
        .map_err(|e| redis.error(JOBS_KEY, e))
        .with_context(|| format!("reading job definitions in {JOBS_KEY}"))?;
    let all: Vec<(String, String)> = conn
        .hgetall(JOBS_KEY)
        .map_err(|e| redis.error(JOBS_KEY, e))?;
    Ok(all
        .into_iter()
        .filter_map(|(_, json)| serde_json::from_str::<JobSpec>(&json).ok())
        .find(|spec| spec.namespace() == group))
}

/// The stored jobs (`host serve`'s, running or not) that run `entry`'s bytes: those pinned
/// to its digest, and those of older releases without a pin whose reference names it.
pub fn stored_jobs_using(
    redis: &crate::store::redis::Redis,
    registry: &registry::Registry,
    entry: &registry::Entry,
) -> Result<Vec<String>, registry::RegistryError> {
    use redis::Commands;
    let store_error = |e| registry::RegistryError::Store(redis.error(JOBS_KEY, e));
    let mut conn = redis.connect().map_err(store_error)?;
    let all: Vec<(String, String)> = conn.hgetall(JOBS_KEY).map_err(store_error)?;
    let mut users = Vec::new();
    for (id, json) in all {
        let Ok(spec) = serde_json::from_str::<JobSpec>(&json) else {
            continue;
        };
        let uses = match &spec.plugin_digest {
            Some(digest) => *digest == entry.digest,
            None => registry::Reference::parse(&spec.plugin)
                .and_then(|r| registry.resolve(&r))
                .is_ok_and(|e| e == *entry),
        };
        if uses {
            users.push(id);
        }
    }
    users.sort();
    Ok(users)
}

/// Samples every job's record count for the console's rate charts.
async fn sample_rates(admin: Shared) {
    let mut every = tokio::time::interval(crate::telemetry::progress::RATE_EVERY);
    loop {
        every.tick().await;
        let now = crate::clock::unix_ms();
        for job in admin.jobs.locked().values() {
            job.progress().sample(now);
        }
    }
}

/// Counts every admin request by its route pattern, method and status.
async fn count_request(
    axum::extract::State(admin): axum::extract::State<Shared>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", |m| m.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let labels = crate::telemetry::metrics::RequestLabels {
        route,
        method,
        status: response.status().as_u16().to_string(),
    };
    admin.metrics.admin_requests.get_or_create(&labels).inc();
    response
}

/// Runs the admin server until SIGINT/SIGTERM, then stops every job cleanly.
///
/// The order matters: bind the address first (a busy address fails before any job joins
/// its group), then wait for Redis (as long as a commit would), then resume the stored
/// jobs, then serve.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let addr: SocketAddr = args.admin_addr;
    let token = args.admin_token.filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the admin API on {addr} without a token: set --admin-token \
             (or STREAMHOST_ADMIN_TOKEN), or bind to a loopback address such as 127.0.0.1"
        );
    }
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on --admin-addr {addr}; is another server using it?")
    })?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    // The first signal stops every job cleanly; a second one exits at once.
    let stop = crate::job::stop_on_signals()?;
    let redis_give_up = Duration::from_millis(args.redis_give_up_ms);
    let redis_config = args.redis.config();
    let redis = Arc::new(crate::store::redis::Redis::new(&redis_config)?);
    crate::store::redis::wait_until_reachable(&redis, redis_give_up, &stop, &|_| {})?;
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
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
        registry: Registry::new(redis.clone()),
        redis,
        redis_config,
        brokers: args.kafka.brokers.clone(),
        kafka: args.kafka.properties()?,
        upload_limit: args.max_upload_mb << 20,
        token,
        metrics: Metrics::new(),
        jobs: Mutex::new(HashMap::new()),
    });
    admin
        .resume_stored_jobs()
        .map_err(|e| anyhow::anyhow!("reading job definitions from {JOBS_KEY}: {}", e.message))?;

    if admin.token.is_none() {
        tracing::warn!(addr = %bound, "no --admin-token: serving on loopback only; any local user can change plugins and jobs");
    }
    tracing::info!(addr = %bound, "admin API on http://{bound}/v1, metrics on /metrics");
    let ready = Arc::new(AtomicBool::new(true));
    let app = router(admin.clone(), ready);
    let sampled = admin.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the HTTP runtime")?;
    let wait_stop = stop.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(sample_rates(sampled));
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
    admin.stop_all_jobs();
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the admin API, /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STREAMHOST_ADMIN_ADDR")]
    pub admin_addr: std::net::SocketAddr,
    /// Bearer token that mutating calls (PUT, POST, PATCH, DELETE) must present. Without
    /// one the server only binds to a loopback address.
    #[arg(long, env = "STREAMHOST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Redis: registry, job definitions, offsets and state.
    #[command(flatten)]
    pub redis: crate::store::redis::RedisArgs,
    /// Kafka for every job (a job's settings.kafka add to these).
    #[command(flatten)]
    pub kafka: crate::kafka::config::KafkaArgs,
    /// How long to wait for an unreachable Redis at start-up before giving up, in
    /// milliseconds (each job waits as long for its commits: settings.redis_give_up_ms).
    #[arg(long, default_value_t = 300_000, env = "STREAMHOST_REDIS_GIVE_UP_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub redis_give_up_ms: u64,
    /// Largest plugin upload accepted, in MiB.
    #[arg(long, default_value_t = 64, env = "STREAMHOST_MAX_UPLOAD_MB", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_upload_mb: u64,
    /// Where compiled plugins are cached [default: ~/.cache/streamhost/compiled].
    #[arg(long, env = "STREAMHOST_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
}
