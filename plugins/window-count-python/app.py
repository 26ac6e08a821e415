"""Tumbling-window count per record key, in event time: the same behaviour as
plugins/window-count (Rust).

Each record counts 1 for its key in the window `[start, start + window-ms)` that holds
its event time. The count lives in state (`w:START:KEY`) and an event-time timer
(`START:KEY`) is set for the window's end plus `lateness-ms`. When the watermark passes
it, `on_timers` emits one record (key = the record key, value =
`{"key": ..., "window_start": ..., "window_end": ..., "count": n}`) and deletes the
count, in the same commit as the batch that fired it: the window is counted exactly
once and leaves no state behind.

Config: `window-ms` (default 60000), `lateness-ms` (default 0). A record whose window
has already closed (its end plus the lateness is not after the batch's watermark) is
left out, so a closed window is never emitted twice with different counts. Records
without a key or an event time are left out too.

Arithmetic wraps at 64 bits like the Rust plugin's (a release build), so even absurd
timestamps give the same state keys and timers.
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, log, state, timers
from wit_world.imports.types import (
    Batch,
    KeyDelta,
    Level,
    OutputRecord,
    StateOp_Delete,
    StateOp_Incr,
    TimeDomain,
    Timer,
    TimerContext,
)

_window_ms = 60_000
_lateness_ms = 0

# What Rust's `str::parse::<i64>` accepts: an optional sign and ASCII digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _i64(n):
    """`n` wrapped to a signed 64-bit integer, as Rust's release arithmetic does."""
    n &= 0xFFFF_FFFF_FFFF_FFFF
    return n - (1 << 64) if n >= 1 << 63 else n


def _parse_i64(s):
    """`s` as an i64 the way Rust parses one, or None."""
    if not _INTEGER.fullmatch(s):
        return None
    n = int(s)
    return n if -(1 << 63) <= n < 1 << 63 else None


def _debug_str(s):
    """`s` quoted like Rust's `{:?}` of a string (control characters escaped)."""
    named = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
    out = []
    for c in s:
        if c in named:
            out.append(named[c])
        elif ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


class Lifecycle(exports.Lifecycle):
    def init(self, config):
        global _window_ms, _lateness_ms
        for key, value in config:
            ms = _parse_i64(value)
            if ms is None:
                raise Err(f"config {key}={value}: expected a number of milliseconds")
            if key == "window-ms":
                if ms <= 0:
                    raise Err(f"config window-ms={value}: must be positive")
                _window_ms = ms
            elif key == "lateness-ms":
                if ms < 0:
                    raise Err(f"config lateness-ms={value}: must not be negative")
                _lateness_ms = ms
            else:
                raise Err(
                    f"unknown config key {_debug_str(key)}; "
                    "window-count knows window-ms, lateness-ms"
                )


class Handler(exports.Handler):
    def process(self, batch: Batch) -> None:
        window, lateness = _window_ms, _lateness_ms
        data = batch.data
        watermark = batch.watermark
        counts = {}  # (window start, key bytes) -> records
        closed = 0
        for r in batch.records:
            span, t = r.key, r.event_time
            if span is None or t is None:
                continue
            start = _i64((t // window) * window)
            if watermark is not None and _i64(start + window + lateness) <= watermark:
                closed += 1
                continue
            k = (start, data[span.start : span.start + span.len])
            counts[k] = counts.get(k, 0) + 1
        if closed > 0:
            log.log(
                Level.WARN, f"{closed} records of windows that already closed were left out"
            )
        ops = []
        due = []
        for (start, key), n in counts.items():
            key = key.decode("utf-8", "replace")
            ops.append(StateOp_Incr(KeyDelta(f"w:{start}:{key}", n)))
            # Setting it again in a later batch moves it nowhere: the same window, the
            # same time.
            due.append(
                Timer(f"{start}:{key}", TimeDomain.EVENT_TIME, _i64(start + window + lateness))
            )
        state.apply(ops)
        timers.set(due)


# What a JSON string literal must escape (the rest, non-ASCII included, goes as it is).
_JSON_ESCAPE = re.compile('["\\\\\x00-\x1f]')


def _json_escape(m):
    c = m.group()
    if c == '"':
        return '\\"'
    if c == "\\":
        return "\\\\"
    return f"\\u{ord(c):04x}"


def _json_string(s):
    """`s` as a JSON string literal."""
    return '"' + _JSON_ESCAPE.sub(_json_escape, s) + '"'


class TimerHandler(exports.TimerHandler):
    def on_timers(self, context: TimerContext, fired: list[Timer]) -> None:
        window = _window_ms
        state_keys = [f"w:{t.key}" for t in fired]
        counts = state.get_many(state_keys)
        out = []
        ops = []
        for timer, state_key, count in zip(fired, state_keys, counts):
            start, sep, key = timer.key.partition(":")
            if not sep:
                continue
            start = _parse_i64(start)
            if start is None or count is None:
                continue
            value = (
                f'{{"key": {_json_string(key)}, "window_start": {start}, '
                f'"window_end": {_i64(start + window)}, '
                f'"count": {count.decode("utf-8", "replace")}}}'
            )
            out.append(OutputRecord(None, key.encode(), value.encode(), []))
            ops.append(StateOp_Delete(state_key))
        emit.send(out)
        state.apply(ops)
