"""Word count in Python: the same behaviour as plugins/wordcount (Rust).

Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on
whitespace, lowercased, and 1 is added per word to the job state (key = word, value =
count). With config `emit=true` it also emits one record per word (key = word,
value = "1"), in order.

The words of a whole batch are added up in a dict and handed to the host in one
`state.apply` call: each call into the host costs far more than a dict update.
"""

import re
from collections import Counter

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, state
from wit_world.imports.types import (
    Batch,
    KeyDelta,
    OutputRecord,
    StateOp_Incr,
)

_emit = False

# Unicode's White_Space set, as the Rust plugin splits on. Python's str.split() would
# also split on U+001C..U+001F, which are not whitespace to Unicode.
_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)


def _words(text: str):
    return [w.lower() for w in _WHITESPACE.split(text) if w]


class Lifecycle(exports.Lifecycle):
    def init(self, config):
        global _emit
        for key, value in config:
            if value in ("true", "1", "yes"):
                flag = True
            elif value in ("false", "0", "no"):
                flag = False
            else:
                raise Err(f"config {key}={value}: expected true or false")
            if key == "emit":
                _emit = flag
            else:
                raise Err(f'unknown config key "{key}"; wordcount knows emit')


class Handler(exports.Handler):
    def process(self, batch: Batch) -> None:
        data = batch.data
        counts = Counter()
        out = []
        for record in batch.records:
            span = record.value
            if span is None:
                continue
            text = data[span.start : span.start + span.len].decode("utf-8", "replace")
            words = _words(text)
            counts.update(words)
            if _emit:
                out.extend(
                    OutputRecord(None, w.encode(), b"1", []) for w in words
                )
        state.apply([StateOp_Incr(KeyDelta(w, n)) for w, n in counts.items()])
        if out:
            emit.send(out)
