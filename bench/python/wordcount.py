"""The word-count job written the way a Python team would: confluent-kafka + redis-py.

The baseline of bench/benches/pipeline.rs. It does what `host` does, with the same
guarantees: batches of one partition, word counts added up per batch, and the batch's
increments and offset committed by the same fenced Redis script as the host's
(host/src/store/redis/commit.lua). Exits once `--records` records are committed.
"""

import argparse
import collections
import pathlib
import sys
import time

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

SCRIPT = (pathlib.Path(__file__).resolve().parents[2] / "host/src/store/redis/commit.lua").read_text()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--records", type=int, required=True)
    args = ap.parse_args()

    r = redis.Redis.from_url(args.redis)
    commit = r.register_script(SCRIPT)
    # The host's key layout (docs/operating.md, "Redis keys"), state scope job.
    offsets_key = f"streamhost:{{{args.group}}}:offsets:{args.group}:{args.topic}"
    state_key = f"streamhost:{{{args.group}}}:state"

    stored = {int(k): int(v) for k, v in r.hgetall(offsets_key).items()}
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    consumer.assign([
        TopicPartition(args.topic, p, stored.get(p, OFFSET_BEGINNING)) for p in range(args.partitions)
    ])
    expected = {p: stored.get(p) for p in range(args.partitions)}
    pending = collections.defaultdict(list)
    started = {}
    committed = sum(stored.values())

    def flush(p: int) -> None:
        nonlocal committed
        msgs = pending.pop(p)
        started.pop(p, None)
        counts = collections.Counter()
        for m in msgs:
            value = m.value()
            if value:
                counts.update(w.lower() for w in value.decode("utf-8", "replace").split())
        first, until = msgs[0].offset(), msgs[-1].offset() + 1
        exp = expected[p]
        if exp is not None and first > exp:
            first = exp
        # One batch per script run (the host merges the batches of several partitions),
        # in the format host/src/store/redis/commit.rs describes: the batch's head
        # (partition, expected, until, no clock, no timer changes, no outbox entry), then
        # no sets, no deletes, the increments.
        argv = [1, p, "" if exp is None else exp, until, "", 0, 0, 0, 0, "", 0, 0, len(counts)]
        for word, n in counts.items():
            argv += [word, n]
        reply = commit(keys=[state_key, offsets_key], args=argv)
        if reply[0] != 1:
            sys.exit(f"commit of {args.topic}/{p} [{first}, {until}) refused: {reply}")
        expected[p] = until
        committed += len(msgs)

    while committed < args.records:
        msgs = consumer.consume(num_messages=args.batch, timeout=0.1)
        for m in msgs:
            if m.error():
                continue
            p = m.partition()
            pending[p].append(m)
            started.setdefault(p, time.monotonic())
            if len(pending[p]) >= args.batch:
                flush(p)
        # Like the host's --batch-linger-ms 100: a partial batch goes when it has waited
        # that long, or when there is nothing more to read.
        now = time.monotonic()
        for p in [p for p in pending if pending[p]]:
            if not msgs or now - started[p] >= 0.1:
                flush(p)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
