// The two bulk host calls, `emit.send` and `state.apply`, lowered to the canonical ABI by
// hand (wasm32 layout), for output records without headers and the state ops `set`,
// `delete` and `incr`.
//
// Why not the generated `streamhost::plugin::emit::Send` / `state::Apply`: wit-bindgen cpp
// 0.61 lowers a list of records or variants *in place*. It writes the ABI form over the
// caller's C++ objects while it still reads them, then the caller destroys the overwritten
// objects (bytecodealliance/wit-bindgen#1592). Seen here: two `incr` ops passed through
// `state::Apply` reached the host as one key of five NUL bytes with a pointer for its delta.
// (`emit::Send` does not even compile; build.sh patches that so the rest of plugin.cpp
// builds, and this file is what to call instead.)
//
// The layouts follow the canonical ABI (and the offsets the generated code itself writes);
// the static_asserts keep them honest. They change only with the WIT contract's version.
// Everything here points at your data: it must stay alive until the call returns (the host
// copies it during the call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace bulk {

// A `string` or `list<u8>`: pointer and length.
struct Bytes {
    const void* ptr = nullptr;
    size_t len = 0;
};

inline Bytes bytes(std::string_view s) { return {s.data(), s.size()}; }
inline Bytes bytes(std::span<const uint8_t> b) { return {b.data(), b.size()}; }

// An `option<string>` or `option<list<u8>>`: discriminant, then the payload at 4.
// A default-constructed one is `none`.
struct OptionBytes {
    uint8_t is_some = 0;
    Bytes val;
};
static_assert(sizeof(OptionBytes) == 12 && offsetof(OptionBytes, val) == 4);

inline OptionBytes some(std::string_view s) { return {1, bytes(s)}; }
inline OptionBytes some(std::span<const uint8_t> b) { return {1, bytes(b)}; }

// `record output-record { topic, key, value, headers }`.
struct OutputRecord {
    OptionBytes topic;  // none: the job's output topic
    OptionBytes key;
    OptionBytes value;
    Bytes headers;  // list<header>: left empty here (the host adds its own)
};
static_assert(sizeof(OutputRecord) == 44 && offsetof(OutputRecord, key) == 12 &&
              offsetof(OutputRecord, value) == 24 && offsetof(OutputRecord, headers) == 36);

inline OutputRecord record(OptionBytes key, OptionBytes value, OptionBytes topic = {}) {
    OutputRecord r;
    r.topic = topic;
    r.key = key;
    r.value = value;
    return r;
}

// `variant state-op`: the discriminant, the payload at 8 (the variant's alignment is 8, for
// the s64 and u64 inside it), 40 bytes in all: the size of the largest case, `set-expiring`.
// Cases here: set(key-value) = 0, delete(string) = 1, incr(key-delta) = 2.
struct StateOp {
    uint8_t tag = 0;
    alignas(8) Bytes key;  // the key of each case here
    union {
        Bytes value;    // set
        int64_t delta;  // incr
    } arg{};
    uint8_t unused[16] = {};
};
static_assert(sizeof(StateOp) == 40 && alignof(StateOp) == 8 && offsetof(StateOp, key) == 8 &&
              offsetof(StateOp, arg) == 16);

// Replaces the value of `key`.
inline StateOp set(std::string_view key, Bytes value) {
    StateOp op;
    op.tag = 0;
    op.key = bytes(key);
    op.arg.value = value;
    return op;
}

// Removes `key`.
inline StateOp del(std::string_view key) {
    StateOp op;
    op.tag = 1;
    op.key = bytes(key);
    return op;
}

// Adds `delta` to the integer value of `key` (absent counts as 0).
inline StateOp incr(std::string_view key, int64_t delta) {
    StateOp op;
    op.tag = 2;
    op.key = bytes(key);
    op.arg.delta = delta;
    return op;
}

// The raw imports, under the names the generated plugin.cpp gives them, so the module
// keeps one import of each.
extern "C" {
__attribute__((import_module("streamhost:plugin/emit@0.2.0"), import_name("send"))) void
__wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(const OutputRecord* records, size_t len);
__attribute__((import_module("streamhost:plugin/state@0.2.0"), import_name("apply"))) void
__wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(const StateOp* ops, size_t len);
}

// Buffers records for output, in order: call it once per batch with all of them.
inline void send(std::span<const OutputRecord> records) {
    __wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(records.data(), records.size());
}

// Applies state writes in order: call it once per batch with all of them.
inline void apply(std::span<const StateOp> ops) {
    __wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(ops.data(), ops.size());
}

}  // namespace bulk
