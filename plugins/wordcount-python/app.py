"""Word count in Python: the same behaviour as plugins/wordcount (Rust).

Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on
whitespace, lowercased, and 1 is added per word to the job state (key = word, value =
count). With config `emit=true` it also emits one record per word (key = word,
value = "1"), in order.

What costs in an interpreter is the Python code around CPython's C code, so:
* the batch comes in columns (world `columns-plugin`): no record object per record, and
  its spans are bytes, read through a memoryview;
* values are decoded, lowercased and split 64 KiB at a time, one call into C each
  instead of one per record. Joining the values with a newline changes nothing: a
  newline is whitespace, and an invalid UTF-8 sequence cannot run across it;
* the split is `str.split()`, C's fast path, unless the text holds one of the four
  characters (U+001C..U+001F) that Python counts as whitespace and Unicode does not;
  then a regular expression splits it.
The counts are handed to the host in one `state.incr-packed` call.
"""

import re
from array import array
from collections import Counter

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, state
from wit_world.imports.types import (
    BatchColumns,
    OutputRecord,
)

_emit = False

# Unicode's White_Space set, as the Rust plugin splits on. Python's str.split() would
# also split on U+001C..U+001F, which are not whitespace to Unicode.
_WHITESPACE = re.compile(
    "[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)
_NOT_UNICODE_WHITESPACE = re.compile("[\x1c-\x1f]")
# The length of a null value in `batch-columns`.
_NO_BYTES = 0xFFFFFFFF
# Six u32 per record in `batch-columns.spans`; the value's start and length are the 3rd
# and 4th.
_SPAN_FIELDS = 6


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


# Bytes of values decoded, lowercased and split in one go: big enough that the calls are
# few, small enough that the words of a 4 MiB batch never sit in memory all at once.
_CHUNK = 64 * 1024


def _count(parts, counts, out):
    text = b"\n".join(parts).decode("utf-8", "replace").lower()
    if _NOT_UNICODE_WHITESPACE.search(text) is None:
        words = text.split()
    else:
        words = _WHITESPACE.split(text)
        if words and words[0] == "":
            words = words[1:]
        if words and words[-1] == "":
            words.pop()
    counts.update(words)
    if _emit:
        out.extend(OutputRecord(None, w.encode(), b"1", []) for w in words)


class ColumnsHandler(exports.ColumnsHandler):
    def process_columns(self, batch: BatchColumns) -> None:
        data = batch.data
        counts = Counter()
        out = []
        parts, size = [], 0
        # The bytes as the u32 they hold (little-endian, as WebAssembly is): no copy, and
        # no int object for a field the loop does not read.
        spans = memoryview(batch.spans).cast("I")
        starts = spans[2::_SPAN_FIELDS]
        lens = spans[3::_SPAN_FIELDS]
        for start, n in zip(starts, lens):
            if n == _NO_BYTES:
                continue
            parts.append(data[start : start + n])
            size += n
            if size >= _CHUNK:
                _count(parts, counts, out)
                parts, size = [], 0
        if parts:
            _count(parts, counts, out)
        # One `state.incr-packed` call: the bindings would build and convert an object
        # per op of a `state.apply`; three byte strings cross in one copy each.
        keys = [w.encode() for w in counts]
        state.incr_packed(
            b"".join(keys),
            array("I", map(len, keys)).tobytes(),
            array("q", counts.values()).tobytes(),
        )
        if out:
            emit.send(out)
