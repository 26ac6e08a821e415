//! The WebAssembly side of the host: one Engine and one Linker for the whole process,
//! each plugin compiled once (and cached on disk), instances made from an `InstancePre`,
//! each instance in its own Store with its own limits.
//!
//! A trap, a deadline or an exhausted memory fails the batch in hand and poisons only
//! that instance; `Runner` replaces it with a fresh one before the next batch.

mod cache;
mod columns;
mod compat;
mod error;
mod host_api;
mod instance;
mod limits;
mod runner;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{ResourceTable, WasiCtxBuilder};

pub use self::cache::default_cache_dir;
pub use self::error::{LimitExceeded, LoadError, ProcessError};
pub use self::instance::PluginInstance;
use self::instance::{deadline_ticks, describe_trap};
pub use self::limits::Limits;
pub use self::runner::Runner;
pub use crate::contract::streamhost::plugin::types::{
    Header, OutputRecord, PluginError, Timer, TimerContext,
};

use self::cache::CompileCache;
use self::host_api::HostState;
use self::limits::Limiter;
use self::stdio::{LogStream, Stream};
use crate::batch::effects::Effects;
use crate::contract::exports::streamhost::plugin::{
    columns_handler, event_time, handler, lifecycle, timer_handler,
};
use crate::contract::v0_1::exports::streamhost::plugin as old;
use crate::store::StateStore;

/// The contract version this host implements (`package streamhost:plugin@...`).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The older version whose plugins still load (adapted in `compat`).
pub const OLD_CONTRACT_VERSION: &str = "0.1.0";
const CONTRACT_PACKAGE: &str = "streamhost:plugin";
const HANDLER_INTERFACE: &str = "handler";
const COLUMNS_HANDLER_INTERFACE: &str = "columns-handler";
const LIFECYCLE_INTERFACE: &str = "lifecycle";
const TIMER_HANDLER_INTERFACE: &str = "timer-handler";
const EVENT_TIME_INTERFACE: &str = "event-time";

/// How often the epoch advances; the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of a `Runtime`.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled plugins are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub limits: Limits,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: Some(default_cache_dir()),
            limits: Limits::default(),
        }
    }
}

