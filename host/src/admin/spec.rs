//! A job's definition as clients send it (`POST /v1/jobs`), and the checks that turn its
//! settings into `host run`'s: what is refused here never reaches a running job.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use super::api::{ApiError, bad_request};
use crate::kafka::consumer::ResetPolicy;
use crate::pipeline::policy::OnError;
use crate::pipeline::time::{LatePolicy, TimeSettings};
use crate::runtime::Limits;
use crate::store::StateScope;

/// A job as clients define it. Unknown fields are refused, so a typo is an error, not a
/// silently ignored setting.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// a-z, 0-9, '-', '_', '.'; made up when not given.
    #[serde(default)]
    pub id: String,
    /// A registry reference: NAME, NAME@VERSION or NAME@sha256:<hex>.
    pub plugin: String,
    pub topics: Vec<String>,
    /// Consumer group and Redis offsets namespace [default: the job id].
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub output_topic: Option<String>,
    /// Passed to the plugin's `init`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Static assignment instead of the consumer group.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    #[serde(default)]
    pub settings: JobSettings,
    /// Defined but not running (`POST /v1/jobs/{id}/stop`); a restarted server leaves it
    /// stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl JobSpec {
    /// The job's namespace in Redis (its state and offsets), as `host run --group/--job`.
    pub fn namespace(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.id)
    }

    /// The definition as API answers show it: the values of secret Kafka properties
    /// (`sasl.password`, `ssl.key.password`, ...) and of secret-looking plugin settings
    /// as `***`. The stored definition keeps them (a restarted server needs them); guard
    /// `streamhost:serve:jobs` with the Redis ACL.
    pub fn shown(&self) -> JobSpec {
        let mut shown = self.clone();
        let secret = crate::kafka::config::is_secret;
        for (k, v) in shown.settings.kafka.iter_mut() {
            if secret(k) {
                *v = "***".into();
            }
        }
        for (k, v) in shown.config.iter_mut() {
            if secret(k) {
                *v = "***".into();
            }
        }
        shown
    }
}

/// The `host run` settings a job may set; the defaults are `host run`'s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    pub batch_max_records: u64,
    pub batch_max_bytes: u64,
    pub batch_linger_ms: u64,
    /// earliest | latest | none
    pub offset_reset: String,
    /// retry | dlq | skip | stop
    pub on_error: String,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub dlq_topic: Option<String>,
    pub redis_give_up_ms: u64,
    pub kafka_give_up_ms: u64,
    /// job | partition (`host run --state-scope`); fixed when the job first runs.
    pub state_scope: StateScope,
    pub redis_wait_replicas: u32,
    pub redis_wait_timeout_ms: u64,
    pub max_inflight_mb: u32,
    /// The sandbox of this job's plugin instances.
    pub plugin_memory_mb: u32,
    pub plugin_timeout_ms: u64,
    pub max_effects_mb: u32,
    pub kafka_commit: bool,
    /// Event time (`host run --max-out-of-orderness-ms` and the like).
    pub max_out_of_orderness_ms: u64,
    /// 0 = never idle.
    pub idle_timeout_ms: u64,
    pub allowed_lateness_ms: u64,
    /// process | drop | topic:NAME
    pub late_records: String,
    /// at-least-once | exactly-once (`host run --delivery`).
    pub delivery: crate::pipeline::relay::Delivery,
    pub transaction_interval_ms: u64,
    pub outbox_max_mb: u64,
    /// librdkafka properties for this job (added to the server's -X).
    pub kafka: BTreeMap<String, String>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            batch_max_records: 10_000,
            batch_max_bytes: 4 << 20,
            batch_linger_ms: 100,
            offset_reset: "earliest".into(),
            on_error: "retry".into(),
            max_retries: 5,
            retry_backoff_ms: 200,
            retry_backoff_max_ms: 10_000,
            dlq_topic: None,
            redis_give_up_ms: 300_000,
            kafka_give_up_ms: 300_000,
            state_scope: StateScope::Job,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
            max_inflight_mb: 16,
            plugin_memory_mb: 64,
            plugin_timeout_ms: 10_000,
            max_effects_mb: 64,
            kafka_commit: true,
            max_out_of_orderness_ms: 0,
            idle_timeout_ms: 0,
            allowed_lateness_ms: 0,
            late_records: "process".into(),
            delivery: Default::default(),
            transaction_interval_ms: 100,
            outbox_max_mb: 64,
            kafka: BTreeMap::new(),
        }
    }
}

/// What a PATCH may change while the job runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobPatch {
    pub plugin: String,
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn limits_of(s: &JobSettings) -> Limits {
    Limits {
        memory_bytes: (s.plugin_memory_mb as usize) << 20,
        call_timeout: Duration::from_millis(s.plugin_timeout_ms),
        effects_bytes: (s.max_effects_mb as usize) << 20,
    }
}

/// The job's event-time settings, checked.
pub(super) fn time_of(s: &JobSettings) -> Result<TimeSettings, ApiError> {
    let late = s
        .late_records
        .parse::<LatePolicy>()
        .map_err(|e| bad_request("bad_settings", format!("settings.late_records: {e}")))?;
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Ok(TimeSettings {
        max_out_of_orderness_ms: ms(s.max_out_of_orderness_ms),
        idle_timeout: (s.idle_timeout_ms > 0).then(|| Duration::from_millis(s.idle_timeout_ms)),
        allowed_lateness_ms: ms(s.allowed_lateness_ms),
        late,
    })
}

pub(super) fn parse_settings(s: &JobSettings) -> Result<(ResetPolicy, OnError), ApiError> {
    if !(1..=65536).contains(&s.plugin_memory_mb)
        || !(1..=65536).contains(&s.max_effects_mb)
        || s.plugin_timeout_ms == 0
    {
        return Err(bad_request(
            "bad_settings",
            "settings.plugin_memory_mb and settings.max_effects_mb must be 1-65536, \
             settings.plugin_timeout_ms at least 1",
        ));
    }
    let reset = ResetPolicy::from_str(&s.offset_reset, true).map_err(|_| {
        bad_request(
            "bad_settings",
            format!(
                "settings.offset_reset {:?}: use earliest, latest or none",
                s.offset_reset
            ),
        )
    })?;
    let on_error = OnError::from_str(&s.on_error, true).map_err(|_| {
        bad_request(
            "bad_settings",
            format!(
                "settings.on_error {:?}: use retry, dlq, skip or stop",
                s.on_error
            ),
        )
    })?;
    if on_error == OnError::Dlq && s.dlq_topic.is_none() {
        return Err(bad_request(
            "bad_settings",
            "settings.on_error dlq needs settings.dlq_topic",
        ));
    }
    Ok((reset, on_error))
}
