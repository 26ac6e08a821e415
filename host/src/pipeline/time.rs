//! Event time of one partition: its clock (the highest event time seen and the watermark
//! that follows it), which records are late, and firing the timers and expiries that
//! became due. The worker and `host test` fire the same way.
//!
//! A partition's timers and expiries live in the store, committed with its offsets. What
//! is due is found with one store read per batch at most (`StateStore::due`), and none
//! at all while the earliest pending entry (kept here) is later than the clocks: a job
//! with a million timers pending pays for them only when they fire.

use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::batch::effects::{EffectError, Effects};
use crate::runtime::{ProcessError, Runner, Timer, TimerContext};
use crate::store::StateStore;
use crate::store::time::{Clock, TimeDomain, TimeKey, TimeKind};

/// Timers and expiries fired per batch at most, per domain; the rest fire in the batches
/// after it (a partition with more due runs batches without records until none is).
pub const FIRE_LIMIT: usize = 10_000;

/// Rounds of `on-timers` per batch: a timer handler that sets timers already due gets
/// them in the next round, up to this many; the rest wait for the next batch.
const MAX_ROUNDS: usize = 16;

/// `--late-records`: what happens to a record older than the watermark minus the
/// allowed lateness.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LatePolicy {
    /// Hand it to the plugin like any other (`kafka-record.event-time` tells it is old).
    #[default]
    Process,
    /// Leave it out of the batch; count it (`streamhost_late_records_total`).
    Drop,
    /// Produce it to this topic (with headers saying why), then leave it out.
    Topic(String),
}

impl std::str::FromStr for LatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(LatePolicy::Process),
            "drop" => Ok(LatePolicy::Drop),
            _ => match s.strip_prefix("topic:") {
                Some(t) if !t.is_empty() => Ok(LatePolicy::Topic(t.to_owned())),
                _ => Err(format!(
                    "expected process, drop or topic:NAME (a side topic), got {s:?}"
                )),
            },
        }
    }
}

impl TryFrom<String> for LatePolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LatePolicy> for String {
    fn from(p: LatePolicy) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for LatePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LatePolicy::Process => f.write_str("process"),
            LatePolicy::Drop => f.write_str("drop"),
            LatePolicy::Topic(t) => write!(f, "topic:{t}"),
        }
    }
}

/// A job's event-time settings (plugins of contract 0.2): watermarks, idleness, late
/// records. Part of a job's settings (`JobSettings`); `host test` takes them too.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, clap::Args, serde::Serialize, serde::Deserialize,
)]
#[serde(default)]
pub struct TimeSettings {
    /// Event time: how far behind the highest event time a partition has seen its
    /// watermark stays, in milliseconds (records may arrive this much out of order).
    #[arg(long, default_value_t = 0, env = "STREAMHOST_MAX_OUT_OF_ORDERNESS_MS")]
    pub max_out_of_orderness_ms: u64,

    /// Event time: a partition that received no record for this long (ms) moves its
    /// watermark with the wall clock (minus --max-out-of-orderness-ms), so its windows
    /// close on a quiet stream; 0 = never.
    #[arg(long, default_value_t = 0, env = "STREAMHOST_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: u64,

    /// Event time: how far behind the watermark a record may be before it is late, in
    /// milliseconds.
    #[arg(long, default_value_t = 0, env = "STREAMHOST_ALLOWED_LATENESS_MS")]
    pub allowed_lateness_ms: u64,

    /// Event time: what to do with a late record: process (hand it to the plugin like
    /// any other), drop (count it in streamhost_late_records_total), or topic:NAME
    /// (produce it to that side topic, then leave it out). Plugins of contract 0.1.0
    /// have no event time: nothing is late for them.
    #[arg(long, default_value_t = LatePolicy::Process, env = "STREAMHOST_LATE_RECORDS")]
    pub late_records: LatePolicy,
}

/// Longest time setting accepted (2^40 ms, about 35 years): far beyond any window, and
/// small enough that sums of event times cannot overflow. (`JobSettings::validate`
/// refuses longer ones.)
pub const MAX_TIME_MS: u64 = 1 << 40;

impl TimeSettings {
    fn out_of_orderness(&self) -> i64 {
        self.max_out_of_orderness_ms.min(MAX_TIME_MS) as i64
    }

    fn lateness(&self) -> i64 {
        self.allowed_lateness_ms.min(MAX_TIME_MS) as i64
    }

    fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }
}

/// What the earliest pending entry of a domain is, as far as this worker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Not read yet: the store must be asked.
    Unknown,
    /// `None`: nothing pending.
    Known(Option<i64>),
}

impl Next {
    fn maybe_due(self, upto: Option<i64>) -> bool {
        match self {
            Next::Unknown => true,
            Next::Known(at) => at.is_some_and(|at| upto.is_some_and(|u| at <= u)),
        }
    }
}

