//! A job's settings: one type for `host run`'s flags, `host serve`'s API (`settings` of a
//! job definition) and stored jobs alike. Clap and serde are derived on it, the defaults
//! live in its `Default` (clap reads them from there), and [`JobSettings::validate`] is
//! the one check all three go through, so they refuse the same values with the same
//! message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kafka::consumer::ResetPolicy;
use crate::pipeline::policy::{ErrorPolicy, OnError};
use crate::pipeline::relay::Delivery;
use crate::pipeline::time::{MAX_TIME_MS, TimeSettings};
use crate::pipeline::worker::BatchLimits;
use crate::runtime::Limits;
use crate::store::StateScope;

/// A setting out of its range, or settings that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// The sandbox of a job's plugin instances (`host run` and `host test` share these flags).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct SandboxSettings {
    /// Memory cap per plugin instance, in MiB (1-65536).
    #[arg(long, default_value_t = SandboxSettings::default().plugin_memory_mb, env = "STREAMHOST_PLUGIN_MEMORY_MB")]
    pub plugin_memory_mb: u32,

    /// Wall-clock deadline of one `process` call, in milliseconds.
    #[arg(long, default_value_t = SandboxSettings::default().plugin_timeout_ms, env = "STREAMHOST_PLUGIN_TIMEOUT_MS")]
    pub plugin_timeout_ms: u64,

    /// Cap on the emits and state writes one batch may buffer, in MiB (1-65536).
    #[arg(long, default_value_t = SandboxSettings::default().max_effects_mb, env = "STREAMHOST_MAX_EFFECTS_MB")]
    pub max_effects_mb: u32,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            plugin_memory_mb: 64,
            plugin_timeout_ms: 10_000,
            max_effects_mb: 64,
        }
    }
}

impl SandboxSettings {
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: (self.plugin_memory_mb as usize) << 20,
            call_timeout: Duration::from_millis(self.plugin_timeout_ms),
            effects_bytes: (self.max_effects_mb as usize) << 20,
        }
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut check = Checks::default();
        check.range("plugin_memory_mb", self.plugin_memory_mb.into(), 1, 65_536);
        check.range("plugin_timeout_ms", self.plugin_timeout_ms, 1, u64::MAX);
        check.range("max_effects_mb", self.max_effects_mb.into(), 1, 65_536);
        check.done()
    }
}

