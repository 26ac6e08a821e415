//! The compile cache: one artifact per (component digest, engine settings); a damaged
//! entry costs a recompile, never a failure.

use streamhost::runtime::{Runtime, RuntimeOptions};
use streamhost_tests::plugin;

fn cached_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn compiles_once_and_survives_a_damaged_entry() {
    let cache = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_owned()),
        ..Default::default()
    };
    let runtime = Runtime::new(options.clone()).unwrap();

    let wc = runtime.load_file(&plugin("wordcount")).unwrap();
    let files = cached_files(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(wc.digest()),
        "keyed by content digest: {files:?}"
    );

    // A second runtime (a restarted host) loads from the cache.
    let again = Runtime::new(options.clone())
        .unwrap()
        .load_file(&plugin("wordcount"))
        .unwrap();
    assert_eq!(again.digest(), wc.digest());
    assert_eq!(cached_files(cache.path()), files);

    runtime.load_file(&plugin("echo")).unwrap();
    assert_eq!(
        cached_files(cache.path()).len(),
        2,
        "one entry per component"
    );

    // Damage the entry: the next load recompiles and rewrites it.
    let entry = cache.path().join(&files[0]);
    std::fs::write(&entry, b"garbage").unwrap();
    let reloaded = Runtime::new(options)
        .unwrap()
        .load_file(&plugin("wordcount"))
        .unwrap();
    assert_eq!(reloaded.digest(), wc.digest());
    assert!(
        std::fs::metadata(&entry).unwrap().len() > 1000,
        "the entry was rewritten"
    );
}

/// The first `host test` of a plugin says it compiles it, and where the result is kept;
/// the second, from the cache, says nothing of the kind.
#[test]
fn a_first_compile_says_so_and_the_cached_one_does_not() {
    let cache = tempfile::tempdir().unwrap();
    let input = streamhost_tests::repo_root().join("examples/words.txt");
    let run = || {
        std::process::Command::new(streamhost_tests::host_bin())
            .args(["test", "--plugin"])
            .arg(plugin("wordcount"))
            .arg("--input")
            .arg(&input)
            .env("STREAMHOST_CACHE_DIR", cache.path())
            .env("STREAMHOST_LOG", "info")
            .output()
            .expect("run host")
    };
    let first = run();
    assert!(first.status.success());
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        said.contains("compiling the plugin") && said.contains(&cache.path().display().to_string()),
        "{said}"
    );
    let second = run();
    assert!(second.status.success());
    assert!(!String::from_utf8_lossy(&second.stderr).contains("compiling the plugin"));
}
