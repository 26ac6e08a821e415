"""{{name}}: a streamhost plugin. The host calls `process` once per batch of records of
one Kafka partition; state writes and emits are kept only if `process` returns."""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import emit, log, state
from wit_world.imports.types import KeyDelta, Level, OutputRecord, StateOp_Incr

_echo = False


class Lifecycle(exports.Lifecycle):
    def init(self, config):
        """Runs once per instance with the job's `--config key=value` pairs."""
        global _echo
        for key, value in config:
            if key == "echo":
                _echo = value == "true"
            else:
                raise Err(f"unknown config key {key!r}; known: echo")


class Handler(exports.Handler):
    def process(self, batch):
        records = 0
        nbytes = 0
        out = []
        for record in batch.records:
            # Keys and values are ranges (spans) of one buffer, batch.data.
            span = record.value
            if span is None:
                continue
            value = batch.data[span.start : span.start + span.len]
            records += 1
            nbytes += len(value)
            if _echo:
                out.append(OutputRecord(None, None, value, []))
        # One host call for all of the batch's state writes.
        state.apply(
            [StateOp_Incr(KeyDelta("records", records)), StateOp_Incr(KeyDelta("bytes", nbytes))]
        )
        if out:
            emit.send(out)
        log.log(Level.DEBUG, f"{batch.topic}/{batch.partition}: {records} records")