/// The `host run` settings a job may set. Its identity (plugin, topics, group, output
/// topic, partitions) is not here: `host run` takes it as flags, the API as the job
/// definition's own fields.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    /// Most records in one batch (1-1000000).
    #[arg(long, default_value_t = JobSettings::default().batch_max_records, env = "STREAMHOST_BATCH_MAX_RECORDS")]
    pub batch_max_records: u64,

    /// Most bytes of keys, values and headers in one batch (a single larger record still
    /// makes a batch of its own).
    #[arg(long, default_value_t = JobSettings::default().batch_max_bytes, env = "STREAMHOST_BATCH_MAX_BYTES")]
    pub batch_max_bytes: u64,

    /// How long a batch waits for more records after its first one, in milliseconds.
    #[arg(long, default_value_t = JobSettings::default().batch_linger_ms, env = "STREAMHOST_BATCH_LINGER_MS")]
    pub batch_linger_ms: u64,

    /// Where a partition with no offset in Redis starts (new partitions of a topic the
    /// group already reads always start at earliest).
    #[arg(long, value_enum, default_value_t = JobSettings::default().offset_reset, env = "STREAMHOST_OFFSET_RESET")]
    pub offset_reset: ResetPolicy,

    /// What to do when a batch fails: retry (then stop), dlq (retry, then send the
    /// records to --dlq-topic; poison records at once), skip (retry, then skip the batch;
    /// poison records at once), stop (at the first failure). A fatal plugin error always
    /// stops the job.
    #[arg(long, value_enum, default_value_t = JobSettings::default().on_error, env = "STREAMHOST_ON_ERROR")]
    pub on_error: OnError,

    /// Attempts after the first before the policy gives up on a batch (0-1000).
    #[arg(long, default_value_t = JobSettings::default().max_retries, env = "STREAMHOST_MAX_RETRIES")]
    pub max_retries: u32,

    /// First pause between attempts, in milliseconds; doubles each time, with jitter.
    #[arg(long, default_value_t = JobSettings::default().retry_backoff_ms, env = "STREAMHOST_RETRY_BACKOFF_MS")]
    pub retry_backoff_ms: u64,

    /// Longest pause between attempts, in milliseconds.
    #[arg(long, default_value_t = JobSettings::default().retry_backoff_max_ms, env = "STREAMHOST_RETRY_BACKOFF_MAX_MS")]
    pub retry_backoff_max_ms: u64,

    /// Dead-letter topic (required by --on-error dlq).
    #[arg(long, env = "STREAMHOST_DLQ_TOPIC")]
    pub dlq_topic: Option<String>,

    /// How long to wait for a Redis that cannot be reached, at start-up and for each
    /// commit, before stopping the job (offsets stay where they are), in milliseconds.
    #[arg(long, default_value_t = JobSettings::default().redis_give_up_ms, env = "STREAMHOST_REDIS_GIVE_UP_MS")]
    pub redis_give_up_ms: u64,

    /// How long to wait for a topic that does not exist before stopping the job, in
    /// milliseconds (a warning names it every 10 s meanwhile).
    #[arg(long, default_value_t = JobSettings::default().kafka_give_up_ms, env = "STREAMHOST_KAFKA_GIVE_UP_MS")]
    pub kafka_give_up_ms: u64,

    /// Where the job's state lives: job (one namespace all partitions share; one Redis
    /// hash slot) or partition (each partition number its own state and offsets, each in
    /// its own slot, so a job spreads over a Redis Cluster; for keyed, co-partitioned
    /// input). Fixed when a job first runs.
    #[arg(long, default_value_t = JobSettings::default().state_scope, env = "STREAMHOST_STATE_SCOPE")]
    pub state_scope: StateScope,

    /// After each commit, wait until this many Redis replicas have it (Redis WAIT), so a
    /// failover loses no committed batch; costs a replication round trip per commit.
    #[arg(long, default_value_t = JobSettings::default().redis_wait_replicas, env = "STREAMHOST_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: u32,

    /// How long a commit waits for --redis-wait-replicas, in milliseconds (1-60000; then
    /// it warns and goes on: the commit is applied, only its durability is in question).
    #[arg(long, default_value_t = JobSettings::default().redis_wait_timeout_ms, env = "STREAMHOST_REDIS_WAIT_TIMEOUT_MS")]
    pub redis_wait_timeout_ms: u64,

    /// Most bytes fetched from Kafka and not yet in a batch, per partition, in MiB
    /// (1-2048; the batch in hand and its effects are capped by --batch-max-bytes and
    /// --max-effects-mb).
    #[arg(long, default_value_t = JobSettings::default().max_inflight_mb, env = "STREAMHOST_MAX_INFLIGHT_MB")]
    pub max_inflight_mb: u32,

    #[command(flatten)]
    #[serde(flatten)]
    pub sandbox: SandboxSettings,

    /// Do not mirror committed offsets to the Kafka consumer group. By default each Redis
    /// commit is also committed to Kafka, asynchronously and best effort, so that
    /// kafka-consumer-groups and lag exporters see progress; Redis stays the source of truth.
    #[arg(long = "no-kafka-commit", action = clap::ArgAction::SetFalse, env = "STREAMHOST_NO_KAFKA_COMMIT")]
    pub kafka_commit: bool,

    #[command(flatten)]
    #[serde(flatten)]
    pub time: TimeSettings,

    /// How emits reach Kafka: at-least-once (produced before the batch commits; a crash
    /// in between sends them again) or exactly-once (committed to a Redis outbox with the
    /// batch's state, then published in Kafka transactions: `read_committed` consumers see
    /// each once). Dead letters are at least once either way.
    #[arg(long, value_enum, default_value_t = JobSettings::default().delivery, env = "STREAMHOST_DELIVERY")]
    pub delivery: Delivery,

    /// Exactly-once: the shortest time between two Kafka transactions of a partition, in
    /// milliseconds (0-60000). Longer: fewer, larger transactions; shorter: emits visible
    /// sooner.
    #[arg(long, default_value_t = JobSettings::default().transaction_interval_ms, env = "STREAMHOST_TRANSACTION_INTERVAL_MS")]
    pub transaction_interval_ms: u64,

    /// Exactly-once: most MiB of committed, unpublished emits per partition in the Redis
    /// outbox (1-4096); while Kafka does not take them, commits wait at this bound.
    #[arg(long, default_value_t = JobSettings::default().outbox_max_mb, env = "STREAMHOST_OUTBOX_MAX_MB")]
    pub outbox_max_mb: u64,

    /// librdkafka properties of this job, added to the server's -X (API only: `host run`
    /// takes -X).
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,

    /// Fields a client sent that no setting has: refused by `validate`, so a typo is an
    /// error rather than a silently ignored setting. (Serde cannot refuse unknown fields
    /// itself beside flattened groups.)
    #[arg(skip)]
    #[serde(flatten, skip_serializing)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            batch_max_records: 10_000,
            batch_max_bytes: 4 << 20,
            batch_linger_ms: 100,
            offset_reset: ResetPolicy::Earliest,
            on_error: OnError::Retry,
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
            sandbox: SandboxSettings::default(),
            kafka_commit: true,
            time: TimeSettings::default(),
            delivery: Delivery::AtLeastOnce,
            transaction_interval_ms: 100,
            outbox_max_mb: 64,
            kafka: BTreeMap::new(),
            unknown: BTreeMap::new(),
        }
    }
}