/// The process-wide WebAssembly engine, linker and compile cache.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<CompileCache>,
    limits: Limits,
    _ticker: EpochTicker,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        crate::contract::AllExports::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        crate::contract::v0_1::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;

        let cache = options.cache_dir.map(|dir| CompileCache::new(&engine, dir));
        let ticker = EpochTicker::start(engine.clone()).map_err(|e| {
            anyhow::anyhow!(
                "cannot start the thread that enforces plugin deadlines ({e}); the process \
                 may be at its thread limit (ulimit -u)"
            )
        })?;
        Ok(Self {
            engine,
            linker,
            cache,
            limits: options.limits,
            _ticker: ticker,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Loads, validates and pre-links the plugin at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => LoadError::NotFound {
                path: path.to_owned(),
            },
            _ => LoadError::Read {
                path: path.to_owned(),
                cause,
            },
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".to_owned());
        self.load_bytes(&name, path, &bytes)
    }

    /// Loads a plugin from its bytes. `origin` names it in error messages.
    pub fn load_bytes(&self, name: &str, origin: &Path, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let path = origin.to_owned();
        check_binary_kind(&path, bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let component = self.compile(&path, &digest, bytes)?;
        let exports = check_exports(&self.engine, &component, &path)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| import_error(&self.engine, &component, &path, e))?;
        let wrong = |interface: &str, version: &str| {
            let path = path.clone();
            let expected = export_name(interface, version);
            move |e: wasmtime::Error| LoadError::WrongWorld {
                path,
                exports: format!("{e:#}"),
                expected,
            }
        };
        let indices = if exports.version == OLD_CONTRACT_VERSION {
            let v = OLD_CONTRACT_VERSION;
            Indices::V0_1 {
                handler: old::handler::GuestIndices::new(&pre)
                    .map_err(wrong(HANDLER_INTERFACE, v))?,
                lifecycle: exports
                    .lifecycle
                    .then(|| old::lifecycle::GuestIndices::new(&pre))
                    .transpose()
                    .map_err(wrong(LIFECYCLE_INTERFACE, v))?,
            }
        } else {
            let v = CONTRACT_VERSION;
            Indices::V0_2 {
                handler: if exports.columns {
                    HandlerIndices::Columns(
                        columns_handler::GuestIndices::new(&pre)
                            .map_err(wrong(COLUMNS_HANDLER_INTERFACE, v))?,
                    )
                } else {
                    HandlerIndices::Records(
                        handler::GuestIndices::new(&pre).map_err(wrong(HANDLER_INTERFACE, v))?,
                    )
                },
                lifecycle: exports
                    .lifecycle
                    .then(|| lifecycle::GuestIndices::new(&pre))
                    .transpose()
                    .map_err(wrong(LIFECYCLE_INTERFACE, v))?,
                timer_handler: exports
                    .timer_handler
                    .then(|| timer_handler::GuestIndices::new(&pre))
                    .transpose()
                    .map_err(wrong(TIMER_HANDLER_INTERFACE, v))?,
                event_time: exports
                    .event_time
                    .then(|| event_time::GuestIndices::new(&pre))
                    .transpose()
                    .map_err(wrong(EVENT_TIME_INTERFACE, v))?,
            }
        };
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                name: Arc::from(name),
                origin: Arc::from(origin.to_string_lossy().as_ref()),
                digest,
                pre,
                indices,
                limits: self.limits.clone(),
            }),
        })
    }

    fn compile(&self, path: &Path, digest: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, digest))
        {
            return Ok(component);
        }
        // A large plugin (a Python or JavaScript interpreter) takes a minute or more on a
        // small machine: say so, rather than sit silent.
        let cached_in = self.cache.as_ref().map_or_else(
            || "not cached: --no-compile-cache".to_owned(),
            |c| format!("the result is cached in {}", c.dir().display()),
        );
        tracing::info!(
            plugin = %path.display(),
            "compiling the plugin ({:.1} MiB) to native code, once; {cached_in}",
            bytes.len() as f64 / (1 << 20) as f64
        );
        let started = std::time::Instant::now();
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            path: path.to_owned(),
            detail: format!("{e:#}"),
        })?;
        tracing::info!(plugin = %path.display(), "compiled in {:.1} s", started.elapsed().as_secs_f64());
        if let Some(cache) = &self.cache {
            cache.store(digest, &component);
        }
        Ok(component)
    }
}

fn export_name(interface: &str, version: &str) -> String {
    format!("{CONTRACT_PACKAGE}/{interface}@{version}")
}

fn supported_versions() -> String {
    format!("{CONTRACT_VERSION} or {OLD_CONTRACT_VERSION}")
}

/// The contract version a component was built against, and its optional exports.
struct Exports {
    version: &'static str,
    /// `columns-handler` instead of `handler`.
    columns: bool,
    lifecycle: bool,
    timer_handler: bool,
    event_time: bool,
}

/// Tells "not wasm at all" and "a core module" apart from a component before compiling,
/// so those common mistakes get a message that says what to do.
fn check_binary_kind(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    // The 4 bytes after the magic: version 1, layer 0 for a core module; layer 1 for a
    // component.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Checks that the component exports the contract's handler at a version this host
/// supports; returns that version and which optional interfaces it exports.
fn check_exports(
    engine: &Engine,
    component: &Component,
    path: &Path,
) -> Result<Exports, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let handler_prefix = format!("{CONTRACT_PACKAGE}/{HANDLER_INTERFACE}@");
    let columns = exports.contains(&export_name(COLUMNS_HANDLER_INTERFACE, CONTRACT_VERSION));
    let Some(version) = [CONTRACT_VERSION, OLD_CONTRACT_VERSION]
        .into_iter()
        .find(|v| exports.contains(&export_name(HANDLER_INTERFACE, v)))
        .or(columns.then_some(CONTRACT_VERSION))
    else {
        if let Some(other) = exports.iter().find(|e| e.starts_with(&handler_prefix)) {
            return Err(LoadError::IncompatibleVersion {
                path: path.to_owned(),
                expected: supported_versions(),
                found: other[handler_prefix.len()..].to_owned(),
            });
        }
        return Err(LoadError::WrongWorld {
            path: path.to_owned(),
            exports: exports.join(", "),
            expected: export_name(HANDLER_INTERFACE, CONTRACT_VERSION),
        });
    };
    let has = |interface: &str| exports.contains(&export_name(interface, version));
    Ok(Exports {
        version,
        columns: version == CONTRACT_VERSION && !has(HANDLER_INTERFACE),
        lifecycle: has(LIFECYCLE_INTERFACE),
        timer_handler: version == CONTRACT_VERSION && has(TIMER_HANDLER_INTERFACE),
        event_time: version == CONTRACT_VERSION && has(EVENT_TIME_INTERFACE),
    })
}

