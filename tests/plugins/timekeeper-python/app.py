"""Drives timers and expiries from its input: the same behaviour as tests/plugins/timekeeper
(Rust), host call for host call. Each record value is one command:

* `timer KEY event|processing AT` sets a timer (`AT` absolute, or `+MS` after the batch's
  processing time); `cancel KEY event|processing` cancels it;
* `set KEY VALUE`, `delete KEY`, `setx KEY VALUE EXPIRY`, `expire KEY EXPIRY`,
  `persist KEY`, where EXPIRY is `after-ms MS` or `at-watermark T`;
* `rearm KEY MS`: when the timer KEY fires, it sets it again MS later (once);
* `get KEY` emits `got VALUE` (or `got none`), `incr KEY N` emits `incr TOTAL` (key =
  KEY; a failed `state.incr` is a fatal error with the host's message);
* `emit KEY VALUE [NAME=VALUE | NAME]...` emits a record with those headers (a bare
  NAME is a null header value);
* `fail retryable|fatal MESSAGE...` and `fail poison INDEX MESSAGE...` fail the batch
  with that error.

Config: `tag=T` adds the header `tag: T` to every emit; any other key fails `init`.

State writes are buffered into one `state.apply` at the end of the batch, except that
`timer`, `get` and `incr` first flush the writes before them (a timer due at once fires
after them; a read sees them). When timers fire, it emits one record per timer (key =
timer key, value = `fired DOMAIN AT wm=WATERMARK`) and adds 1 to the state key
`fired:KEY`.

Arithmetic wraps at 64 bits like the Rust plugin's (a release build), numbers parse the
way Rust's `str::parse` does, and error messages quote like Rust's `{:?}`.
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, state, timers
from wit_world.imports.types import (
    Batch,
    ExpiringValue,
    Expiry_AfterMs,
    Expiry_AtWatermark,
    Header,
    KeyDelta,
    KeyExpiry,
    KeyValue,
    OutputRecord,
    PluginError_Fatal,
    PluginError_Poison,
    PluginError_Retryable,
    PoisonRecord,
    StateOp_Delete,
    StateOp_Expire,
    StateOp_Incr,
    StateOp_Persist,
    StateOp_Set,
    StateOp_SetExpiring,
    TimeDomain,
    Timer,
    TimerContext,
    TimerId,
)

import debug_escapes

# Unicode's White_Space set, as Rust's `split_whitespace`. Python's str.split() would also
# split on U+001C..U+001F, which are not whitespace to Unicode.
_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)

# What Rust's `str::parse` accepts: an optional sign (`+` only for unsigned) and ASCII digits.
_SIGNED = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"\+?[0-9]+")

# `--config tag=T`: the value of the `tag` header on every emit.
_tag = None

# What Rust's `{:?}` escapes in a string: six characters by name, others as \u{HEX}.
_NAMED = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}
_ESCAPE = re.compile(
    "["
    + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in debug_escapes.RANGES)
    + "\\0\\t\\r\\n\"\\\\]"
)


def _escape(m):
    c = m.group()
    return _NAMED.get(c) or f"\\u{{{ord(c):x}}}"


def _debug(s):
    """`s` quoted like Rust's `{:?}` of a string."""
    return '"' + _ESCAPE.sub(_escape, s) + '"'


def _i64(n):
    """`n` wrapped to a signed 64-bit integer, as Rust's release arithmetic does."""
    n &= 0xFFFF_FFFF_FFFF_FFFF
    return n - (1 << 64) if n >= 1 << 63 else n


def _parse_i64(s):
    """`s` as an i64 the way Rust parses one, or None."""
    if not _SIGNED.fullmatch(s):
        return None
    n = int(s)
    return n if -(1 << 63) <= n < 1 << 63 else None


def _parse_u64(s):
    """`s` as a u64 the way Rust parses one, or None."""
    if not _UNSIGNED.fullmatch(s):
        return None
    n = int(s)
    return n if n < 1 << 64 else None


def _parse_u32(s):
    """`s` as a u32 the way Rust parses one, or None."""
    n = _parse_u64(s)
    return n if n is not None and n < 1 << 32 else None


def _output(key, value, headers):
    """A record to emit, with the `tag` header if the config set one."""
    if _tag is not None:
        headers.append(Header("tag", _tag.encode()))
    return OutputRecord(None, key.encode(), value.encode(), headers)


def _header(word):
    """`NAME=VALUE` as a header (split at the first `=`), a bare `NAME` as a null one."""
    name, eq, value = word.partition("=")
    return Header(name, value.encode() if eq else None)


def _domain(word):
    if word == "event":
        return TimeDomain.EVENT_TIME
    if word == "processing":
        return TimeDomain.PROCESSING_TIME
    raise Err(PluginError_Fatal(f"unknown domain {_debug(word)}"))


