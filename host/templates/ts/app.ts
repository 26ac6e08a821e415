// {{name}}: a streamhost plugin. The host calls `process` once per batch of records of
// one Kafka partition; state writes and emits are kept only if `process` returns.
//
// The types of the contract's imports and exports come from wit/streamhost.wit: build.sh
// generates them into types/ before it compiles this file.

import { apply } from "streamhost:plugin/state@0.2.0";
import { send } from "streamhost:plugin/emit@0.2.0";
import { log } from "streamhost:plugin/log@0.2.0";
import type { OutputRecord } from "streamhost:plugin/types@0.2.0";
import type * as Handler from "streamhost:plugin/handler@0.2.0";
import type * as Lifecycle from "streamhost:plugin/lifecycle@0.2.0";

let echo = false;

export const lifecycle: typeof Lifecycle = {
  // Runs once per instance with the job's `--config key=value` pairs. A thrown string
  // refuses the configuration.
  init(config) {
    for (const [key, value] of config) {
      if (key === "echo") echo = value === "true";
      else throw `unknown config key "${key}"; known: echo`;
    }
  },
};

export const handler: typeof Handler = {
  process(batch) {
    let records = 0;
    let bytes = 0;
    const out: OutputRecord[] = [];
    for (const record of batch.records) {
      // Keys and values are ranges (spans) of one buffer, batch.data.
      const span = record.value;
      if (span === undefined) continue;
      const value = batch.data.subarray(span.start, span.start + span.len);
      records += 1;
      bytes += value.length;
      if (echo) out.push({ value: value.slice(), headers: [] });
    }
    // One host call for all of the batch's state writes. s64 values are bigints.
    apply([
      { tag: "incr", val: { key: "records", delta: BigInt(records) } },
      { tag: "incr", val: { key: "bytes", delta: BigInt(bytes) } },
    ]);
    if (out.length > 0) send(out);
    log("debug", `${batch.topic}/${batch.partition}: ${records} records`);
  },
};
