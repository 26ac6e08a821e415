// The two bulk host calls of the word count, `emit.send` and `state.apply`, lowered to the
// canonical ABI by hand (wasm32 layout), for the cases the word count uses.
//
// Why not the generated `streamhost::plugin::emit::Send` / `state::Apply`: wit-bindgen cpp
// 0.61 lowers a list of records or variants *in place*. It writes the ABI form over the
// caller's C++ objects while it still reads them, then the caller destroys the overwritten
// objects (bytecodealliance/wit-bindgen#1592). Seen here: two `incr` ops passed through
// `state::Apply` reached the host as one key of five NUL bytes with a pointer for its delta.
// (`emit::Send` does not even compile; build.sh patches that so the rest of plugin.cpp
// builds, and this file is what the plugin calls instead.)
//
// The layouts follow the canonical ABI (and the offsets the generated code itself writes);
// the static_asserts keep them honest. They change only with the WIT contract's version.
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

// An `option<string>` or `option<list<u8>>`: discriminant, then the payload at 4.
struct OptionBytes {
    uint8_t is_some = 0;
    Bytes val;
};
static_assert(sizeof(OptionBytes) == 12 && offsetof(OptionBytes, val) == 4);

inline OptionBytes some(std::string_view s) { return {1, {s.data(), s.size()}}; }

// `record output-record { topic, key, value, headers }`; headers stay empty (the host adds
// its own).
struct OutputRecord {
    OptionBytes topic;  // none: the job's output topic
    OptionBytes key;
    OptionBytes value;
    Bytes headers;  // list<header>
};
static_assert(sizeof(OutputRecord) == 44 && offsetof(OutputRecord, key) == 12 &&
              offsetof(OutputRecord, value) == 24 && offsetof(OutputRecord, headers) == 36);

// A record for the job's output topic, without headers. It points at `key` and `value`.
inline OutputRecord record(std::string_view key, std::string_view value) {
    OutputRecord r;
    r.key = some(key);
    r.value = some(value);
    return r;
}

// `variant state-op`, case `incr(key-delta)`: the discriminant, the payload at 8 (the
// variant's alignment is 8, for the s64 and u64 inside it), 40 bytes in all: the size of the
// largest case, `set-expiring`.
struct IncrOp {
    uint8_t tag = 2;  // `incr` is the third case of `state-op`
    alignas(8) Bytes key;
    int64_t delta = 0;
    uint8_t unused[16] = {};
};
static_assert(sizeof(IncrOp) == 40 && alignof(IncrOp) == 8 && offsetof(IncrOp, key) == 8 &&
              offsetof(IncrOp, delta) == 16);

// Adds `delta` to the integer value of `key`. It points at `key`.
inline IncrOp incr(std::string_view key, int64_t delta) {
    IncrOp op;
    op.key = {key.data(), key.size()};
    op.delta = delta;
    return op;
}

// The raw imports, under the names the generated plugin.cpp gives them, so the module
// keeps one import of each.
extern "C" {
__attribute__((import_module("streamhost:plugin/emit@0.2.0"), import_name("send"))) void
__wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(const OutputRecord* records, size_t len);
__attribute__((import_module("streamhost:plugin/state@0.2.0"), import_name("apply"))) void
__wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(const IncrOp* ops, size_t len);
}

// The host copies what it needs during the call: the records and ops stay ours.
inline void send(std::span<const OutputRecord> records) {
    __wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(records.data(), records.size());
}

inline void apply(std::span<const IncrOp> ops) {
    __wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(ops.data(), ops.size());
}

}  // namespace bulk
