//! Session windows per record key, in event time: a key's session goes on while its
//! records come less than `gap-ms` apart, and closes when the watermark passes its last
//! record plus the gap. It shows what the timer API does beyond fixed windows:
//!
//! * a timer that **moves**: each record sets the key's event-time timer again, to its
//!   session's last record plus the gap;
//! * **two domains**: with `timeout-ms`, a processing-time timer also closes a session
//!   that saw nothing for that long on the wall clock, and closing by either **cancels**
//!   the other;
//! * **expiring state**: the summary of a key's last session, `last:KEY`, expires
//!   `retain-ms` of processing time after it was written.
//!
//! A closed session is emitted (key = the record key, value = `{"key": ..., "start": ms,
//! "end": ms, "count": n, "closed_by": "gap"|"timeout"}`, `end` = last record + gap) and
//! its state deleted, in the commit of the batch that closed it. A record more than a gap
//! after its key's session closes that session at once and starts the next; a record
//! before the session's start joins it (this example does not split sessions).

use std::cell::Cell;
use std::collections::BTreeMap;

use exports::streamhost::plugin::{handler, lifecycle, timer_handler};
use streamhost::plugin::types::{
    Batch, ExpiringValue, Expiry, KeyValue, OutputRecord, PluginError, StateOp, TimeDomain, Timer,
    TimerContext, TimerId,
};
use streamhost::plugin::{emit, state, timers};

wit_bindgen::generate!({ path: "../../wit", world: "timer-plugin" });

thread_local! {
    static GAP_MS: Cell<i64> = const { Cell::new(30_000) };
    /// 0: no processing-time timeout.
    static TIMEOUT_MS: Cell<i64> = const { Cell::new(0) };
    static RETAIN_MS: Cell<u64> = const { Cell::new(3_600_000) };
}

struct SessionCount;

impl lifecycle::Guest for SessionCount {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            let ms: i64 = value.parse().ok().filter(|v| *v >= 0).ok_or_else(|| {
                format!("config {key}={value}: expected milliseconds (0 or more)")
            })?;
            match key.as_str() {
                "gap-ms" if ms > 0 => GAP_MS.set(ms),
                "timeout-ms" => TIMEOUT_MS.set(ms),
                "retain-ms" => RETAIN_MS.set(ms as u64),
                _ => {
                    return Err(format!(
                        "config {key}={value}: session-count knows gap-ms (> 0), timeout-ms, retain-ms"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A key's open session.
#[derive(Clone, Copy)]
struct Session {
    start: i64,
    last: i64,
    count: i64,
}

impl Session {
    fn decode(bytes: &[u8]) -> Option<Session> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(',').map(|p| p.parse::<i64>().ok());
        Some(Session {
            start: parts.next()??,
            last: parts.next()??,
            count: parts.next()??,
        })
    }

    fn encode(&self) -> Vec<u8> {
        format!("{},{},{}", self.start, self.last, self.count).into_bytes()
    }
}

/// What closing a session writes and emits.
fn close(key: &str, s: Session, by: &str, out: &mut Vec<OutputRecord>, ops: &mut Vec<StateOp>) {
    let end = s.last + GAP_MS.get();
    let value = format!(
        "{{\"key\": {}, \"start\": {}, \"end\": {end}, \"count\": {}, \"closed_by\": \"{by}\"}}",
        json_string(key),
        s.start,
        s.count
    );
    ops.push(StateOp::Delete(format!("s:{key}")));
    ops.push(StateOp::SetExpiring(ExpiringValue {
        key: format!("last:{key}"),
        value: value.clone().into_bytes(),
        expiry: Expiry::AfterMs(RETAIN_MS.get()),
    }));
    out.push(OutputRecord {
        topic: None,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.into_bytes()),
        headers: Vec::new(),
    });
}

impl handler::Guest for SessionCount {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let gap = GAP_MS.get();
        // Each key's event times in this batch, in order.
        let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in &batch.records {
            let (Some(k), Some(t)) = (r.key, r.event_time) else {
                continue;
            };
            let k = &batch.data[k.start as usize..(k.start + k.len) as usize];
            times
                .entry(String::from_utf8_lossy(k).into_owned())
                .or_default()
                .push(t);
        }
        let keys: Vec<String> = times.keys().map(|k| format!("s:{k}")).collect();
        let stored = state::get_many(&keys);
        let (mut out, mut ops, mut set) = (Vec::new(), Vec::new(), Vec::new());
        for ((key, mut ts), stored) in times.into_iter().zip(stored) {
            ts.sort_unstable();
            let mut session = stored.as_deref().and_then(Session::decode);
            for t in ts {
                session = Some(match session {
                    Some(s) if t > s.last + gap => {
                        close(&key, s, "gap", &mut out, &mut ops);
                        Session {
                            start: t,
                            last: t,
                            count: 1,
                        }
                    }
                    Some(s) => Session {
                        start: s.start.min(t),
                        last: s.last.max(t),
                        count: s.count + 1,
                    },
                    None => Session {
                        start: t,
                        last: t,
                        count: 1,
                    },
                });
            }
            let Some(s) = session else { continue };
            ops.push(StateOp::Set(KeyValue {
                key: format!("s:{key}"),
                value: s.encode(),
            }));
            // Moves the key's timers: the session now ends later.
            set.push(Timer {
                key: key.clone(),
                domain: TimeDomain::EventTime,
                at: s.last + gap,
            });
            if TIMEOUT_MS.get() > 0 {
                set.push(Timer {
                    key,
                    domain: TimeDomain::ProcessingTime,
                    at: batch.processing_time + TIMEOUT_MS.get(),
                });
            }
        }
        state::apply(&ops);
        timers::set(&set);
        emit::send(&out);
        Ok(())
    }
}

impl timer_handler::Guest for SessionCount {
    fn on_timers(_context: TimerContext, fired: Vec<Timer>) -> Result<(), PluginError> {
        let keys: Vec<String> = fired.iter().map(|t| format!("s:{}", t.key)).collect();
        let stored = state::get_many(&keys);
        let (mut out, mut ops, mut cancel) = (Vec::new(), Vec::new(), Vec::new());
        let mut closed = std::collections::BTreeSet::new();
        for (timer, stored) in fired.iter().zip(stored) {
            let Some(s) = stored.as_deref().and_then(Session::decode) else {
                continue;
            };
            // Both timers of a key may fire in one call: close it once.
            if !closed.insert(timer.key.clone()) {
                continue;
            }
            let (by, other) = match timer.domain {
                TimeDomain::EventTime => ("gap", TimeDomain::ProcessingTime),
                TimeDomain::ProcessingTime => ("timeout", TimeDomain::EventTime),
            };
            close(&timer.key, s, by, &mut out, &mut ops);
            cancel.push(TimerId {
                key: timer.key.clone(),
                domain: other,
            });
        }
        emit::send(&out);
        state::apply(&ops);
        timers::cancel(&cancel);
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

export!(SessionCount);
