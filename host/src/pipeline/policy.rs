//! What a partition worker does when a batch fails: the job's error policy, and the
//! backoff between attempts.

use std::time::Duration;

use crate::retry::Backoff;

/// `--on-error`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
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
    pub backoff: Backoff,
    pub dlq_topic: Option<String>,
    /// How long the worker keeps retrying a Redis it cannot reach before it gives up.
    pub redis_give_up: Duration,
    /// How long the job waits for a topic that does not exist before it gives up.
    pub kafka_give_up: Duration,
}
