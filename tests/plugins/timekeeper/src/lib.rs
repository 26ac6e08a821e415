//! Drives timers and expiries from its input: each record value is one command.
//!
//! * `timer KEY event|processing AT` sets a timer (`AT` absolute, or `+MS` after the
//!   batch's processing time); `cancel KEY event|processing` cancels it;
//! * `set KEY VALUE`, `delete KEY`, `setx KEY VALUE EXPIRY`, `expire KEY EXPIRY`,
//!   `persist KEY`, where EXPIRY is `after-ms MS` or `at-watermark T`;
//! * `rearm KEY MS`: when the timer KEY fires, it sets it again MS later (once);
//! * `get KEY` emits `got VALUE` (or `got none`), `incr KEY N` emits `incr TOTAL` (key =
//!   KEY; a failed `state.incr` is a fatal error with the host's message);
//! * `emit KEY VALUE [NAME=VALUE | NAME]...` emits a record with those headers (a bare
//!   NAME is a null header value);
//! * `fail retryable|fatal MESSAGE...` and `fail poison INDEX MESSAGE...` fail the batch
//!   with that error.
//!
//! Config: `tag=T` adds the header `tag: T` to every emit; any other key fails `init`.
//!
//! When timers fire, it emits one record per timer (key = timer key, value =
//! `fired DOMAIN AT wm=WATERMARK`) and adds 1 to the state key `fired:KEY`, so a test
//! sees both the output and whether state counted each firing exactly once.
//!
//! It also gives records their own event time (`event-time.extract`, world
//! `event-time-plugin`): a record with a header `event-time: MS` has that one; the others
//! keep their Kafka timestamp. (Its ports to other languages, `timekeeper-*`, are
//! `timer-plugin`s without it.)

use exports::streamhost::plugin::{event_time, handler, lifecycle, timer_handler};
use std::cell::RefCell;

use streamhost::plugin::types::{
    Batch, ExpiringValue, Expiry, Header, KeyDelta, KeyExpiry, KeyValue, OutputRecord, PluginError,
    PoisonRecord, StateOp, TimeDomain, Timer, TimerContext, TimerId,
};
use streamhost::plugin::{emit, state, timers};

wit_bindgen::generate!({ path: "../../../wit", world: "event-time-plugin" });

struct Timekeeper;

thread_local! {
    /// `--config tag=T`: the value of the `tag` header on every emit.
    static TAG: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A record to emit, with the `tag` header if the config set one.
fn output(key: &str, value: String, mut headers: Vec<Header>) -> OutputRecord {
    if let Some(tag) = TAG.with_borrow(Clone::clone) {
        headers.push(Header {
            name: "tag".to_owned(),
            value: Some(tag.into_bytes()),
        });
    }
    OutputRecord {
        topic: None,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.into_bytes()),
        headers,
    }
}

fn domain(word: &str) -> Result<TimeDomain, PluginError> {
    match word {
        "event" => Ok(TimeDomain::EventTime),
        "processing" => Ok(TimeDomain::ProcessingTime),
        other => Err(PluginError::Fatal(format!("unknown domain {other:?}"))),
    }
}

