//! Shared pieces of the benchmarks: deterministic input data, the native baseline, and
//! result reading.

use std::collections::HashMap;

use streamhost::batch::effects::Effects;
use streamhost::batch::{Batch, BatchBuilder};
use streamhost::contract::streamhost::plugin::types::{KeyDelta, StateOp};

/// The plugin's own counting code, compiled natively: the baseline is the same logic.
#[path = "../../plugins/wordcount/src/count.rs"]
#[allow(dead_code)] // the plugin also uses `for_each_word`, for emits
mod count;

/// The native equivalent of the word count plugin's `process`: count, then hand the host
/// one increment per distinct word, into the same effects buffer the WASM path fills.
pub fn native_process(batch: &Batch) -> Effects {
    let mut counts = HashMap::new();
    for record in &batch.records {
        if let Some(value) = streamhost::batch::value(batch, record) {
            count::count_words(value, &mut counts);
        }
    }
    let ops = counts
        .into_iter()
        .map(|(key, delta)| StateOp::Incr(KeyDelta { key, delta }))
        .collect();
    let mut effects = Effects::new(64 << 20);
    effects.apply(ops).expect("within the cap");
    effects
}

/// A deterministic pseudo-random text value of about `target_len` bytes, drawn from a
/// vocabulary of `vocabulary` made-up words, some capitalised.
#[derive(Clone)]
pub struct TextGen {
    state: u64,
    vocabulary: u64,
}

const SYLLABLES: [&str; 16] = [
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "qu", "an", "el", "or", "us", "ix",
];

impl TextGen {
    pub fn new(seed: u64, vocabulary: u64) -> Self {
        Self {
            state: seed.wrapping_mul(6364136223846793005).wrapping_add(1),
            vocabulary,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for test data.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn word(&mut self, out: &mut String) {
        let mut id = self.next() % self.vocabulary;
        let capital = self.next().is_multiple_of(8);
        let start = out.len();
        loop {
            out.push_str(SYLLABLES[(id % 16) as usize]);
            id /= 16;
            if id == 0 {
                break;
            }
        }
        if capital {
            out[start..start + 1].make_ascii_uppercase();
        }
    }

    pub fn line(&mut self, target_len: usize) -> String {
        let mut s = String::with_capacity(target_len + 8);
        while s.len() < target_len {
            if !s.is_empty() {
                s.push(' ');
            }
            self.word(&mut s);
        }
        s
    }
}

/// A batch of `n` records of ~`len`-byte text values.
pub fn text_batch(n: usize, len: usize) -> Batch {
    let mut g = TextGen::new(42, 2000);
    let mut b = BatchBuilder::new("words", 0);
    for i in 0..n {
        let line = g.line(len);
        b.push(
            i as i64,
            Some(1_764_000_000_000 + i as i64),
            None,
            Some(line.as_bytes()),
            [],
        )
        .expect("a small batch");
    }
    b.finish(None)
}

/// Mean time in nanoseconds criterion measured for `group/name`, from its output folder.
pub fn criterion_mean_ns(dir: &std::path::Path, group: &str, name: &str) -> Option<f64> {
    let path = dir.join(group).join(name).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}
