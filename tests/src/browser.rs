//! A small blocking Chrome DevTools Protocol client, so end-to-end tests can drive a
//! headless Chromium: load a page, evaluate JavaScript, click, fill in forms, upload
//! files, take screenshots and check that the page raised no errors.
//!
//! One websocket to one page target; every call has a deadline, so a wedged browser
//! fails the test with the method's name instead of hanging it.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// How long one protocol call, a launch or a page load may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Socket reads wake up this often so that deadlines are checked even when the browser
/// says nothing.
const READ_POLL: Duration = Duration::from_millis(100);
/// Screenshots of large pages arrive as one base64 message of several MiB.
const MAX_MESSAGE: usize = 64 << 20;
/// The page's size in CSS pixels, and so the size of screenshots.
pub const VIEWPORT: (u32, u32) = (1400, 1000);
/// How long chromium gets to shut down cleanly (and reap its own helpers) before it is
/// killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A headless Chromium with one page, driven over the DevTools protocol.
pub struct Browser {
    child: Child,
    page: Connection,
    events: Events,
    /// The profile and chromium's log; removed after `Drop` has ended chromium (fields
    /// drop after `drop` runs).
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts a headless Chromium on a blank page.
    ///
    /// The binary is `$STREAMHOST_TEST_CHROMIUM` if set, else Debian's real binary
    /// `/usr/lib/chromium/chromium` (its `/usr/bin/chromium` wrapper sources
    /// `/etc/chromium.d`, which adds flags of its own and prints shell errors), else
    /// `chromium` on the `PATH`. The error says what failed, with the tail of chromium's
    /// stderr where it got that far.
    pub fn launch() -> Result<Browser, String> {
        let bin = chromium_binary();
        let dir = tempfile::Builder::new()
            .prefix("streamhost-chromium-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory for chromium: {e}"))?;
        let profile = dir.path().join("profile");
        let log_path = dir.path().join("chromium.log");
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot duplicate the chromium log file: {e}"))?;

