//! What a running job shows its operator: on a terminal a live line (records/s, lag,
//! last committed offsets), elsewhere a plain log line every so often; in `host serve`
//! the console's view (rate history, errors, dead letters).

use crate::sync::Locked;
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing (`host serve`: its jobs report through /v1/jobs and /metrics).
    Off,
    /// A line rewritten in place on stderr, once a second.
    Terminal,
    /// An `info` log line at this interval.
    Log(Duration),
}

#[derive(Debug, Clone, Copy)]
struct PartitionProgress {
    committed: i64,
    lag: Option<i64>,
}

/// How many of a job's latest errors are kept for the console.
const RECENT_ERRORS: usize = 20;

/// How many rate samples are kept: one per [`RATE_EVERY`], ten minutes.
const RATE_SAMPLES: usize = 120;
pub const RATE_EVERY: Duration = Duration::from_secs(5);

/// One failure a partition worker met: a failed attempt, a poison record, a batch set
/// aside. The console lists the newest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorNote {
    pub at_ms: i64,
    pub topic: String,
    pub partition: i32,
    /// The record's offset (poison records), or the batch's first offset.
    pub offset: Option<i64>,
    /// retry | poison | dead_letter | skip | failed
    pub kind: &'static str,
    pub message: String,
}

/// Counters the partition workers update after each commit.
#[derive(Default)]
pub struct Progress {
    records: AtomicU64,
    errors: AtomicU64,
    dead_lettered: AtomicU64,
    partitions: Mutex<BTreeMap<(String, i32), PartitionProgress>>,
    recent_errors: Mutex<VecDeque<ErrorNote>>,
    /// (unix ms, records so far) every RATE_EVERY, oldest first.
    samples: Mutex<VecDeque<(i64, u64)>>,
    /// What the job waits for now, by what it waits on: a job waiting is not healthy,
    /// though it has not failed (yet).
    waiting: Mutex<BTreeMap<Wait, String>>,
}

/// What a job can be waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wait {
    /// A topic that does not exist.
    Topic,
    /// Brokers that do not answer.
    Kafka,
    /// A Redis that does not answer.
    Redis,
}

impl Progress {
    /// The job waits on `what`, for the reason given (replacing an earlier one).
    pub fn waiting(&self, what: Wait, why: String) {
        self.waiting.locked().insert(what, why);
    }

    /// ...and no longer.
    pub fn done_waiting(&self, what: Wait) {
        self.waiting.locked().remove(&what);
    }

    /// Why the job waits now, if it does (the reasons joined).
    pub fn waiting_for(&self) -> Option<String> {
        let w = self.waiting.locked();
        (!w.is_empty()).then(|| w.values().cloned().collect::<Vec<_>>().join("; "))
    }

    pub fn committed(
        &self,
        topic: &str,
        partition: i32,
        until: i64,
        lag: Option<i64>,
        records: u64,
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.partitions.locked().insert(
            (topic.to_owned(), partition),
            PartitionProgress {
                committed: until,
                lag,
            },
        );
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// A failure the job met (and handled, or not): counted and kept among the newest.
    pub fn error(&self, note: ErrorNote) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent_errors.locked();
        if recent.len() == RECENT_ERRORS {
            recent.pop_back();
        }
        recent.push_front(note);
    }

    pub fn dead_lettered(&self, records: u64) {
        self.dead_lettered.fetch_add(records, Ordering::Relaxed);
    }

    /// (failures, records dead-lettered) so far.
    pub fn error_counts(&self) -> (u64, u64) {
        (
            self.errors.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
        )
    }

    /// The newest failures first.
    pub fn recent_errors(&self) -> Vec<ErrorNote> {
        self.recent_errors.locked().iter().cloned().collect()
    }

    /// Takes a sample of the record count (`host serve` does, every RATE_EVERY).
    pub fn sample(&self, now_ms: i64) {
        let records = self.records();
        let mut samples = self.samples.locked();
        if samples.len() == RATE_SAMPLES + 1 {
            samples.pop_front();
        }
        samples.push_back((now_ms, records));
    }

