//! Helpers for the end-to-end tests: where the `host` binary and the built plugins are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A plugin component built by `scripts/build-plugins`.
pub fn plugin(name: &str) -> PathBuf {
    let path = repo_root()
        .join("build/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

/// The `host` binary of this build (cargo puts test executables in `deps/` beside it).
pub fn host_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let host = dir.join(format!("host{}", std::env::consts::EXE_SUFFIX));
    assert!(
        host.exists(),
        "{} is missing: run `cargo build -p streamhost --bin host` first",
        host.display()
    );
    host
}

/// Runs `host` with `args`, using a private compile cache so tests never share state with
/// a developer's cache.
pub fn host(args: &[&str], cache: &Path) -> Output {
    Command::new(host_bin())
        .args(args)
        .env("STREAMHOST_CACHE_DIR", cache)
        .env("STREAMHOST_LOG", "warn")
        .output()
        .expect("run the host binary")
}

pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "host failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("host test prints JSON")
}
