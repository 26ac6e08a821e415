//! What a partition worker does when a batch fails: the job's error policy, and the
//! backoff between attempts.

use std::time::Duration;

/// `--on-error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Run the failed batch again (with backoff), up to --max-retries; then stop the job.
    Retry,
    /// Retry like `retry`; then, and for poison records at once, send the records to
    /// --dlq-topic and go on.
    Dlq,
    /// Retry like `retry`; then skip the batch (its offsets are committed, its effects
    /// dropped) and go on. Poison records are skipped at once.
    Skip,
    /// Stop the job at the first failure.
    Stop,
}

#[derive(Debug, Clone)]
pub struct ErrorPolicy {
    pub on_error: OnError,
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub dlq_topic: Option<String>,
    /// How long the worker keeps retrying a Redis it cannot reach before it gives up.
    pub redis_give_up: Duration,
    /// How long the job waits for a topic that does not exist before it gives up.
    pub kafka_give_up: Duration,
}

impl Default for ErrorPolicy {
    fn default() -> Self {
        Self {
            on_error: OnError::Retry,
            max_retries: 5,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            dlq_topic: None,
            redis_give_up: Duration::from_secs(300),
            kafka_give_up: Duration::from_secs(300),
        }
    }
}

impl ErrorPolicy {
    /// The pause before attempt `attempt + 1` (attempt counts from 1): exponential, capped,
    /// with full jitter so that many workers failing together do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.backoff_max);
        let jitter = jitter_fraction();
        cap.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A number in [0, 1) that differs between calls and processes; no cryptographic needs.
fn jitter_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(crate::clock::unix_nanos());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = ErrorPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..ErrorPolicy::default()
        };
        for attempt in 1..40 {
            let d = p.backoff(attempt);
            let full = Duration::from_millis(100 * (1u64 << (attempt - 1).min(20)))
                .min(Duration::from_millis(1000));
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
