//! The cost of each plugin language: the word count of every `wordcount*` folder of
//! `plugins/`, with the same word count compiled natively into the host as the baseline,
//! in one run.
//!
//! Per plugin: component size, compile time (no cache), load time from the compile cache,
//! instantiate time (from the `InstancePre`, including `init`), the per-record cost of
//! `process` on a 10,000-record batch of ~40-byte text values and on a 100-record one
//! (where per-batch costs show), and the guest's peak linear
//! memory after those batches (it only grows). Prints a Markdown table (the one in
//! docs/plugins/README.md) and each language's speed relative to native.
//!
//! Run with `bench/run languages` (builds the plugins and a release host first).
//! A plain harness rather than criterion: compiling a Python component takes seconds, so
//! a handful of timed repetitions with the median is what fits.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamhost::batch::Batch;
use streamhost::batch::effects::Effects;
use streamhost::runtime::{InstanceSettings, Limits, Runner, Runtime, RuntimeOptions};
use streamhost::store::memory::MemoryStore;
use streamhost_bench::{native_process, text_batch};

const RECORDS: usize = 10_000;
const VALUE_LEN: usize = 40;
const SMALL: usize = 100;

/// Median of `n` timings of `f` (after one untimed warm-up call).
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn runtime(cache: Option<&Path>) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: cache.map(Path::to_path_buf),
        limits: Limits {
            // Room for the big guests' heaps at 10k records: this measures speed, not caps.
            memory_bytes: 512 << 20,
            ..Limits::default()
        },
    })
    .expect("runtime")
}

struct Row {
    name: String,
    size: u64,
    compile: Duration,
    load_cached: Duration,
    instantiate: Duration,
    process: Duration,
    /// `process` of a 100-record batch: what a batch costs besides its records shows here.
    small: Duration,
    memory: usize,
}

fn measure(wasm: &Path, batch: &Batch, small: &Batch, reference: &Effects) -> Row {
    let mut batch = batch.clone();
    let mut small_batch = small.clone();
    let name = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    let uncached = runtime(None);
    // Compiling is slow for the big guests: 3 timings (after the warm-up) are enough.
    let compile = median(3, || {
        black_box(uncached.load_file(wasm).expect("compile"));
    });
    let cache = tempfile::tempdir().expect("cache dir");
    let cached = runtime(Some(cache.path()));
    let load_cached = median(9, || {
        black_box(cached.load_file(wasm).expect("load from the cache"));
    });
    let plugin = cached.load_file(wasm).expect("load");
    let settings = InstanceSettings {
        store: Arc::new(MemoryStore::new()),
        partition: Some(0),
        config: Vec::new(),
    };
    let instantiate = median(21, || {
        black_box(plugin.instantiate(&settings).expect("instantiate"));
    });
    let mut runner = Runner::new(plugin.clone(), settings.clone());
    let effects = runner.process(&mut batch).expect("process");
    assert_eq!(
        effects.state.len(),
        reference.state.len(),
        "{name} counts differently from the native word count"
    );
    let slow = size > 1 << 20;
    let process = median(if slow { 5 } else { 21 }, || {
        black_box(runner.process(black_box(&mut batch)).expect("process"));
    });
    let small = median(21, || {
        black_box(
            runner
                .process(black_box(&mut small_batch))
                .expect("process"),
        );
    });
    let memory = runner.linear_memory_bytes().unwrap_or(0);
    Row {
        name,
        size,
        compile,
        load_cached,
        instantiate,
        process,
        small,
        memory,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let root = streamhost_tests::repo_root();
    // STREAMHOST_BENCH_PLUGINS=a.wasm,b.wasm measures those instead (e.g. a variant
    // while profiling); each must still count words like the others.
    let mut plugins: Vec<PathBuf> = match std::env::var("STREAMHOST_BENCH_PLUGINS") {
        Ok(list) => list.split(',').map(PathBuf::from).collect(),
        Err(_) => std::fs::read_dir(root.join("plugins"))
            .expect("plugins/")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("build.sh").exists())
            .filter(|e| e.file_name().to_string_lossy().starts_with("wordcount"))
            .map(|e| {
                root.join("build/plugins")
                    .join(format!("{}.wasm", e.file_name().to_string_lossy()))
            })
            .collect(),
    };
    plugins.sort();
    if let Some(missing) = plugins.iter().find(|p| !p.exists()) {
        panic!("{} missing: run scripts/build-plugins", missing.display());
    }

    let batch = text_batch(RECORDS, VALUE_LEN);
    let small = text_batch(SMALL, VALUE_LEN);
    let reference = native_process(&batch);
    let native = median(21, || {
        black_box(native_process(black_box(&batch)));
    });
    println!(
        "batch: {RECORDS} records of ~{VALUE_LEN} bytes; native Rust word count {} ({:.3} µs/record)",
        ms(native),
        native.as_secs_f64() * 1e6 / RECORDS as f64
    );
    println!();
    println!(
        "| plugin | size | compile | load from cache | instantiate | process 10k | per record | vs native | per record, batches of {SMALL} | peak memory |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for wasm in &plugins {
        let r = measure(wasm, &batch, &small, &reference);
        println!(
            "| {} | {:.1} KiB | {} | {} | {:.3} ms | {} | {:.2} µs | {:.2}x | {:.2} µs | {:.1} MiB |",
            r.name,
            r.size as f64 / 1024.0,
            ms(r.compile),
            ms(r.load_cached),
            r.instantiate.as_secs_f64() * 1e3,
            ms(r.process),
            r.process.as_secs_f64() * 1e6 / RECORDS as f64,
            native.as_secs_f64() / r.process.as_secs_f64(),
            r.small.as_secs_f64() * 1e6 / SMALL as f64,
            r.memory as f64 / (1 << 20) as f64,
        );
    }
}
