//! Shared pieces of the benchmarks: deterministic input data and its loading, the native
//! baseline, and result reading (criterion's output, Prometheus histograms, a process's
//! peak memory).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::ToBytes;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

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

/// The same count as [`native_process`], but the batch writes no state: the baseline
/// for what the exactly-once state commit costs (the offsets are still committed).
pub fn native_count_only(batch: &Batch) -> Effects {
    let mut counts = HashMap::new();
    for record in &batch.records {
        if let Some(value) = streamhost::batch::value(batch, record) {
            count::count_words(value, &mut counts);
        }
    }
    std::hint::black_box(&counts);
    Effects::new(64 << 20)
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

/// The cumulative buckets `(le, count)` of histogram `name` in a Prometheus text
/// exposition, summed over every label set with the same `le`, sorted by `le` (`+Inf`
/// last). `None` when the exposition has no bucket of that histogram.
pub fn histogram_buckets(exposition: &str, name: &str) -> Option<Vec<(f64, f64)>> {
    let prefix = format!("{name}_bucket{{");
    let mut sums: Vec<(f64, f64)> = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        // The value is the first field after the labels (a timestamp or exemplar may follow).
        let Some(count) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        let Some(le) = label_value(labels, "le").and_then(|v| match v {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            v => v.parse::<f64>().ok(),
        }) else {
            continue;
        };
        match sums.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += count,
            None => sums.push((le, count)),
        }
    }
    if sums.is_empty() {
        return None;
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(sums)
}

/// The value of label `name` in `a="x",b="y"` (no escaped quotes expected).
fn label_value<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        let (key, after) = rest.split_once("=\"")?;
        let (value, tail) = after.split_once('"')?;
        if key.trim_start_matches(',').trim() == name {
            return Some(value);
        }
        rest = tail;
    }
}

/// The `q` quantile (0..=1) of cumulative buckets, interpolated linearly inside the
/// bucket it falls in, as Prometheus' `histogram_quantile` does: the first bucket starts
/// at 0, and a quantile in the `+Inf` bucket is the largest finite bound. `None` when the
/// histogram is empty.
pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let fraction = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        (lower, below) = (le, count);
    }
    Some(lower)
}

/// Peak resident set size in KiB (`VmHWM`) from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Loads a benchmark's input into Kafka fast: large batches, a deep queue.
pub struct Loader {
    producer: FutureProducer,
    pending: Vec<DeliveryFuture>,
}

impl Loader {
    pub fn new(brokers: &str) -> Loader {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "50")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("producer");
        Loader {
            producer,
            pending: Vec::new(),
        }
    }

    /// Sends `record`, waiting while librdkafka's queue is full.
    pub fn send<K, P>(&mut self, mut record: FutureRecord<'_, K, P>)
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(f) => {
                    self.pending.push(f);
                    return;
                }
                Err((_, back)) => {
                    self.producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
    }

    /// Waits until the broker acknowledged every record sent.
    pub fn finish(self) {
        let pending = self.pending;
        for r in futures::executor::block_on(futures::future::join_all(pending)) {
            r.expect("delivered").expect("acknowledged");
        }
        self.producer.flush(Duration::from_secs(60)).expect("flush");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP streamhost_commit_latency_seconds Produce to commit.
# TYPE streamhost_commit_latency_seconds histogram
streamhost_commit_latency_seconds_sum{job="wc",topic="t",partition="0"} 1.5
streamhost_commit_latency_seconds_count{job="wc",topic="t",partition="0"} 60
streamhost_commit_latency_seconds_bucket{le="0.01",job="wc",topic="t",partition="0"} 10
streamhost_commit_latency_seconds_bucket{le="0.02",job="wc",topic="t",partition="0"} 50
streamhost_commit_latency_seconds_bucket{le="0.04",job="wc",topic="t",partition="0"} 60
streamhost_commit_latency_seconds_bucket{le="+Inf",job="wc",topic="t",partition="0"} 60
streamhost_commit_latency_seconds_bucket{job="wc",topic="t",partition="1",le="0.01"} 0
streamhost_commit_latency_seconds_bucket{job="wc",topic="t",partition="1",le="0.02"} 30
streamhost_commit_latency_seconds_bucket{job="wc",topic="t",partition="1",le="0.04"} 38
streamhost_commit_latency_seconds_bucket{job="wc",topic="t",partition="1",le="+Inf"} 40
streamhost_commit_duration_seconds_bucket{le="0.01",job="wc",topic="t",partition="0"} 999
# EOF
"#;

    #[test]
    fn buckets_are_summed_over_label_sets() {
        let b = histogram_buckets(EXPOSITION, "streamhost_commit_latency_seconds")
            .expect("histogram present");
        assert_eq!(
            b,
            vec![
                (0.01, 10.0),
                (0.02, 80.0),
                (0.04, 98.0),
                (f64::INFINITY, 100.0)
            ]
        );
        assert_eq!(histogram_buckets(EXPOSITION, "streamhost_missing"), None);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let b = histogram_buckets(EXPOSITION, "streamhost_commit_latency_seconds")
            .expect("histogram present");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // rank 50 of 100: 40 of the 70 records of (0.01, 0.02].
        assert!(close(
            histogram_quantile(&b, 0.5).expect("p50"),
            0.01 + 0.01 * 40.0 / 70.0
        ));
        // rank 5: half-way through the first bucket, which starts at 0.
        assert!(close(histogram_quantile(&b, 0.05).expect("p5"), 0.005));
        // rank 99 is in +Inf: the largest finite bound.
        assert!(close(histogram_quantile(&b, 0.99).expect("p99"), 0.04));
        assert_eq!(histogram_quantile(&[(f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn peak_rss_from_proc_status() {
        let status = "Name:\thost\nVmPeak:\t  900 kB\nVmHWM:\t   94208 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(94208));
        assert_eq!(vm_hwm_kib("Name: x\n"), None);
    }
}
