//! What the host tells its operators while it runs: Prometheus metrics (and the small
//! HTTP server for `/metrics`, `/healthz`, `/readyz`), and progress lines.

pub mod metrics;
pub mod progress;
