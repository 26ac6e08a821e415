//! Tumbling-window count per record key, in event time.
//!
//! Each record counts 1 for its key in the window `[start, start + window-ms)` that holds
//! its event time. The count lives in state (`w:START:KEY`) and an event-time timer
//! (`START:KEY`) is set for the window's end plus `lateness-ms`. When the watermark passes
//! it, `on-timers` emits one record (key = the record key, value =
//! `{"key": ..., "window_start": ..., "window_end": ..., "count": n}`) and deletes the
//! count, in the same commit as the batch that fired it: the window is counted exactly
//! once and leaves no state behind.
//!
//! Config: `window-ms` (default 60000), `lateness-ms` (default 0). A record whose window
//! has already closed (its end plus the lateness is not after the batch's watermark) is
//! left out, so a closed window is never emitted twice with different counts. Records
//! without a key or an event time are left out too.

use std::cell::Cell;
use std::collections::HashMap;

use exports::streamhost::plugin::{handler, lifecycle, timer_handler};
use streamhost::plugin::types::{
    Batch, KeyDelta, Level, OutputRecord, PluginError, StateOp, TimeDomain, Timer, TimerContext,
};
use streamhost::plugin::{emit, log, state, timers};

wit_bindgen::generate!({ path: "../../wit", world: "timer-plugin" });

thread_local! {
    static WINDOW_MS: Cell<i64> = const { Cell::new(60_000) };
    static LATENESS_MS: Cell<i64> = const { Cell::new(0) };
}

struct WindowCount;

impl lifecycle::Guest for WindowCount {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            let ms: i64 = value
                .parse()
                .map_err(|_| format!("config {key}={value}: expected a number of milliseconds"))?;
            match key.as_str() {
                "window-ms" if ms > 0 => WINDOW_MS.set(ms),
                "window-ms" => return Err(format!("config window-ms={value}: must be positive")),
                "lateness-ms" if ms >= 0 => LATENESS_MS.set(ms),
                "lateness-ms" => {
                    return Err(format!("config lateness-ms={value}: must not be negative"));
                }
                other => {
                    return Err(format!(
                        "unknown config key {other:?}; window-count knows window-ms, lateness-ms"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl handler::Guest for WindowCount {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let (window, lateness) = (WINDOW_MS.get(), LATENESS_MS.get());
        let mut counts: HashMap<(i64, &[u8]), i64> = HashMap::new();
        let mut closed = 0;
        for record in &batch.records {
            let (Some(key), Some(t)) = (record.key, record.event_time) else {
                continue;
            };
            let start = t.div_euclid(window) * window;
            if batch
                .watermark
                .is_some_and(|wm| start + window + lateness <= wm)
            {
                closed += 1;
                continue;
            }
            let key = &batch.data[key.start as usize..(key.start + key.len) as usize];
            *counts.entry((start, key)).or_default() += 1;
        }
        if closed > 0 {
            log::log(
                Level::Warn,
                &format!("{closed} records of windows that already closed were left out"),
            );
        }
        let mut ops = Vec::with_capacity(counts.len());
        let mut due = Vec::with_capacity(counts.len());
        for ((start, key), n) in counts {
            let key = String::from_utf8_lossy(key);
            ops.push(StateOp::Incr(KeyDelta {
                key: format!("w:{start}:{key}"),
                delta: n,
            }));
            // Setting it again in a later batch moves it nowhere: the same window, the
            // same time.
            due.push(Timer {
                key: format!("{start}:{key}"),
                domain: TimeDomain::EventTime,
                at: start + window + lateness,
            });
        }
        state::apply(&ops);
        timers::set(&due);
        Ok(())
    }
}

impl timer_handler::Guest for WindowCount {
    fn on_timers(_context: TimerContext, fired: Vec<Timer>) -> Result<(), PluginError> {
        let window = WINDOW_MS.get();
        let state_keys: Vec<String> = fired.iter().map(|t| format!("w:{}", t.key)).collect();
        let counts = state::get_many(&state_keys);
        let mut out = Vec::with_capacity(fired.len());
        let mut ops = Vec::with_capacity(fired.len());
        for ((timer, state_key), count) in fired.iter().zip(state_keys).zip(counts) {
            let Some((start, key)) = timer.key.split_once(':') else {
                continue;
            };
            let (Ok(start), Some(count)) = (start.parse::<i64>(), count) else {
                continue;
            };
            let count = String::from_utf8_lossy(&count).into_owned();
            let value = format!(
                "{{\"key\": {}, \"window_start\": {start}, \"window_end\": {}, \"count\": {count}}}",
                json_string(key),
                start + window
            );
            out.push(OutputRecord {
                topic: None,
                key: Some(key.as_bytes().to_vec()),
                value: Some(value.into_bytes()),
                headers: Vec::new(),
            });
            ops.push(StateOp::Delete(state_key));
        }
        emit::send(&out);
        state::apply(&ops);
        Ok(())
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

export!(WindowCount);
