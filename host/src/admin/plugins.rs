//! `/v1/plugins`: upload (validated, content-addressed), list, show and remove plugin
//! versions in the registry.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use super::Shared;
use super::api::{ApiError, bad_request, blocking};
use super::registry::Reference;

/// How far past the upload limit a body is still read (and discarded) to answer cleanly.
const DRAIN_CAP: u64 = 16 << 20;

pub async fn put_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = admin.upload_limit;
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the upload is {size} bytes, over the limit of {limit} bytes (--max-upload-mb)"
            ),
        )
    };
    // Far too large by its announced length: refuse before reading. Slightly too large:
    // read it to the end (discarding) before answering, so the client is not cut off
    // mid-upload and sees the JSON answer.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced
        && len > limit + DRAIN_CAP
    {
        return Err(too_large(len.to_string()));
    }
    let mut bytes = Vec::new();
    let mut seen: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| bad_request("bad_body", format!("reading the upload: {e}")))?;
        seen += chunk.len() as u64;
        if seen > limit + DRAIN_CAP {
            return Err(too_large(format!("more than {seen}")));
        }
        if seen <= limit {
            bytes.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large(seen.to_string()));
    }
    if bytes.is_empty() {
        return Err(bad_request(
            "empty",
            "the request body is empty: send the component's bytes",
        ));
    }
    let entry = blocking(move || {
        Ok(admin
            .registry
            .push(&admin.runtime, &name, Some(&version), &bytes, limit)?)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(entry)).into_response())
}

pub async fn list_plugins(State(admin): State<Shared>) -> Result<Response, ApiError> {
    let list = blocking(move || Ok(admin.registry.list()?)).await?;
    Ok(axum::Json(json!({ "plugins": list })).into_response())
}

pub async fn get_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let entry = blocking(move || {
        let reference = Reference::parse(&format!("{name}@{version}"))?;
        Ok(admin.registry.resolve(&reference)?)
    })
    .await?;
    Ok(axum::Json(entry).into_response())
}

pub async fn delete_plugin(
    State(admin): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let reference = Reference::parse(&format!("{name}@{version}"))?;
        let entry = admin.registry.resolve(&reference)?;
        admin.registry.remove(&entry.name, &entry.version, |e| {
            super::stored_jobs_using(&admin.redis, &admin.registry, e)
        })?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