/// One partition's time, as of the last batch handed to the commit.
#[derive(Debug)]
pub struct PartitionTime {
    pub settings: TimeSettings,
    pub clock: Clock,
    pub next: [Next; 2],
    /// When the partition last delivered a record (or the worker started).
    pub last_record: Instant,
    /// The clock must be read from the store before the next batch (start, re-seek).
    pub stale: bool,
}

impl PartitionTime {
    pub fn new(settings: TimeSettings) -> Self {
        Self {
            settings,
            clock: Clock::default(),
            next: [Next::Unknown; 2],
            last_record: Instant::now(),
            stale: true,
        }
    }

    /// Reads the committed clock (after a start or a re-seek); forgets what it knew of the
    /// pending entries.
    pub fn load(
        &mut self,
        store: &dyn StateStore,
        topic: &str,
        partition: i32,
    ) -> Result<(), crate::store::StoreError> {
        self.clock = store.clock(topic, partition)?.unwrap_or_default();
        self.next = [Next::Unknown; 2];
        self.stale = false;
        Ok(())
    }

    pub fn idle(&self) -> bool {
        self.settings
            .idle_timeout()
            .is_some_and(|t| self.last_record.elapsed() >= t)
    }

    /// The clock after `batch`'s records (and, on an idle partition, the wall clock).
    pub fn advance(&self, batch: &Batch, now_ms: i64, idle: bool) -> Clock {
        let seen = batch.records.iter().filter_map(|r| r.event_time).max();
        let max_event_time = self.clock.max_event_time.max(seen);
        let ooo = self.settings.out_of_orderness();
        let mut watermark = self
            .clock
            .watermark
            .max(max_event_time.map(|t| t.saturating_sub(ooo)));
        if idle {
            watermark = watermark.max(Some(now_ms.saturating_sub(ooo)));
        }
        Clock {
            max_event_time,
            watermark,
        }
    }

    /// Indices of `batch`'s late records: older than the watermark minus the lateness.
    pub fn late(&self, batch: &Batch) -> Vec<usize> {
        let Some(wm) = self.clock.watermark else {
            return Vec::new();
        };
        let bound = wm.saturating_sub(self.settings.lateness());
        batch
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.event_time.is_some_and(|t| t < bound))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether a batch without records should run now: something may be due by the wall
    /// clock, or by the watermark an idle partition has.
    pub fn tick_due(&self, now_ms: i64) -> bool {
        if self.next[TimeDomain::Processing.index()].maybe_due(Some(now_ms)) {
            return true;
        }
        let wm = if self.idle() {
            self.clock.watermark.max(Some(
                now_ms.saturating_sub(self.settings.out_of_orderness()),
            ))
        } else {
            self.clock.watermark
        };
        self.next[TimeDomain::Event.index()].maybe_due(wm)
    }
}

/// What firing did, for the worker's accounting and its knowledge of what is pending.
#[derive(Debug, Clone, Default)]
pub struct Fired {
    pub timers: u64,
    pub expiries: u64,
    /// The earliest entry pending after this batch, per domain.
    pub next: [Option<i64>; 2],
}