/// Turns a linking failure into a message naming the contract versions when the plugin
/// imports another version of the contract, or the missing imports otherwise.
fn import_error(
    engine: &Engine,
    component: &Component,
    path: &Path,
    e: wasmtime::Error,
) -> LoadError {
    let prefix = format!("{CONTRACT_PACKAGE}/");
    for (name, _) in component.component_type().imports(engine) {
        if let Some(rest) = name.strip_prefix(&prefix)
            && let Some((_, version)) = rest.split_once('@')
            && version != CONTRACT_VERSION
            && version != OLD_CONTRACT_VERSION
        {
            return LoadError::IncompatibleVersion {
                path: path.to_owned(),
                expected: supported_versions(),
                found: version.to_owned(),
            };
        }
    }
    LoadError::UnsupportedImports {
        path: path.to_owned(),
        detail: format!("{e:#}"),
    }
}

/// A loaded, validated plugin: cheap to clone, instantiated once per partition worker.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    name: Arc<str>,
    /// Where it came from: a file path, or `NAME@VERSION` in the registry.
    origin: Arc<str>,
    digest: String,
    pre: InstancePre<HostState>,
    indices: Indices,
    limits: Limits,
}

/// Where a component's exports are, per contract version.
enum Indices {
    V0_1 {
        handler: old::handler::GuestIndices,
        lifecycle: Option<old::lifecycle::GuestIndices>,
    },
    V0_2 {
        handler: HandlerIndices,
        lifecycle: Option<lifecycle::GuestIndices>,
        timer_handler: Option<timer_handler::GuestIndices>,
        event_time: Option<event_time::GuestIndices>,
    },
}

/// A live instance's exports.
enum Guests {
    V0_1 {
        handler: old::handler::Guest,
    },
    V0_2 {
        handler: HandlerGuest,
        timer_handler: Option<timer_handler::Guest>,
        event_time: Option<event_time::Guest>,
    },
}

/// A 0.2 plugin's batch handler: `handler` (records) or `columns-handler`.
enum HandlerIndices {
    Records(handler::GuestIndices),
    Columns(columns_handler::GuestIndices),
}

enum HandlerGuest {
    Records(handler::Guest),
    Columns(columns_handler::Guest),
}

/// What an instance needs besides the plugin: where its state lives, which partition it
/// serves (for log tags) and the job's configuration for `init`.
#[derive(Clone)]
pub struct InstanceSettings {
    pub store: Arc<dyn StateStore>,
    pub partition: Option<i32>,
    pub config: Vec<(String, String)>,
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where it came from: its file path, or `NAME@VERSION` for a registry plugin.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Hex sha256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn has_init(&self) -> bool {
        match &self.inner.indices {
            Indices::V0_1 { lifecycle, .. } => lifecycle.is_some(),
            Indices::V0_2 { lifecycle, .. } => lifecycle.is_some(),
        }
    }

