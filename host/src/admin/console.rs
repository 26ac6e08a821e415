//! The operator's console at `/`: a static page (embedded in the binary, nothing loaded
//! from elsewhere) that draws itself from the JSON API, so it has exactly the API's access
//! rules: reading needs nothing, changing needs the token. `/v1/info` tells the page
//! whether the server asks for one.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;

const INDEX: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The page may run its own script and style and talk to this server; nothing else.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                      connect-src 'self'; img-src 'self' data:; form-action 'none'; \
                      frame-ancestors 'none'; base-uri 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// What the server is: its version, the plugin contracts it loads, and whether changes
/// need the token.
pub async fn info(State(admin): State<Shared>) -> Response {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "contracts": [crate::runtime::CONTRACT_VERSION, crate::runtime::OLD_CONTRACT_VERSION],
        "token_required": admin.token.is_some(),
    }))
    .into_response()
}