/// Fires what is due by `upto` (`[watermark, processing time]`) on top of a batch's
/// `effects`: expiries delete their keys, timers go to the plugin's `on-timers`, and
/// every entry fired is removed in the same commit.
#[allow(clippy::too_many_arguments)]
pub fn fire(
    runner: &mut Runner,
    store: &dyn StateStore,
    topic: &str,
    partition: i32,
    mut effects: Effects,
    upto: [Option<i64>; 2],
    next: [Next; 2],
    limit: usize,
) -> Result<(Effects, Fired), ProcessError> {
    let plugin = runner.plugin().name().to_owned();
    let effect_error = |cause: EffectError| ProcessError::Effects {
        plugin: plugin.clone(),
        cause,
    };
    let mut stored_next = next.map(|n| match n {
        Next::Known(at) => at,
        Next::Unknown => None,
    });
    let mut from_store = Vec::new();
    if next.iter().zip(upto).any(|(n, u)| n.maybe_due(u)) {
        let due = store
            .due(topic, partition, upto, limit)
            .map_err(|e| effect_error(e.into()))?;
        from_store = due.entries;
        stored_next = due.next;
    }
    let is_due = |key: &TimeKey, at: i64| upto[key.domain.index()].is_some_and(|u| at <= u);
    let mut fired = Fired::default();
    let context = TimerContext {
        topic: topic.to_owned(),
        partition,
        watermark: upto[TimeDomain::Event.index()],
        processing_time: upto[TimeDomain::Processing.index()].unwrap_or_default(),
    };
    for _ in 0..MAX_ROUNDS {
        let room = limit.saturating_sub((fired.timers + fired.expiries) as usize);
        // What the store holds, unless this batch moved or removed it; then what the
        // batch set.
        let mut due: Vec<(TimeKey, i64)> = from_store
            .iter()
            .filter(|(k, at)| !effects.time.entries.contains_key(k) && is_due(k, *at))
            .cloned()
            .collect();
        due.extend(
            effects
                .time
                .entries
                .iter()
                .filter_map(|(k, at)| at.filter(|at| is_due(k, *at)).map(|at| (k.clone(), at))),
        );
        if due.is_empty() || room == 0 {
            break;
        }
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        due.truncate(room);
        let mut timers = Vec::new();
        for (key, at) in due {
            effects.time.remove(key.clone());
            match key.kind {
                TimeKind::Expiry => {
                    effects.delete(key.key).map_err(&effect_error)?;
                    fired.expiries += 1;
                }
                TimeKind::Timer => timers.push(Timer {
                    key: key.key,
                    domain: key.domain.into(),
                    at,
                }),
            }
        }
        if !timers.is_empty() {
            fired.timers += timers.len() as u64;
            effects = runner.on_timers(&context, &timers, effects)?;
        }
    }
    // What stays pending: the store's rest, and whatever this batch left set.
    for (key, at) in from_store
        .iter()
        .filter(|(k, _)| !effects.time.entries.contains_key(k))
        .map(|(k, at)| (k, *at))
        .chain(
            effects
                .time
                .entries
                .iter()
                .filter_map(|(k, at)| at.map(|at| (k, at))),
        )
    {
        let slot = &mut stored_next[key.domain.index()];
        *slot = Some(slot.map_or(at, |s| s.min(at)));
    }
    fired.next = stored_next;
    Ok((effects, fired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;

    /// A batch whose records carry these event times (as their timestamps).
    fn batch(times: &[i64]) -> Batch {
        let mut b = BatchBuilder::new("t", 0);
        for (i, t) in times.iter().enumerate() {
            b.push(i as i64, Some(*t), None, Some(b"v"), std::iter::empty())
                .expect("fits");
        }
        b.finish(None)
    }

    fn time(ooo: u64, lateness: u64, idle_ms: u64) -> PartitionTime {
        let mut t = PartitionTime::new(TimeSettings {
            max_out_of_orderness_ms: ooo,
            idle_timeout_ms: idle_ms,
            allowed_lateness_ms: lateness,
            late_records: LatePolicy::Drop,
        });
        t.stale = false;
        t
    }

    #[test]
    fn the_watermark_trails_the_highest_event_time_and_never_goes_back() {
        let mut t = time(100, 0, 0);
        let c = t.advance(&batch(&[1000, 1500, 1200]), 0, false);
        assert_eq!(c.max_event_time, Some(1500));
        assert_eq!(c.watermark, Some(1400));
        t.clock = c;
        // Older records move nothing back.
        let c = t.advance(&batch(&[300]), 0, false);
        assert_eq!((c.max_event_time, c.watermark), (Some(1500), Some(1400)));
        // A batch without records keeps the clock.
        assert_eq!(t.advance(&batch(&[]), 0, false), t.clock);
    }

    #[test]
    fn an_idle_partition_moves_its_watermark_with_the_wall_clock() {
        let mut t = time(100, 0, 1);
        t.clock = t.advance(&batch(&[1000]), 0, false);
        let c = t.advance(&batch(&[]), 50_000, true);
        assert_eq!(c.watermark, Some(49_900));
        assert_eq!(c.max_event_time, Some(1000), "idleness moves no event time");
        // ...but not backwards when the wall clock is behind the events.
        assert_eq!(t.advance(&batch(&[]), 10, true).watermark, Some(900));
    }

    #[test]
    fn late_means_older_than_the_watermark_minus_the_lateness() {
        let mut t = time(0, 100, 0);
        assert!(
            t.late(&batch(&[1, 2])).is_empty(),
            "no watermark yet: nothing late"
        );
        t.clock.watermark = Some(1000);
        assert_eq!(t.late(&batch(&[899, 900, 1000, 50, 2000])), vec![0, 3]);
    }

    #[test]
    fn a_tick_is_due_only_when_something_pending_may_be_due() {
        let mut t = time(0, 0, 0);
        // Nothing known: the store must be asked.
        assert!(t.tick_due(0));
        t.next = [Next::Known(None), Next::Known(None)];
        assert!(!t.tick_due(i64::MAX));
        t.clock.watermark = Some(1000);
        t.next = [Next::Known(Some(1001)), Next::Known(Some(5000))];
        assert!(
            !t.tick_due(4999),
            "event timer after the watermark, processing later"
        );
        assert!(
            t.tick_due(5000),
            "the processing-time timer is due by the wall clock"
        );
        t.clock.watermark = Some(1001);
        assert!(
            t.tick_due(0),
            "the event-time timer is due by the watermark"
        );
    }
}
