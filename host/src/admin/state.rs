//! `/v1/jobs/{id}/state`: a job's state read by key or scanned by prefix, page by page,
//! without a service of one's own (Kafka Streams' interactive queries). Reads go through
//! `store::redis::query`: bounded HSCAN steps and HGET only, so they never hold up the
//! job's commits.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, bad_query, bad_request, blocking, redis_down};
use super::jobs::job_not_found;
use super::{Admin, JobSpec, Shared};
use crate::store::redis::RedisStore;
use crate::store::redis::query::{MAX_LIMIT, StateEntry};
use crate::sync::Locked;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanQuery {
    #[serde(default)]
    prefix: String,
    cursor: Option<String>,
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    partition: Option<i32>,
}

/// A state value as JSON: text when it is UTF-8, base64 otherwise.
pub fn entry_json(e: &StateEntry) -> serde_json::Value {
    let (value, encoding) = shown_bytes(&e.value);
    json!({"key": e.key, "value": value, "encoding": encoding, "partition": e.partition})
}

/// Bytes as the API shows them: (text, "utf8") or (base64, "base64").
pub fn shown_bytes(bytes: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64",
        ),
    }
}

impl Admin {
    pub(super) fn job_spec(&self, id: &str) -> Result<JobSpec, ApiError> {
        let jobs = self.jobs.locked();
        Ok(jobs
            .get(id)
            .ok_or_else(|| job_not_found(id))?
            .spec()
            .clone())
    }

    /// The job's store, opened as `host offsets` does: with the scope its data has.
    pub(super) fn job_store(&self, spec: &JobSpec) -> Result<Arc<RedisStore>, ApiError> {
        let ns = spec.namespace();
        RedisStore::open(self.redis.clone(), ns, ns, None)
            .map(Arc::new)
            .map_err(redis_down)
    }
}

pub async fn scan_state(
    State(admin): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad_request(
            "bad_limit",
            format!("limit {limit}: use 1-{MAX_LIMIT}"),
        ));
    }
    let page = blocking(move || {
        let store = admin.job_store(&admin.job_spec(&id)?)?;
        store
            .state_scan(&q.prefix, q.cursor.as_deref(), limit)
            .map_err(redis_down)?
            .map_err(|e| bad_request("bad_cursor", e.to_string()))
    })
    .await?;
    let entries: Vec<serde_json::Value> = page.entries.iter().map(entry_json).collect();
    Ok(axum::Json(json!({"entries": entries, "cursor": page.cursor})).into_response())
}

pub async fn get_state(
    State(admin): State<Shared>,
    Path((id, key)): Path<(String, String)>,
    q: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let entry = blocking(move || {
        let spec = admin.job_spec(&id)?;
        let store = admin.job_store(&spec)?;
        store
            .state_get(&key, q.partition)
            .map_err(redis_down)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_key",
                    format!(
                        "job {id} has no state key {key:?}; GET /v1/jobs/{id}/state?prefix=… lists keys"
                    ),
                )
            })
    })
    .await?;
    Ok(axum::Json(entry_json(&entry)).into_response())
}
