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