fn expiry(kind: &str, value: &str) -> Result<Expiry, PluginError> {
    let bad = || PluginError::Fatal(format!("bad expiry {kind} {value}"));
    match kind {
        "after-ms" => Ok(Expiry::AfterMs(value.parse().map_err(|_| bad())?)),
        "at-watermark" => Ok(Expiry::AtWatermark(value.parse().map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

impl lifecycle::Guest for Timekeeper {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            match key.as_str() {
                "tag" => TAG.set(Some(value)),
                _ => return Err(format!("unknown config key {key:?}; timekeeper knows tag")),
            }
        }
        Ok(())
    }
}

impl event_time::Guest for Timekeeper {
    fn extract(batch: Batch) -> Vec<Option<i64>> {
        let bytes = |s: streamhost::plugin::types::Span| {
            &batch.data[s.start as usize..(s.start + s.len) as usize]
        };
        batch
            .records
            .iter()
            .map(|r| {
                let first = r.first_header as usize;
                batch.headers[first..first + r.header_count as usize]
                    .iter()
                    .find(|h| bytes(h.name) == b"event-time")
                    .and_then(|h| std::str::from_utf8(bytes(h.value?)).ok()?.parse().ok())
                    .or(r.timestamp)
            })
            .collect()
    }
}

impl handler::Guest for Timekeeper {
    fn process(batch: Batch) -> Result<(), PluginError> {
        let mut ops = Vec::new();
        for record in &batch.records {
            let Some(v) = record.value else { continue };
            let line =
                String::from_utf8_lossy(&batch.data[v.start as usize..(v.start + v.len) as usize])
                    .into_owned();
            let words: Vec<&str> = line.split_whitespace().collect();
            let bad = || PluginError::Fatal(format!("bad command {line:?}"));
            match words.as_slice() {
                ["timer", key, d, at] => {
                    let at = match at.strip_prefix('+') {
                        Some(ms) => batch.processing_time + ms.parse::<i64>().map_err(|_| bad())?,
                        None => at.parse().map_err(|_| bad())?,
                    };
                    // Ops so far first: a timer due at once fires after them.
                    state::apply(&std::mem::take(&mut ops));
                    timers::set(&[Timer {
                        key: key.to_string(),
                        domain: domain(d)?,
                        at,
                    }]);
                }
                ["cancel", key, d] => timers::cancel(&[TimerId {
                    key: key.to_string(),
                    domain: domain(d)?,
                }]),
                ["set", key, value] => ops.push(StateOp::Set(KeyValue {
                    key: key.to_string(),
                    value: value.as_bytes().to_vec(),
                })),
                ["delete", key] => ops.push(StateOp::Delete(key.to_string())),
                ["setx", key, value, kind, n] => ops.push(StateOp::SetExpiring(ExpiringValue {
                    key: key.to_string(),
                    value: value.as_bytes().to_vec(),
                    expiry: expiry(kind, n)?,
                })),
                ["expire", key, kind, n] => ops.push(StateOp::Expire(KeyExpiry {
                    key: key.to_string(),
                    expiry: expiry(kind, n)?,
                })),
                ["persist", key] => ops.push(StateOp::Persist(key.to_string())),
                ["rearm", key, ms] => ops.push(StateOp::Set(KeyValue {
                    key: format!("rearm:{key}"),
                    value: ms.as_bytes().to_vec(),
                })),
                ["get", key] => {
                    state::apply(&std::mem::take(&mut ops));
                    let got = state::get(key).map_or_else(
                        || "none".to_owned(),
                        |v| String::from_utf8_lossy(&v).into_owned(),
                    );
                    emit::send(&[output(key, format!("got {got}"), Vec::new())]);
                }
                ["incr", key, n] => {
                    let n = n.parse().map_err(|_| bad())?;
                    state::apply(&std::mem::take(&mut ops));
                    let total = state::incr(key, n).map_err(PluginError::Fatal)?;
                    emit::send(&[output(key, format!("incr {total}"), Vec::new())]);
                }
                ["emit", key, value, headers @ ..] => {
                    let headers = headers
                        .iter()
                        .map(|h| match h.split_once('=') {
                            Some((name, value)) => Header {
                                name: name.to_owned(),
                                value: Some(value.as_bytes().to_vec()),
                            },
                            None => Header {
                                name: (*h).to_owned(),
                                value: None,
                            },
                        })
                        .collect();
                    emit::send(&[output(key, (*value).to_owned(), headers)]);
                }
                ["fail", "retryable", message @ ..] => {
                    return Err(PluginError::Retryable(message.join(" ")));
                }
                ["fail", "fatal", message @ ..] => {
                    return Err(PluginError::Fatal(message.join(" ")));
                }
                ["fail", "poison", index, message @ ..] => {
                    return Err(PluginError::Poison(PoisonRecord {
                        index: index.parse().map_err(|_| bad())?,
                        message: message.join(" "),
                    }));
                }
                _ => return Err(bad()),
            }
        }
        state::apply(&ops);
        Ok(())
    }
}

impl timer_handler::Guest for Timekeeper {
    fn on_timers(context: TimerContext, fired: Vec<Timer>) -> Result<(), PluginError> {
        let wm = context
            .watermark
            .map_or_else(|| "none".to_owned(), |w| w.to_string());
        let rearm_keys: Vec<String> = fired.iter().map(|t| format!("rearm:{}", t.key)).collect();
        let rearms = state::get_many(&rearm_keys);
        let mut out = Vec::new();
        let mut ops = Vec::new();
        let mut again = Vec::new();
        for ((t, rearm_key), rearm) in fired.iter().zip(rearm_keys).zip(rearms) {
            let d = match t.domain {
                TimeDomain::EventTime => "event",
                TimeDomain::ProcessingTime => "processing",
            };
            out.push(output(
                &t.key,
                format!("fired {d} {} wm={wm}", t.at),
                Vec::new(),
            ));
            ops.push(StateOp::Incr(KeyDelta {
                key: format!("fired:{}", t.key),
                delta: 1,
            }));
            if let Some(ms) = rearm.and_then(|v| String::from_utf8(v).ok()?.parse::<i64>().ok()) {
                ops.push(StateOp::Delete(rearm_key));
                again.push(Timer {
                    key: t.key.clone(),
                    domain: t.domain,
                    at: t.at + ms,
                });
            }
        }
        emit::send(&out);
        state::apply(&ops);
        timers::set(&again);
        Ok(())
    }
}

export!(Timekeeper);