def _expiry(kind, value):
    if kind == "after-ms":
        ms = _parse_u64(value)
        if ms is not None:
            return Expiry_AfterMs(ms)
    elif kind == "at-watermark":
        t = _parse_i64(value)
        if t is not None:
            return Expiry_AtWatermark(t)
    raise Err(PluginError_Fatal(f"bad expiry {kind} {value}"))


class Lifecycle(exports.Lifecycle):
    def init(self, config):
        global _tag
        for key, value in config:
            if key == "tag":
                _tag = value
            else:
                raise Err(f"unknown config key {_debug(key)}; timekeeper knows tag")


class Handler(exports.Handler):
    def process(self, batch: Batch) -> None:
        data = batch.data
        ops = []
        for record in batch.records:
            v = record.value
            if v is None:
                continue
            line = data[v.start : v.start + v.len].decode("utf-8", "replace")
            words = [w for w in _WHITESPACE.split(line) if w]
            n = len(words)
            cmd = words[0] if words else None
            if cmd == "timer" and n == 4:
                key, d, when = words[1:]
                if when.startswith("+"):
                    ms = _parse_i64(when[1:])
                    at = None if ms is None else _i64(batch.processing_time + ms)
                else:
                    at = _parse_i64(when)
                if at is None:
                    raise Err(PluginError_Fatal(f"bad command {_debug(line)}"))
                # Ops so far first: a timer due at once fires after them.
                state.apply(ops)
                ops = []
                timers.set([Timer(key, _domain(d), at)])
            elif cmd == "cancel" and n == 3:
                timers.cancel([TimerId(words[1], _domain(words[2]))])
            elif cmd == "set" and n == 3:
                ops.append(StateOp_Set(KeyValue(words[1], words[2].encode())))
            elif cmd == "delete" and n == 2:
                ops.append(StateOp_Delete(words[1]))
            elif cmd == "setx" and n == 5:
                expiry = _expiry(words[3], words[4])
                ops.append(StateOp_SetExpiring(ExpiringValue(words[1], words[2].encode(), expiry)))
            elif cmd == "expire" and n == 4:
                ops.append(StateOp_Expire(KeyExpiry(words[1], _expiry(words[2], words[3]))))
            elif cmd == "persist" and n == 2:
                ops.append(StateOp_Persist(words[1]))
            elif cmd == "rearm" and n == 3:
                ops.append(StateOp_Set(KeyValue(f"rearm:{words[1]}", words[2].encode())))
            elif cmd == "get" and n == 2:
                state.apply(ops)
                ops = []
                got = state.get(words[1])
                got = "none" if got is None else got.decode("utf-8", "replace")
                emit.send([_output(words[1], f"got {got}", [])])
            elif cmd == "incr" and n == 3:
                delta = _parse_i64(words[2])
                if delta is None:
                    raise Err(PluginError_Fatal(f"bad command {_debug(line)}"))
                state.apply(ops)
                ops = []
                try:
                    total = state.incr(words[1], delta)
                except Err as e:
                    raise Err(PluginError_Fatal(e.value))
                emit.send([_output(words[1], f"incr {total}", [])])
            elif cmd == "emit" and n >= 3:
                emit.send([_output(words[1], words[2], [_header(h) for h in words[3:]])])
            elif cmd == "fail" and n >= 2 and words[1] == "retryable":
                raise Err(PluginError_Retryable(" ".join(words[2:])))
            elif cmd == "fail" and n >= 2 and words[1] == "fatal":
                raise Err(PluginError_Fatal(" ".join(words[2:])))
            elif cmd == "fail" and n >= 3 and words[1] == "poison":
                index = _parse_u32(words[2])
                if index is None:
                    raise Err(PluginError_Fatal(f"bad command {_debug(line)}"))
                raise Err(PluginError_Poison(PoisonRecord(index, " ".join(words[3:]))))
            else:
                raise Err(PluginError_Fatal(f"bad command {_debug(line)}"))
        state.apply(ops)


class TimerHandler(exports.TimerHandler):
    def on_timers(self, context: TimerContext, fired: list[Timer]) -> None:
        wm = "none" if context.watermark is None else str(context.watermark)
        rearm_keys = [f"rearm:{t.key}" for t in fired]
        rearms = state.get_many(rearm_keys)
        out = []
        ops = []
        again = []
        for t, rearm_key, rearm in zip(fired, rearm_keys, rearms):
            d = "event" if t.domain == TimeDomain.EVENT_TIME else "processing"
            out.append(_output(t.key, f"fired {d} {t.at} wm={wm}", []))
            ops.append(StateOp_Incr(KeyDelta(f"fired:{t.key}", 1)))
            # Digits are ASCII: bytes that are not UTF-8 never parse, as in Rust.
            ms = None if rearm is None else _parse_i64(rearm.decode("latin-1"))
            if ms is not None:
                ops.append(StateOp_Delete(rearm_key))
                again.append(Timer(t.key, t.domain, _i64(t.at + ms)))
        emit.send(out)
        state.apply(ops)
        timers.set(again)