        let mut command = Command::new(&bin);
        command
            .args([
                "--headless=new",
                // Tests run as root, where the sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                // Containers often have a tiny /dev/shm; chromium crashes when it fills.
                "--disable-dev-shm-usage",
                // Port 0: chromium picks a free one and writes it to DevToolsActivePort,
                // so parallel tests never collide.
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-breakpad",
                "--password-store=basic",
                // Tests only talk to loopback; an inherited proxy setting must not
                // intercept that.
                "--no-proxy-server",
                // Timers in a page that chromium considers hidden would be throttled,
                // making waits slow and timing-dependent.
                "--disable-background-timer-throttling",
                "--disable-backgrounding-occluded-windows",
                "--disable-renderer-backgrounding",
                "--mute-audio",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                "--lang=en-US",
            ])
            .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group, so that Drop can end renderers and helpers too.
            .process_group(0);
        let child = command.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "chromium is not installed ({} not found; on Debian: apt-get install chromium)",
                    bin.display()
                )
            } else {
                format!("cannot start {}: {e}", bin.display())
            }
        })?;

        // From here on the child is owned by a Browser-like guard, so an early return
        // still ends it.
        let mut starting = Starting {
            child: Some(child),
            log: log_path,
        };
        let deadline = Instant::now() + DEADLINE;
        let (port, browser_path) =
            starting.wait_for_port(&profile.join("DevToolsActivePort"), deadline)?;
        let target = starting.find_page_target(port, &browser_path, deadline)?;
        let page = Connection::open(port, &format!("/devtools/page/{target}"), deadline)
            .map_err(|e| starting.failure(&format!("connecting to the page target: {e}")))?;
        let child = starting
            .child
            .take()
            .expect("the child is still owned here");
        let mut browser = Browser {
            child,
            page,
            events: Events::default(),
            dir,
        };
        for (method, params) in [
            ("Page.enable", json!({})),
            // Lifecycle events name the loader, so `goto` can wait for the load of its
            // own navigation rather than any load event.
            ("Page.setLifecycleEventsEnabled", json!({ "enabled": true })),
            ("Runtime.enable", json!({})),
            // Headless chromium 156 still reserves room for browser UI that it does not
            // draw: a 1400x1000 window has a 1400x857 viewport. Pages and screenshots
            // get exactly this size instead.
            (
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": VIEWPORT.0,
                    "height": VIEWPORT.1,
                    "deviceScaleFactor": 1,
                    "mobile": false,
                }),
            ),
        ] {
            browser
                .try_call(method, params, Instant::now() + DEADLINE)
                .map_err(|e| browser.describe(&e))?;
        }
        Ok(browser)
    }

    /// Navigates to `url` and waits until the page's load event fired.
    pub fn goto(&mut self, url: &str) {
        let reply = self.call("Page.navigate", json!({ "url": url }));
        if let Some(error) = reply.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url} failed: {error}");
        }
        // A same-document navigation (only the fragment changes) has no loader and
        // fires no load event.
        let Some(loader) = reply.get("loaderId").and_then(Value::as_str) else {
            return;
        };
        let loader = loader.to_owned();
        let deadline = Instant::now() + DEADLINE;
        while !self.events.loaded.contains(&loader) {
            if let Err(e) = self.pump(deadline) {
                let message = format!("waiting for {url} to load: {e}");
                panic!("{}", self.describe(&message));
            }
        }
    }

    /// Evaluates `js` in the page (awaiting it if it is a promise) and returns its value
    /// as JSON (`null` for `undefined`); panics with the exception if it throws.
    pub fn eval(&mut self, js: &str) -> Value {
        match self.evaluate(js, Instant::now() + DEADLINE) {
            Ok(Ok(value)) => value,
            Ok(Err(exception)) => panic!("evaluating `{js}` threw: {exception}"),
            Err(e) => panic!("{}", self.describe(&e)),
        }
    }

    /// Evaluates the expression `js` until it is truthy and returns that value; panics
    /// after `timeout` with `what` and the last value or exception. An exception counts
    /// as "not yet", because the element it reads may not exist yet.
    pub fn wait_for(&mut self, js: &str, timeout: Duration, what: &str) -> Value {
        // Truthiness is JavaScript's to decide: NaN, 0n or "" do not survive as JSON.
        let probe = format!("(async () => {{ const v = await ({js}\n); return [!!v, v]; }})()");
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            // Each attempt may use the whole remaining time, but at least a second, so a
            // short timeout still gets a real attempt.
            let attempt = deadline.max(Instant::now() + Duration::from_secs(1));
            let last = match self.evaluate(&probe, attempt) {
                Ok(Ok(Value::Array(pair))) if pair.len() == 2 => {
                    if pair[0] == Value::Bool(true) {
                        return pair[1].clone();
                    }
                    format!("value {}", pair[1])
                }
                Ok(Ok(other)) => format!("unexpected probe result {other}"),
                Ok(Err(exception)) => format!("exception {exception}"),
                // The page may be between documents (a click that navigates): the
                // context it evaluated in is gone.
                Err(e) => format!("error {e}"),
            };
            // A crashed page will never turn truthy; say so now, not at the timeout.
            if Instant::now() >= deadline || self.events.gone.is_some() {
                let message = format!(
                    "gave up waiting for {what} (`{js}`) after {:?} of {timeout:?}; last: {last}",
                    start.elapsed()
                );
                panic!("{}", self.describe(&message));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts `paths` into the `<input type=file>` that `selector` matches, as a user's
    /// file choice would (chromium fires the input's `input` and `change` events).
    pub fn set_files(&mut self, selector: &str, paths: &[&Path]) {
        let files: Vec<String> = paths
            .iter()
            .map(|path| {
                // Chromium resolves relative paths against its own working directory.
                let absolute = path
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("set_files({selector}): {}: {e}", path.display()));
                absolute.to_string_lossy().into_owned()
            })
            .collect();
        let document = self.call("DOM.getDocument", json!({ "depth": 0 }));
        let root = document["root"]["nodeId"]
            .as_i64()
            .unwrap_or_else(|| panic!("DOM.getDocument returned no root node: {document}"));
        let found = self.call(
            "DOM.querySelector",
            json!({ "nodeId": root, "selector": selector }),
        );
        let node = found["nodeId"].as_i64().unwrap_or(0);
        assert!(node != 0, "set_files: no element matches `{selector}`");
        self.call(
            "DOM.setFileInputFiles",
            json!({ "nodeId": node, "files": files }),
        );
    }

    /// Clicks the element that `selector` matches; panics if none does or it is
    /// disabled (a click on a disabled control silently does nothing).
    pub fn click(&mut self, selector: &str) {
        let sel = js_string(selector);
        let outcome = self.eval(&format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (!el) return 'missing';
                if (el.disabled) return 'disabled';
                el.click();
                return 'ok';
            }})()"
        ));
        match outcome.as_str() {
            Some("ok") => {}
            Some("missing") => panic!("click: no element matches `{selector}`"),
            Some("disabled") => panic!("click: `{selector}` is disabled"),
            _ => panic!("click `{selector}`: unexpected result {outcome}"),
        }
    }

    /// Sets the value of the input, select or textarea that `selector` matches and
    /// dispatches `input` and `change`, as typing or choosing would.
    pub fn fill(&mut self, selector: &str, value: &str) {
        let sel = js_string(selector);
        let val = js_string(value);
        // The prototype's setter, because frameworks that track values (React) ignore a
        // plain assignment to `.value`.
        let outcome = self.eval(&format!(
            "(() => {{
                const el = document.querySelector({sel});
                if (!el) return 'missing';
                const proto = Object.getPrototypeOf(el);
                const setter = Object.getOwnPropertyDescriptor(proto, 'value')?.set;
                if (!setter) return 'no value property on ' + el.tagName;
                el.focus();
                setter.call(el, {val});
                if (el.value !== {val}) return 'value did not stick (got ' + JSON.stringify(el.value) + ')';
                el.dispatchEvent(new Event('input', {{ bubbles: true }}));
                el.dispatchEvent(new Event('change', {{ bubbles: true }}));
                return 'ok';
            }})()"
        ));
        match outcome.as_str() {
            Some("ok") => {}
            Some("missing") => panic!("fill: no element matches `{selector}`"),
            _ => panic!("fill `{selector}` with {value:?}: {outcome}"),
        }
    }

    /// Saves a PNG of the viewport to `path`, creating its parent directories.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let data = shot["data"]
            .as_str()
            .unwrap_or_else(|| panic!("Page.captureScreenshot returned no data"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("Page.captureScreenshot returned bad base64: {e}"));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Uncaught exceptions and `console.error`/`console.assert` messages of the page.
    /// Events are read while other calls wait for their replies, so this covers what the
    /// page did up to the last call's reply; `eval("0")` first to include everything up
    /// to now.
    pub fn page_errors(&self) -> Vec<String> {
        self.events.errors.clone()
    }

    /// Sends one protocol call and panics, naming it, if it fails or times out.
    fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params, Instant::now() + DEADLINE) {
            Ok(result) => result,
            Err(e) => panic!("{}", self.describe(&e)),
        }
    }

    fn try_call(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, String> {
        self.page.call(method, params, deadline, &mut self.events)
    }

    /// `Ok(Err(_))` is an exception thrown by the page's code; `Err(_)` a failure of the
    /// protocol call itself.
    fn evaluate(&mut self, js: &str, deadline: Instant) -> Result<Result<Value, String>, String> {
        let reply = self.try_call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "awaitPromise": true,
                "returnByValue": true,
                // Lets the code do what only a user's action may (e.g. play media).
                "userGesture": true,
            }),
            deadline,
        )?;
        if let Some(details) = reply.get("exceptionDetails") {
            return Ok(Err(exception_text(details)));
        }
        let result = &reply["result"];
        Ok(Ok(match result.get("value") {
            Some(value) => value.clone(),
            // NaN, Infinity, -0 and bigints have no JSON form.
            None => match result.get("unserializableValue") {
                Some(value) => value.clone(),
                None => Value::Null,
            },
        }))
    }

    /// Reads at most one message, for the events it may carry.
    fn pump(&mut self, deadline: Instant) -> Result<(), String> {
        self.page.read_one(deadline, &mut self.events).map(|_| ())
    }

    /// Adds what is known about chromium's state to an error message.
    fn describe(&mut self, error: &str) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("chromium has exited ({status})"),
            Ok(None) => "chromium is still running".to_owned(),
            Err(e) => format!("chromium's state is unknown ({e})"),
        };
        let crashed = match &self.events.gone {
            Some(why) => format!("; the page target is gone: {why}"),
            None => String::new(),
        };
        format!(
            "{error}\n{state}{crashed}; its stderr ends with:\n{}",
            log_tail(&self.dir.path().join("chromium.log"))
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Runs during a panic's unwinding too: nothing here may panic.
        end_chromium(&mut self.child);
    }
}

