//! A running `host serve` for the admin API tests.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::http::{Response, request};
use crate::plugin;
use crate::services::{Host, Redis, free_port};

pub struct Server {
    pub host: Host,
    pub addr: String,
    /// The server's --admin-token, used by `upload`.
    pub token: Option<String>,
}

/// The arguments of `host serve` on `addr` against these services.
pub fn serve_args(addr: &str, redis_url: &str, brokers: &str, extra: &[&str]) -> Vec<String> {
    [
        "serve",
        "--admin-addr",
        addr,
        "--redis",
        redis_url,
        "--brokers",
        brokers,
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// Starts `host serve` on a free loopback port and waits until it answers.
pub fn serve(
    redis: &Redis,
    brokers: &str,
    token: Option<&str>,
    extra: &[&str],
    cache: &Path,
) -> Server {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = serve_args(&addr, &redis.url(), brokers, &[]);
    if let Some(t) = token {
        args.extend(["--admin-token".to_owned(), t.to_owned()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let host = Host::spawn(&args, cache);
    host.wait_for(Duration::from_secs(60), "the admin API to answer", || {
        request(&addr, "GET", "/healthz", None, b"").is_some_and(|r| r.status == 200)
    });
    Server {
        host,
        addr,
        token: token.map(str::to_owned),
    }
}

impl Server {
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Response {
        request(&self.addr, method, path, token, body)
            .unwrap_or_else(|| panic!("{method} {path}: no answer; log:\n{}", self.host.log_text()))
    }

    /// PUTs build/plugins/PLUGIN_NAME.wasm as NAME@VERSION with the server's token.
    pub fn upload(&self, name: &str, version: &str, plugin_name: &str) -> Response {
        let bytes = std::fs::read(plugin(plugin_name)).expect("read plugin");
        let path = format!("/v1/plugins/{name}/{version}");
        self.call("PUT", &path, self.token.as_deref(), &bytes)
    }

    pub fn job(&self, id: &str) -> Value {
        self.call("GET", &format!("/v1/jobs/{id}"), None, b"")
            .json()
    }

    /// Scans job `id`'s state page after page (`query` as in `limit=1000&prefix=a`, the
    /// cursor added), calling `each` with every entry; returns how many pages it took.
    pub fn scan_state(&self, id: &str, query: &str, mut each: impl FnMut(&Value)) -> usize {
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/jobs/{id}/state?{query}&cursor={c}"),
                None => format!("/v1/jobs/{id}/state?{query}"),
            };
            let page = self.call("GET", &path, None, b"").json();
            pages += 1;
            page["entries"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {path}: {page}"))
                .iter()
                .for_each(&mut each);
            match page["cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return pages,
            }
        }
    }
}
