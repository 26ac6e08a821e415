//! `/v1/jobs/{id}/dead-letters`: the records a job dead-lettered, read back from its
//! dead-letter topic, and their replay through the job's current plugin version
//! (`pipeline::replay`: exactly once into state, however often it is interrupted).

use std::sync::atomic::AtomicBool;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, bad_query, bad_request, blocking, redis_down};
use super::registry::Reference;
use super::state::shown_bytes;
use super::{JobSpec, Shared};
use crate::kafka::dead_letters::{DeadLetter, DeadLetterError, DeadLetterReader, READ_TIMEOUT};
use crate::pipeline::replay::{ReplayConfig, ReplayError, ReplayedCheck, replay};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    from_ms: Option<i64>,
    until_ms: Option<i64>,
}

fn kafka_down(e: DeadLetterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "kafka_unavailable",
        e.to_string(),
    )
}

fn dlq_topic(spec: &JobSpec) -> Option<&str> {
    spec.settings.dlq_topic.as_deref()
}

fn letter_json(l: &DeadLetter, replayed: bool) -> serde_json::Value {
    let shown = |b: &Option<Vec<u8>>| b.as_deref().map(shown_bytes);
    let (key, value) = (shown(&l.key), shown(&l.value));
    let encoding = value.as_ref().map_or("utf8", |v| v.1);
    let source = l.source.as_ref();
    json!({
        "dlq_partition": l.partition,
        "dlq_offset": l.offset,
        "timestamp_ms": l.timestamp_ms,
        "source_topic": source.map(|s| &s.topic),
        "source_partition": source.map(|s| s.partition),
        "source_offset": source.map(|s| s.offset),
        "error": l.error,
        "plugin": l.plugin,
        "plugin_version": l.plugin_version,
        "plugin_digest": l.plugin_digest,
        "attempts": l.attempts,
        "key": key.map(|k| k.0),
        "value": value.map(|v| v.0),
        "encoding": encoding,
        "replayed": replayed,
    })
}

/// The job's newest dead letters (`limit`, default 50, at most 1000), newest first.
pub async fn list_dead_letters(
    State(admin): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(bad_request(
            "bad_limit",
            format!("limit {limit}: use 1-1000"),
        ));
    }
    let answer = blocking(move || {
        let spec = admin.job_spec(&id)?;
        let Some(topic) = dlq_topic(&spec) else {
            return Ok(json!({"topic": null, "total": 0, "records": []}));
        };
        let mut kafka = admin.kafka.clone();
        kafka.extend(spec.settings.kafka.clone());
        let reader = DeadLetterReader::new(&admin.brokers, &kafka, topic).map_err(kafka_down)?;
        let extents = reader.extents(READ_TIMEOUT).map_err(kafka_down)?;
        let total: i64 = extents.iter().map(|e| e.high - e.low).sum();
        let letters = reader.newest(spec.namespace(), limit).map_err(kafka_down)?;
        let store = admin.job_store(&spec)?;
        let mut check = ReplayedCheck::new(&store, topic);
        let mut records = Vec::new();
        for l in &letters {
            records.push(letter_json(l, check.replayed(l).map_err(redis_down)?));
        }
        Ok(json!({"topic": topic, "total": total, "records": records}))
    })
    .await?;
    Ok(axum::Json(answer).into_response())
}

/// Replays the job's dead letters through its current plugin version.
pub async fn replay_dead_letters(
    State(admin): State<Shared>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let range: ReplayBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request("bad_json", format!("replay range: {e}")))?
    };
    let report = blocking(move || {
        let spec = admin.job_spec(&id)?;
        let Some(topic) = dlq_topic(&spec) else {
            return Err(bad_request(
                "no_dlq",
                format!("job {id} has no settings.dlq_topic: it has no dead letters to replay"),
            ));
        };
        let runtime = admin.runtime_for(&spec.settings.sandbox.limits())?;
        let (_, plugin) = admin
            .registry
            .load(&runtime, &Reference::parse(&spec.plugin)?)?;
        let mut kafka = admin.kafka.clone();
        kafka.extend(spec.settings.kafka.clone());
        let config = ReplayConfig {
            job: spec.namespace().to_owned(),
            dlq_topic: topic.to_owned(),
            brokers: admin.brokers.clone(),
            kafka,
            output_topic: spec.output_topic.clone(),
            plugin,
            plugin_config: spec.config.clone().into_iter().collect(),
            from_ms: range.from_ms,
            until_ms: range.until_ms,
            batch_max_records: spec.settings.batch_max_records.max(1) as usize,
        };
        let store = admin.job_store(&spec)?;
        let report = replay(&config, store, &AtomicBool::new(false)).map_err(|e| {
            let status = match &e {
                ReplayError::Plugin { .. } | ReplayError::Instantiate { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError::new(status, "replay_failed", e.to_string())
        })?;
        tracing::info!(job = %id, replayed = report.replayed, already = report.already_replayed, plugin = %report.plugin_version, "dead letters replayed");
        Ok(report)
    })
    .await?;
    Ok(axum::Json(report).into_response())
}
