//! What a running job shows its operator: on a terminal a live line (records/s, lag,
//! last committed offsets), elsewhere a plain log line every so often.

use std::collections::BTreeMap;
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

/// Counters the partition workers update after each commit.
#[derive(Default)]
pub struct Progress {
    records: AtomicU64,
    partitions: Mutex<BTreeMap<(String, i32), PartitionProgress>>,
}

impl Progress {
    pub fn committed(
        &self,
        topic: &str,
        partition: i32,
        until: i64,
        lag: Option<i64>,
        records: u64,
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
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

    /// (topic, partition, committed offset, lag if known) of every partition seen.
    pub fn partitions(&self) -> Vec<(String, i32, i64, Option<i64>)> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((t, p), v)| (t.clone(), *p, v.committed, v.lag))
            .collect()
    }

    /// Total lag (where known) and `topic/partition@offset` of every partition.
    fn summary(&self) -> (Option<i64>, String) {
        let parts = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
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
