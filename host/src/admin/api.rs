//! What every route shares: the JSON error answer, the bearer-token check, and running
//! blocking work (Redis, compiling a plugin) off the async runtime.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use super::registry::RegistryError;

/// An API error: a status and a JSON body `{"error": message, "reason": code}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "reason": self.reason });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let status = match &e {
            RegistryError::BadName(_)
            | RegistryError::BadVersion(_)
            | RegistryError::BadReference(_) => StatusCode::BAD_REQUEST,
            RegistryError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RegistryError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Conflict { .. }
            | RegistryError::Retired { .. }
            | RegistryError::InUse { .. } => StatusCode::CONFLICT,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            RegistryError::Redis(_) | RegistryError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.reason(), e.to_string())
    }
}

pub fn redis_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "redis_unavailable",
        format!("Redis: {e}"),
    )
}

/// A query string the route cannot read (an unknown parameter, a limit that is not a
/// number), answered as JSON like every other error.
pub fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    bad_request(
        "bad_query",
        format!("{}; see docs/openapi.json", e.body_text()),
    )
}

pub fn bad_request(reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason, message)
}

/// Runs blocking work (Redis, compiling a plugin) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("handler failed: {e}"),
        ))
    })
}

/// Mutating calls need `Authorization: Bearer <token>` when a token is configured, and
/// none may come from another site's page: a browser sends a cross-site form POST to a
/// loopback server without a token, and its `Origin` says where it came from.
pub async fn authorize(State(admin): State<Shared>, request: Request, next: Next) -> Response {
    let mutating = !matches!(*request.method(), Method::GET | Method::HEAD);
    if mutating && let Some(origin) = cross_origin(&request) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!(
                "refusing a change requested by a page of {origin}: use the console this \
                 server serves, or a client that sends no Origin header"
            ),
        )
        .into_response();
    }
    if let (true, Some(token)) = (mutating, &admin.token) {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this call needs the header `Authorization: Bearer <token>` with the server's --admin-token",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

/// The request's `Origin` when it names another host than the one the request was sent
/// to (`Host`).
fn cross_origin(request: &Request) -> Option<String> {
    let origin = request.headers().get(header::ORIGIN)?.to_str().ok()?;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    (!origin_host.eq_ignore_ascii_case(host)).then(|| origin.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