    /// The contract version it was built against.
    pub fn contract_version(&self) -> &'static str {
        match &self.inner.indices {
            Indices::V0_1 { .. } => OLD_CONTRACT_VERSION,
            Indices::V0_2 { .. } => CONTRACT_VERSION,
        }
    }

    /// Whether it can have time: timers, expiries, a watermark (contract 0.2).
    pub fn has_time(&self) -> bool {
        matches!(self.inner.indices, Indices::V0_2 { .. })
    }

    pub fn has_timer_handler(&self) -> bool {
        matches!(
            self.inner.indices,
            Indices::V0_2 {
                timer_handler: Some(_),
                ..
            }
        )
    }

    pub fn has_event_time(&self) -> bool {
        matches!(
            self.inner.indices,
            Indices::V0_2 {
                event_time: Some(_),
                ..
            }
        )
    }

    /// A fresh instance, with `init` already run.
    pub fn instantiate(&self, settings: &InstanceSettings) -> Result<PluginInstance, LoadError> {
        let p = &*self.inner;
        let stdout = LogStream::new(p.name.clone(), settings.partition, Stream::Stdout);
        let stderr = LogStream::new(p.name.clone(), settings.partition, Stream::Stderr);
        // No preopened directories, no environment, no arguments, no network.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout)
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: p.limits.memory_bytes,
                current_bytes: 0,
            },
            effects: Effects::new(p.limits.effects_bytes),
            store: settings.store.clone(),
            plugin: p.name.clone(),
            partition: settings.partition,
            timer_handler: self.has_timer_handler(),
        };
        let mut store = Store::new(p.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks(p.limits.call_timeout));

        let failed = |e: wasmtime::Error, stderr: &LogStream| LoadError::Instantiate {
            plugin: p.name.to_string(),
            detail: describe_trap(&p.name, &p.limits, e, stderr).to_string(),
        };
        let instance = p
            .pre
            .instantiate(&mut store)
            .map_err(|e| failed(e, &stderr))?;
        let (guests, init) = match &p.indices {
            Indices::V0_1 { handler, lifecycle } => {
                let handler = handler
                    .load(&mut store, &instance)
                    .map_err(|e| failed(e, &stderr))?;
                let init = match lifecycle {
                    Some(l) => {
                        let l = l
                            .load(&mut store, &instance)
                            .map_err(|e| failed(e, &stderr))?;
                        store.set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
                        Some(l.call_init(&mut store, &settings.config))
                    }
                    None => None,
                };
                (Guests::V0_1 { handler }, init)
            }
            Indices::V0_2 {
                handler,
                lifecycle,
                timer_handler,
                event_time,
            } => {
                let handler = match handler {
                    HandlerIndices::Records(h) => {
                        h.load(&mut store, &instance).map(HandlerGuest::Records)
                    }
                    HandlerIndices::Columns(h) => {
                        h.load(&mut store, &instance).map(HandlerGuest::Columns)
                    }
                }
                .map_err(|e| failed(e, &stderr))?;
                let timer_handler = timer_handler
                    .as_ref()
                    .map(|t| t.load(&mut store, &instance))
                    .transpose()
                    .map_err(|e| failed(e, &stderr))?;
                let event_time = event_time
                    .as_ref()
                    .map(|t| t.load(&mut store, &instance))
                    .transpose()
                    .map_err(|e| failed(e, &stderr))?;
                let init = match lifecycle {
                    Some(l) => {
                        let l = l
                            .load(&mut store, &instance)
                            .map_err(|e| failed(e, &stderr))?;
                        store.set_epoch_deadline(deadline_ticks(p.limits.call_timeout));
                        Some(l.call_init(&mut store, &settings.config))
                    }
                    None => None,
                };
                let guests = Guests::V0_2 {
                    handler,
                    timer_handler,
                    event_time,
                };
                (guests, init)
            }
        };
        if let Some(init) = init {
            match init {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    return Err(LoadError::InitFailed {
                        plugin: p.name.to_string(),
                        message,
                    });
                }
                Err(e) => return Err(failed(e, &stderr)),
            }
        } else if !settings.config.is_empty() {
            tracing::warn!(
                plugin = &*p.name,
                "plugin has no init export; its --config settings are ignored"
            );
        }
        Ok(PluginInstance {
            plugin: self.clone(),
            store,
            guests,
            stderr,
        })
    }
}

/// Advances the engine's epoch on a background thread; dropping it stops the thread.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: OnceLock<JoinHandle<()>>,
}

impl EpochTicker {
    /// Fails rather than run without deadlines: a plugin that loops would then hold its
    /// partition for ever.
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        let thread = OnceLock::new();
        let _ = thread.set(handle);
        Ok(Self { stop, thread })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }
}
