//! `process` of a 10,000-record batch of ~40-byte text values through the WASM wordcount,
//! against the same word count compiled natively into the host; and the time to make an
//! instance from the `InstancePre`. Prints the ratios at the end.
//!
//! Run with `bench/run wordcount` (builds the plugin first).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput};
use streamhost::runtime::{InstanceSettings, Runner, Runtime, RuntimeOptions};
use streamhost::store::memory::MemoryStore;
use streamhost_bench::{criterion_mean_ns, native_process, text_batch};

/// The plugin's own counting code, compiled natively: the baseline is the same logic.
const RECORDS: usize = 10_000;
const VALUE_LEN: usize = 40;

fn main() {
    let root = streamhost_tests::repo_root();
    let wasm = root.join("build/plugins/wordcount.wasm");
    assert!(
        wasm.exists(),
        "{} missing: run scripts/build-plugins",
        wasm.display()
    );
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("criterion");

    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: None,
        ..Default::default()
    })
    .unwrap();
    let plugin = runtime.load_file(&wasm).unwrap();
    let store = Arc::new(MemoryStore::new());
    let settings = |config: Vec<(String, String)>| InstanceSettings {
        store: store.clone(),
        partition: Some(0),
        config,
    };
    let mut batch = text_batch(RECORDS, VALUE_LEN);
    let words: usize = batch
        .records
        .iter()
        .map(|r| {
            let value = streamhost::batch::value(&batch, r).unwrap_or_default();
            String::from_utf8_lossy(value).split_whitespace().count()
        })
        .sum();
    println!("batch: {RECORDS} records, {words} words, ~{VALUE_LEN} bytes per value");

    // Same answer both ways, or the comparison means nothing.
    let mut bulk = Runner::new(plugin.clone(), settings(vec![]));
    let native = native_process(&batch);
    let wasm_effects = bulk.process(&mut batch).unwrap();
    assert_eq!(native.state.len(), wasm_effects.state.len());

    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .configure_from_args();
    {
        let mut g = c.benchmark_group("process_10k");
        g.throughput(Throughput::Elements(RECORDS as u64));
        g.bench_function("native", |b| {
            b.iter(|| black_box(native_process(black_box(&batch))))
        });
        g.bench_function("wasm", |b| {
            b.iter(|| black_box(bulk.process(black_box(&mut batch)).unwrap()))
        });
        let mut per_word = Runner::new(
            plugin.clone(),
            settings(vec![("per-word-calls".into(), "true".into())]),
        );
        g.bench_function("wasm_per_word_calls", |b| {
            b.iter(|| black_box(per_word.process(black_box(&mut batch)).unwrap()))
        });
        // The cost of handing the batch over: a plugin that only walks the records.
        let faulty = runtime
            .load_file(&root.join("build/plugins/faulty.wasm"))
            .unwrap();
        let mut lower = Runner::new(faulty, settings(vec![]));
        g.bench_function("wasm_handover_only", |b| {
            b.iter(|| black_box(lower.process(black_box(&mut batch)).unwrap()))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("instantiate");
        let s = settings(vec![]);
        g.bench_function("from_instance_pre", |b| {
            b.iter_batched(
                || (),
                |_| black_box(plugin.instantiate(&s).unwrap()),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
    c.final_summary();

    let mean = |g: &str, n: &str| criterion_mean_ns(&out_dir, g, n);
    if let (Some(native), Some(wasm), Some(per_word)) = (
        mean("process_10k", "native"),
        mean("process_10k", "wasm"),
        mean("process_10k", "wasm_per_word_calls"),
    ) {
        println!();
        println!(
            "process 10k records: native {:.2} ms, wasm {:.2} ms, wasm with a host call per word {:.2} ms",
            native / 1e6,
            wasm / 1e6,
            per_word / 1e6
        );
        println!(
            "ratio wasm/native speed: {:.2}x (target >= 0.5x)",
            native / wasm
        );
        println!("ratio bulk/per-word-call speed: {:.2}x", per_word / wasm);
    }
    if let Some(handover) = mean("process_10k", "wasm_handover_only") {
        println!(
            "of which handing the batch to the guest (no work): {:.2} ms",
            handover / 1e6
        );
    }
    if let Some(inst) = mean("instantiate", "from_instance_pre") {
        println!(
            "instantiate from InstancePre (incl. init): {:.1} us",
            inst / 1e3
        );
    }
}