/// Chromium while `launch` is still setting it up; ends it if setup fails.
struct Starting {
    child: Option<Child>,
    log: PathBuf,
}

impl Starting {
    fn failure(&mut self, error: &str) -> String {
        let state = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => format!("chromium has exited ({status})"),
            _ => "chromium is still running".to_owned(),
        };
        format!(
            "starting chromium: {error}\n{state}; its stderr ends with:\n{}",
            log_tail(&self.log)
        )
    }

    /// Chromium writes "PORT\n/devtools/browser/ID" once its DevTools server listens.
    fn wait_for_port(&mut self, file: &Path, deadline: Instant) -> Result<(u16, String), String> {
        loop {
            if let Ok(text) = std::fs::read_to_string(file) {
                let mut lines = text.lines();
                // The file may be read half-written: only a complete one counts.
                if let (Some(port), Some(path)) = (lines.next(), lines.next())
                    && let Ok(port) = port.trim().parse::<u16>()
                    && path.starts_with("/devtools/browser/")
                {
                    return Ok((port, path.trim().to_owned()));
                }
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return Err(self.failure("it exited before its DevTools server listened"));
            }
            if Instant::now() >= deadline {
                let message = format!("{} did not appear within {DEADLINE:?}", file.display());
                return Err(self.failure(&message));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The id of the blank page chromium opened. Its target list also holds
    /// `browser_ui` targets (the omnibox popup in chromium 156), which are not it.
    fn find_page_target(
        &mut self,
        port: u16,
        browser_path: &str,
        deadline: Instant,
    ) -> Result<String, String> {
        let mut browser = Connection::open(port, browser_path, deadline)
            .map_err(|e| self.failure(&format!("connecting to the browser target: {e}")))?;
        let mut ignored = Events::default();
        loop {
            let reply = browser
                .call("Target.getTargets", json!({}), deadline, &mut ignored)
                .map_err(|e| self.failure(&e))?;
            let targets = reply["targetInfos"].as_array().cloned().unwrap_or_default();
            let page = targets.iter().find(|t| t["type"] == "page");
            if let Some(id) = page.and_then(|t| t["targetId"].as_str()) {
                let _ = browser.ws.close(None);
                return Ok(id.to_owned());
            }
            if Instant::now() >= deadline {
                let message = format!("no page target within {DEADLINE:?}; targets: {targets:?}");
                return Err(self.failure(&message));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            end_chromium(child);
        }
    }
}

/// Asks chromium to quit, which lets it end its renderers and helpers itself; kills
/// the whole process group if that takes too long. The child is waited for either way.
fn end_chromium(child: &mut Child) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    if !matches!(child.try_wait(), Ok(Some(_))) {
        // SAFETY: kill(2) touches no memory of ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    let deadline = start + SHUTDOWN_GRACE;
    while Instant::now() < deadline {
        // Helpers finish shutting down a little after the main process.
        if matches!(child.try_wait(), Ok(Some(_))) && !group_running(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above; a negative pid names chromium's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Whether a process of group `pgid` still runs. Exited helpers are orphans, so they
/// stay zombies until PID 1 reaps them (over a second later in some containers); they
/// do not count, as signal 0 to the group would.
fn group_running(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
        group == Some(pgid) && state != Some("Z")
    })
}

/// What the page reported between replies.
#[derive(Default)]
struct Events {
    errors: Vec<String>,
    /// Loader ids whose document fired its load event.
    loaded: HashSet<String>,
    /// Why the page target stopped answering (crashed, closed).
    gone: Option<String>,
}

impl Events {
    fn record(&mut self, method: &str, params: &Value) {
        match method {
            "Page.lifecycleEvent" if params["name"] == "load" => {
                if let Some(loader) = params["loaderId"].as_str() {
                    self.loaded.insert(loader.to_owned());
                }
            }
            "Runtime.exceptionThrown" => {
                self.errors
                    .push(exception_text(&params["exceptionDetails"]));
            }
            "Runtime.consoleAPICalled"
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .map(|args| args.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                self.errors.push(format!(
                    "console.{}: {}",
                    params["type"].as_str().unwrap_or("error"),
                    args.join(" ")
                ));
            }
            "Inspector.targetCrashed" => self.gone = Some("the renderer crashed".to_owned()),
            "Inspector.detached" => {
                let reason = params["reason"].as_str().unwrap_or("detached");
                self.gone = Some(reason.to_owned());
            }
            _ => {}
        }
    }
}

/// One DevTools websocket.
struct Connection {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    what: String,
}

impl Connection {
    fn open(port: u16, path: &str, deadline: Instant) -> Result<Connection, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let stream = TcpStream::connect_timeout(&addr, remaining)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(READ_POLL))
            .and_then(|()| stream.set_write_timeout(Some(DEADLINE)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| format!("configuring the socket to {addr}: {e}"))?;
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let url = format!("ws://{addr}{path}");
        let mut attempt =
            tungstenite::client::client_with_config(url.as_str(), stream, Some(config));
        // The read timeout interrupts the handshake too; resume it until the deadline.
        let ws = loop {
            match attempt {
                Ok((ws, _response)) => break ws,
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        return Err(format!("websocket handshake with {url} timed out"));
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(e)) => {
                    return Err(format!("websocket handshake with {url}: {e}"));
                }
            }
        };
        Ok(Connection {
            ws,
            next_id: 1,
            what: url,
        })
    }

    /// Sends `method` and reads until its reply, recording the events read on the way.
    fn call(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
        events: &mut Events,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(request))
            .map_err(|e| format!("{method}: sending to {}: {e}", self.what))?;
        loop {
            let message = self
                .read_one(deadline, events)
                .map_err(|e| format!("{method}: {e}"))?;
            let Some(message) = message else { continue };
            if message["id"].as_u64() != Some(id) {
                // Replies to calls given up on (a timed-out wait_for) come late.
                continue;
            }
            if let Some(error) = message.get("error") {
                return Err(format!("{method} failed: {error}"));
            }
            return Ok(message.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Reads one message: events are recorded and replies returned. `Ok(None)` means
    /// nothing arrived within one poll interval or the message was an event.
    fn read_one(
        &mut self,
        deadline: Instant,
        events: &mut Events,
    ) -> Result<Option<Value>, String> {
        // Nothing more will come: fail now rather than at the deadline.
        if let Some(why) = &events.gone {
            return Err(format!("the page target is gone: {why}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer from {} in time", self.what));
        }
        let text = match self.ws.read() {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                return Err(format!("{} closed the connection ({frame:?})", self.what));
            }
            // Pings are answered by tungstenite itself; chromium sends no binary frames.
            Ok(_) => return Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(format!("reading from {}: {e}", self.what)),
        };
        let message: Value = serde_json::from_str(text.as_str())
            .map_err(|e| format!("{} sent invalid JSON ({e}): {}", self.what, text.as_str()))?;
        if message.get("id").is_none() {
            if let Some(method) = message["method"].as_str() {
                events.record(method, &message["params"]);
            }
            return Ok(None);
        }
        Ok(Some(message))
    }
}

fn chromium_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("STREAMHOST_TEST_CHROMIUM") {
        return PathBuf::from(bin);
    }
    let debian = Path::new("/usr/lib/chromium/chromium");
    if debian.exists() {
        return debian.to_owned();
    }
    PathBuf::from("chromium")
}

/// A JavaScript string literal (JSON's is one).
fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// "Uncaught (in promise) Error: message\n    at …" from a `Runtime.ExceptionDetails`.
fn exception_text(details: &Value) -> String {
    let exception = &details["exception"];
    // `description` holds the message and stack of Error objects; thrown non-errors
    // only have a value.
    let thrown = exception["description"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| exception.get("value").map(Value::to_string));
    // `text` says how it escaped ("Uncaught", "Uncaught (in promise)").
    let text = match (details["text"].as_str(), thrown) {
        (Some(how), Some(thrown)) if !how.is_empty() => {
            // A rejected await already quotes the error's first line in `text`.
            let first = thrown.lines().next().unwrap_or_default();
            if how.contains(first) {
                format!("{how}{}", &thrown[first.len()..])
            } else {
                format!("{how} {thrown}")
            }
        }
        (_, Some(thrown)) => thrown,
        (Some(how), None) => how.to_owned(),
        (None, None) => "exception".to_owned(),
    };
    // Error stacks already name the place.
    match details["url"]
        .as_str()
        .filter(|u| !u.is_empty() && !text.contains(u))
    {
        Some(url) => format!(
            "{text} (at {url}:{}:{})",
            details["lineNumber"].as_i64().map_or(0, |n| n + 1),
            details["columnNumber"].as_i64().map_or(0, |n| n + 1)
        ),
        None => text,
    }
}

fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => object["description"]
            .as_str()
            .or(object["unserializableValue"].as_str())
            .unwrap_or("undefined")
            .to_owned(),
    }
}

/// The last lines of chromium's log, without the D-Bus complaints that a machine
/// without a session bus produces on every start.
fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("(cannot read {})", path.display());
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.contains(":ERROR:dbus/"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if tail.is_empty() {
        "(nothing)".to_owned()
    } else {
        tail.join("\n")
    }
}