impl JobSettings {
    /// Every range and every rule between settings; the first broken one, named as both
    /// the flag and the API field, with the value given.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if let Some(field) = self.unknown.keys().next() {
            return Err(SettingsError(format!(
                "settings.{field} is not a setting; see `host run --help` for the settings \
                 (--batch-max-records is settings.batch_max_records)"
            )));
        }
        let mut check = Checks::default();
        check.range("batch_max_records", self.batch_max_records, 1, 1_000_000);
        check.range("batch_max_bytes", self.batch_max_bytes, 1, 1 << 31);
        check.range("batch_linger_ms", self.batch_linger_ms, 0, 600_000);
        check.range("max_retries", self.max_retries.into(), 0, 1000);
        check.range("retry_backoff_ms", self.retry_backoff_ms, 1, 3_600_000);
        check.range(
            "retry_backoff_max_ms",
            self.retry_backoff_max_ms,
            1,
            3_600_000,
        );
        check.range("redis_give_up_ms", self.redis_give_up_ms, 1, u64::MAX);
        check.range("kafka_give_up_ms", self.kafka_give_up_ms, 1, u64::MAX);
        check.range(
            "redis_wait_timeout_ms",
            self.redis_wait_timeout_ms,
            1,
            60_000,
        );
        check.range("max_inflight_mb", self.max_inflight_mb.into(), 1, 2048);
        check.range(
            "transaction_interval_ms",
            self.transaction_interval_ms,
            0,
            60_000,
        );
        check.range("outbox_max_mb", self.outbox_max_mb, 1, 4096);
        check.done()?;
        self.sandbox.validate()?;
        validate_time(&self.time)?;
        if self.on_error == OnError::Dlq && self.dlq_topic.is_none() {
            return Err(SettingsError(
                "--on-error dlq (settings.on_error \"dlq\") needs a dead-letter topic: \
                 --dlq-topic (settings.dlq_topic)"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_records: self.batch_max_records as usize,
            max_bytes: self.batch_max_bytes as usize,
            linger: Duration::from_millis(self.batch_linger_ms),
        }
    }

    pub fn error_policy(&self) -> ErrorPolicy {
        ErrorPolicy {
            on_error: self.on_error,
            max_retries: self.max_retries,
            backoff: crate::retry::Backoff::new(
                Duration::from_millis(self.retry_backoff_ms),
                Duration::from_millis(self.retry_backoff_max_ms.max(self.retry_backoff_ms)),
            ),
            dlq_topic: self.dlq_topic.clone(),
            redis_give_up: Duration::from_millis(self.redis_give_up_ms),
            kafka_give_up: Duration::from_millis(self.kafka_give_up_ms),
        }
    }

    pub fn transaction_interval(&self) -> Duration {
        Duration::from_millis(self.transaction_interval_ms)
    }

    pub fn outbox_max_bytes(&self) -> u64 {
        self.outbox_max_mb << 20
    }

    pub fn redis_wait_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_wait_timeout_ms)
    }
}