    /// Records per second between consecutive samples: (unix ms, rate), oldest first.
    pub fn rates(&self) -> Vec<(i64, f64)> {
        let samples = self.samples.locked();
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(&(t0, r0), &(t1, r1))| {
                let secs = ((t1 - t0).max(1)) as f64 / 1000.0;
                (t1, r1.saturating_sub(r0) as f64 / secs)
            })
            .collect()
    }

    /// (topic, partition, committed offset, lag if known) of every partition seen.
    pub fn partitions(&self) -> Vec<(String, i32, i64, Option<i64>)> {
        self.partitions
            .locked()
            .iter()
            .map(|((t, p), v)| (t.clone(), *p, v.committed, v.lag))
            .collect()
    }

    /// Total lag (where known) and `topic/partition@offset` of every partition.
    fn summary(&self) -> (Option<i64>, String) {
        let parts = self.partitions.locked();
        let lag = parts.values().filter_map(|p| p.lag).reduce(|a, b| a + b);
        let offsets = parts
            .iter()
            .map(|((t, p), v)| format!("{t}/{p}@{}", v.committed))
            .collect::<Vec<_>>()
            .join(" ");
        (lag, offsets)
    }
}

/// Prints progress at its pace; call `tick` often (the job's main loop does).
pub struct Reporter {
    mode: ProgressMode,
    last: Instant,
    last_records: u64,
    printed: bool,
}

impl Reporter {
    pub fn new(mode: ProgressMode) -> Self {
        Self {
            mode,
            last: Instant::now(),
            last_records: 0,
            printed: false,
        }
    }

    pub fn tick(&mut self, progress: &Progress) {
        let every = match self.mode {
            ProgressMode::Off => return,
            ProgressMode::Terminal => Duration::from_secs(1),
            ProgressMode::Log(every) => every,
        };
        let elapsed = self.last.elapsed();
        if elapsed < every {
            return;
        }
        let records = progress.records();
        let rate = (records - self.last_records) as f64 / elapsed.as_secs_f64();
        self.last = Instant::now();
        self.last_records = records;
        let (lag, offsets) = progress.summary();
        let lag = lag.map_or_else(|| "?".to_owned(), |l| l.to_string());
        match self.mode {
            ProgressMode::Terminal => {
                let mut line =
                    format!("{rate:>9.0} rec/s  lag {lag}  records {records}  committed {offsets}");
                line.truncate(terminal_width().saturating_sub(1));
                // \r and "erase line": the line is rewritten in place.
                let _ = write!(std::io::stderr(), "\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
                self.printed = true;
            }
            _ => tracing::info!(
                records_per_second = format!("{rate:.0}"),
                lag = %lag,
                records,
                committed = %offsets,
                "progress"
            ),
        }
    }

    /// Ends the live line so later log lines start on a line of their own.
    pub fn finish(&mut self) {
        if self.printed {
            let _ = writeln!(std::io::stderr());
            self.printed = false;
        }
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}

#[cfg(test)]
mod tests {
    use super::{ErrorNote, Progress, RECENT_ERRORS};

    #[test]
    fn rates_come_from_consecutive_samples() {
        let p = Progress::default();
        p.sample(1_000);
        p.committed("t", 0, 10, Some(0), 50);
        p.sample(6_000);
        p.committed("t", 0, 20, Some(0), 25);
        p.sample(11_000);
        assert_eq!(p.rates(), vec![(6_000, 10.0), (11_000, 5.0)]);
    }

    #[test]
    fn only_the_newest_errors_are_kept_but_all_are_counted() {
        let p = Progress::default();
        for i in 0..(RECENT_ERRORS as i64 + 5) {
            p.error(ErrorNote {
                at_ms: i,
                topic: "t".into(),
                partition: 0,
                offset: Some(i),
                kind: "retry",
                message: format!("failure {i}"),
            });
        }
        let recent = p.recent_errors();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].offset, Some(RECENT_ERRORS as i64 + 4));
        assert_eq!(p.error_counts().0, RECENT_ERRORS as u64 + 5);
    }
}
