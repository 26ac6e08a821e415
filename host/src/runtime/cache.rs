//! The on-disk cache of compiled plugins.
//!
//! Compiling a big component (a Python or JavaScript plugin) takes seconds; loading the
//! compiled artifact takes milliseconds. The key covers everything that makes an artifact
//! valid: the component's sha256, and wasmtime's own compatibility hash of the engine
//! (wasmtime version, target, and every compilation setting).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct CompileCache {
    dir: PathBuf,
    engine_key: u64,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Self {
            dir,
            engine_key: h.finish(),
        }
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", self.engine_key))
    }

    /// The cached compilation of the component with this digest, if there is a usable one.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path_for(digest);
        // Read into memory rather than map the file: a mapped file that someone truncates
        // under a running host would kill it with SIGBUS.
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read compile cache entry");
                return None;
            }
        };
        // SAFETY: deserializing runs no checks on the machine code, so it must only ever
        // read artifacts this host wrote itself. The cache directory is the host's own;
        // names are keyed by content digest and engine settings, and files appear only
        // through an atomic rename of a complete artifact. wasmtime still checks the
        // artifact's header and engine compatibility and refuses anything else.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry");
                None
            }
        }
    }

    /// Stores a compiled component; failures only cost a recompile next time.
    pub fn store(&self, digest: &str, component: &Component) {
        if let Err(e) = self.try_store(digest, component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the compile cache");
        }
    }

    fn try_store(&self, digest: &str, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(self.path_for(digest))?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `$STREAMHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/streamhost/compiled`, else
/// `~/.cache/streamhost/compiled`, else a folder in the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMHOST_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("streamhost").join("compiled")
}