/// The event-time settings' ranges (`host run` and `host test` take them).
pub fn validate_time(t: &TimeSettings) -> Result<(), SettingsError> {
    let mut check = Checks::default();
    check.range(
        "max_out_of_orderness_ms",
        t.max_out_of_orderness_ms,
        0,
        MAX_TIME_MS,
    );
    check.range("idle_timeout_ms", t.idle_timeout_ms, 0, MAX_TIME_MS);
    check.range("allowed_lateness_ms", t.allowed_lateness_ms, 0, MAX_TIME_MS);
    check.done()
}

/// Collects the first range a setting breaks.
#[derive(Default)]
struct Checks(Option<SettingsError>);

impl Checks {
    fn range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        if self.0.is_some() || (min..=max).contains(&value) {
            return;
        }
        let flag = field.replace('_', "-");
        let bounds = if max == u64::MAX {
            format!("at least {min}")
        } else {
            format!("{min}-{max}")
        };
        self.0 = Some(SettingsError(format!(
            "--{flag} (settings.{field}) must be {bounds}, got {value}"
        )));
    }

    fn done(self) -> Result<(), SettingsError> {
        self.0.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: JobSettings,
    }

    fn flags(args: &[&str]) -> JobSettings {
        let argv = std::iter::once("host").chain(args.iter().copied());
        Flags::try_parse_from(argv).expect("flags parse").settings
    }

    fn api(json: &str) -> JobSettings {
        serde_json::from_str(json).expect("json parses")
    }

    #[test]
    fn flags_and_api_share_defaults() {
        assert_eq!(flags(&[]), JobSettings::default());
        assert_eq!(api("{}"), JobSettings::default());
        assert_eq!(JobSettings::default().validate(), Ok(()));
    }

    #[test]
    fn flags_and_api_refuse_the_same_values_with_the_same_message() {
        let cases = [
            (
                vec!["--outbox-max-mb", "5000"],
                r#"{"outbox_max_mb": 5000}"#,
            ),
            (
                vec!["--batch-max-records", "0"],
                r#"{"batch_max_records": 0}"#,
            ),
            (
                vec!["--plugin-memory-mb", "0"],
                r#"{"plugin_memory_mb": 0}"#,
            ),
            (
                vec!["--max-out-of-orderness-ms", "2000000000000"],
                r#"{"max_out_of_orderness_ms": 2000000000000}"#,
            ),
            (vec!["--on-error", "dlq"], r#"{"on_error": "dlq"}"#),
        ];
        for (argv, json) in cases {
            let from_flags = flags(&argv).validate().expect_err("flags refused");
            let from_api = api(json).validate().expect_err("api refused");
            assert_eq!(from_flags, from_api, "{argv:?} vs {json}");
        }
        assert_eq!(
            flags(&["--outbox-max-mb", "5000"]).validate(),
            Err(SettingsError(
                "--outbox-max-mb (settings.outbox_max_mb) must be 1-4096, got 5000".into()
            ))
        );
    }

    #[test]
    fn api_refuses_unknown_fields_by_name() {
        let e = api(r#"{"batch_max_record": 5}"#)
            .validate()
            .expect_err("refused");
        assert!(
            e.0.contains("settings.batch_max_record is not a setting"),
            "{e}"
        );
    }

    #[test]
    fn api_round_trips_through_storage() {
        let mut s = JobSettings {
            on_error: OnError::Dlq,
            dlq_topic: Some("dead".into()),
            kafka_commit: false,
            ..JobSettings::default()
        };
        s.time.late_records = "topic:late".parse().expect("policy");
        let stored = serde_json::to_string(&s).expect("serializes");
        assert!(
            stored.contains(r#""late_records":"topic:late""#),
            "{stored}"
        );
        assert!(stored.contains(r#""on_error":"dlq""#), "{stored}");
        assert_eq!(api(&stored), s);
    }

    #[test]
    fn no_kafka_commit_flag_turns_the_mirror_off() {
        assert!(flags(&[]).kafka_commit);
        assert!(!flags(&["--no-kafka-commit"]).kafka_commit);
    }
}
