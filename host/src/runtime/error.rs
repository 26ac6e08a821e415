//! What can go wrong loading a plugin or running a batch through it. Every message names
//! the plugin and says what to do.

use std::path::PathBuf;
use std::time::Duration;

use crate::batch::effects::EffectError;

/// Why a plugin could not be loaded or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin file {path} does not exist; check --plugin, or build the plugin first")]
    NotFound { path: PathBuf },
    #[error("cannot read plugin file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "plugin {path} is not a WebAssembly file (it does not start with the `\\0asm` magic \
         bytes); pass the compiled .wasm component, not source code or an archive"
    )]
    NotWasm { path: PathBuf },
    #[error(
        "plugin {path} is a core WebAssembly module, not a component; build it for \
         wasm32-wasip2 (cargo build --target wasm32-wasip2) or wrap it with \
         `wasm-tools component new` (see docs/)"
    )]
    CoreModule { path: PathBuf },
    #[error("plugin {path} is not a valid WebAssembly component: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "plugin {path} does not implement the streamhost plugin world: it exports [{exports}], \
         but a plugin must export `{expected}` (world `plugin` or `basic-plugin` of \
         wit/streamhost.wit), or `columns-handler` instead (world `columns-plugin`)"
    )]
    WrongWorld {
        path: PathBuf,
        exports: String,
        expected: String,
    },
    #[error(
        "plugin {path} was built against streamhost:plugin@{found}, but this host supports \
         streamhost:plugin@{expected}; rebuild the plugin against wit/ of this host version"
    )]
    IncompatibleVersion {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "plugin {path} needs host functions this host does not provide (the sandbox offers only \
         streamhost:plugin and WASI 0.2 without files or network): {detail}"
    )]
    UnsupportedImports { path: PathBuf, detail: String },
    #[error("plugin {plugin}: init refused the configuration: {message}")]
    InitFailed { plugin: String, message: String },
    #[error("plugin {plugin}: instantiation failed: {detail}")]
    Instantiate { plugin: String, detail: String },
    #[error("compile cache {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
}

/// Why `process` did not succeed for a batch. None of the batch's effects are kept.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("plugin {plugin} reported a retryable error: {message}")]
    Retryable { plugin: String, message: String },
    #[error("plugin {plugin} reported a fatal error: {message}")]
    Fatal { plugin: String, message: String },
    #[error("plugin {plugin} marked record #{index} of the batch as poison: {message}")]
    Poison {
        plugin: String,
        index: u32,
        message: String,
    },
    #[error(
        "plugin {plugin} exceeded its deadline of {limit:?} per process call and was stopped; \
         raise --plugin-timeout-ms or make the batch smaller"
    )]
    Deadline { plugin: String, limit: Duration },
    #[error(
        "plugin {plugin} exceeded its memory limit of {limit} bytes (it asked for {requested} \
         bytes); raise --plugin-memory-mb or reduce what the plugin holds per batch"
    )]
    Memory {
        plugin: String,
        limit: usize,
        requested: usize,
    },
    #[error("plugin {plugin}: {cause}")]
    Effects { plugin: String, cause: EffectError },
    #[error("plugin {plugin} trapped: {detail}")]
    Trap { plugin: String, detail: String },
    #[error(transparent)]
    Load(#[from] LoadError),
}

impl ProcessError {
    /// Whether the instance is unusable afterwards and must be replaced by a fresh one.
    pub fn instance_lost(&self) -> bool {
        !matches!(
            self,
            ProcessError::Retryable { .. }
                | ProcessError::Fatal { .. }
                | ProcessError::Poison { .. }
        )
    }
}

/// The typed error a resource limit raises inside a call, so the host can tell a memory
/// cap from any other trap.
#[derive(Debug, thiserror::Error)]
pub enum LimitExceeded {
    #[error("memory limit of {limit} bytes exceeded (requested {requested} bytes)")]
    Memory { limit: usize, requested: usize },
}
