//! A job's definition as clients send it (`POST /v1/jobs`), and the checks that turn its
//! settings into `host run`'s: what is refused here never reaches a running job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::api::{ApiError, bad_request};
pub use crate::job::settings::JobSettings;

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
    /// The digest of the bytes the job runs, recorded when it is created or swapped: the
    /// job always runs exactly these bytes (`plugin` NAME alone does not follow newer
    /// versions), and refuses to start should `plugin` name other bytes now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_digest: Option<String>,
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

/// The definition's settings, checked as `host run` checks its flags.
pub(super) fn check_settings(s: &JobSettings) -> Result<(), ApiError> {
    s.validate()
        .map_err(|e| bad_request("bad_settings", e.to_string()))
}
