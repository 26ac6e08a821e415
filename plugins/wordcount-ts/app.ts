// Word count in TypeScript: the same behaviour as plugins/wordcount-js, line for line,
// with the contract's types (generated from wit/streamhost.wit into types/ by build.sh).
//
// Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on
// whitespace, lowercased, and 1 is added per word to the job state (key = word, value =
// count). With config `emit=true` it also emits one record per word (key = word, value =
// "1"), in order.
//
// Where the time goes in an interpreter (no JIT in WebAssembly) decides the shape:
// * the batch comes in columns (world `columns-plugin`): a record object per record, as the
//   bindings build for `handler`, cost as much as all the counting;
// * values are lowercased and split 64 KiB at a time, joined with a space (whitespace, so
//   it changes nothing), in one built-in call each;
// * the split is on one space unless the text holds other whitespace: a one-character
//   split is a fast path of the engine, a regular expression is not;
// * loops are indexed: `for...of` runs the iterator protocol in the interpreter.
// The counts are handed to the host in one `state.incr-packed` call.

import { incrPacked } from "streamhost:plugin/state@0.2.0";
import { send } from "streamhost:plugin/emit@0.2.0";
import type { BatchColumns, OutputRecord } from "streamhost:plugin/types@0.2.0";
import type * as ColumnsHandler from "streamhost:plugin/columns-handler@0.2.0";
import type * as Lifecycle from "streamhost:plugin/lifecycle@0.2.0";

// Unicode's White_Space set, as the Rust plugin splits on. JavaScript's \s would also
// split on U+FEFF, which Unicode does not count as whitespace.
const WHITESPACE =
  /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/;
const OTHER_WHITESPACE =
  /[\t\n\v\f\r\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
// Not fatal: bad bytes become U+FFFD. ignoreBOM keeps a leading U+FEFF, which is text
// (a character of the word), not a byte-order mark, in a Kafka value.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();
const ONE = encoder.encode("1");

let emitWords = false;

// StarlingMonkey's toLowerCase has no final-sigma rule (Rust, Python and browsers have
// it): "ΟΔΟΣ" must become "οδος" with a final ς. Lowercasing code point by code point
// equals whole-string lowercasing except for that one rule, so apply it here.
function lower(word: string): string {
  if (!word.includes("Σ")) return word.toLowerCase();
  const cps = Array.from(word);
  return cps
    .map((c, i) => (c === "Σ" ? (isFinalSigma(cps, i) ? "ς" : "σ") : c.toLowerCase()))
    .join("");
}

// Unicode: Σ is final when a cased letter comes before it and none after it, skipping
// case-ignorable characters. Cased and case-ignorable are approximated (letters with a
// case mapping; apostrophes, periods, colons and combining diacritics).
function isFinalSigma(cps: string[], i: number): boolean {
  return casedAround(cps, i, -1) && !casedAround(cps, i, 1);
}

function casedAround(cps: string[], i: number, step: 1 | -1): boolean {
  for (let j = i + step; j >= 0 && j < cps.length; j += step) {
    if (CASE_IGNORABLE.test(cps[j])) continue;
    return cps[j].toLowerCase() !== cps[j] || cps[j].toUpperCase() !== cps[j];
  }
  return false;
}

const CASE_IGNORABLE = /^[':.\u00b7\u00ad\u2018\u2019\u2024\u2027\u0300-\u036f]$/;

// `init`'s WIT result is result<_, string>: componentize-js turns a thrown string into
// the `err`, which refuses the configuration.
export const lifecycle: typeof Lifecycle = {
  init(config) {
    for (const [key, value] of config) {
      let flag: boolean;
      if (["true", "1", "yes"].includes(value)) flag = true;
      else if (["false", "0", "no"].includes(value)) flag = false;
      else throw `config ${key}=${value}: expected true or false`;
      if (key === "emit") emitWords = flag;
      else throw `unknown config key "${key}"; wordcount knows emit`;
    }
  },
};

// Characters of values lowercased and split in one go: big enough that the calls are few,
// small enough that the words of a 4 MiB batch never sit in memory all at once.
const CHUNK = 64 * 1024;
// The length of a null value in `batch-columns`.
const NO_BYTES = 0xffffffff;
// Six u32 per record in `batch-columns.spans`; the value's start and length are the 3rd and 4th.
const SPAN_FIELDS = 6;

// The bytes of `spans` as the u32 they hold (WebAssembly is little-endian, as they are).
function u32s(bytes: Uint8Array): Uint32Array {
  return bytes.byteOffset % 4 === 0
    ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
    : new Uint32Array(bytes.slice().buffer);
}

function countWords(parts: string[], counts: Map<string, number>, out: OutputRecord[]): void {
  const text = lower(parts.join(" "));
  const words = OTHER_WHITESPACE.test(text) ? text.split(WHITESPACE) : text.split(" ");
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === "") continue;
    counts.set(word, (counts.get(word) ?? 0) + 1);
    if (emitWords) out.push({ key: encoder.encode(word), value: ONE, headers: [] });
  }
}

// Hands the counts to the host in one `state.incr-packed` call: the bindings would spend
// microseconds on each op of a `state.apply`, three byte lists cross in one copy each.
function addCounts(counts: Map<string, number>): void {
  const keys = Array.from(counts.keys());
  const n = keys.length;
  const joined = keys.join("");
  let bytes = encoder.encode(joined);
  const lens = new Uint32Array(n);
  if (bytes.length === joined.length) {
    // All ASCII: a key's bytes are its characters.
    for (let i = 0; i < n; i++) lens[i] = keys[i].length;
  } else {
    const parts = keys.map((k) => encoder.encode(k));
    bytes = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
    let at = 0;
    for (let i = 0; i < n; i++) {
      bytes.set(parts[i], at);
      at += parts[i].length;
      lens[i] = parts[i].length;
    }
  }
  const deltas = BigInt64Array.from(counts.values(), (c) => BigInt(c));
  incrPacked(bytes, new Uint8Array(lens.buffer), new Uint8Array(deltas.buffer));
}

export const columnsHandler: typeof ColumnsHandler = {
  processColumns(batch: BatchColumns) {
    const { data, count } = batch;
    const spans = u32s(batch.spans);
    const counts = new Map<string, number>();
    const out: OutputRecord[] = [];
    let parts: string[] = [];
    let size = 0;
    for (let i = 0; i < count; i++) {
      const start = spans[i * SPAN_FIELDS + 2];
      const len = spans[i * SPAN_FIELDS + 3];
      if (len === NO_BYTES) continue;
      parts.push(decoder.decode(data.subarray(start, start + len)));
      size += len;
      if (size >= CHUNK) {
        countWords(parts, counts, out);
        parts = [];
        size = 0;
      }
    }
    if (parts.length > 0) countWords(parts, counts, out);
    addCounts(counts);
    if (out.length > 0) send(out);
  },
};
