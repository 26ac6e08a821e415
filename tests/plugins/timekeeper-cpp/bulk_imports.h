// The host calls that take lists, lowered to the canonical ABI by hand (wasm32 layout):
// `emit.send` (records with headers), `state.apply` (all six state ops), `timers.set`,
// `timers.cancel` and `state.get-many`. plugins/wordcount-cpp/bulk_imports.h does the
// same for the two calls a word count needs; this is that header grown to the whole
// contract but `log`.
//
// Why not the generated functions: wit-bindgen cpp 0.61 lowers a list of records or
// variants *in place*, writing the ABI form over the caller's C++ objects while it still
// reads them (bytecodealliance/wit-bindgen#1592; docs/plugins/cpp.md), `emit::Send` does
// not compile as generated, and `state::GetMany` never frees the array the host hands
// back. The single-value calls (`state::Get`, `state::Incr`) work as generated.
//
// The layouts follow the canonical ABI (and the offsets the generated code writes); the
// static_asserts keep them honest. Everything here points at the caller's data: it must
// stay alive until the call returns (the host copies it during the call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulk {

// A `string` or `list<u8>`: pointer and length.
struct Bytes {
    const void* ptr;
    size_t len;
};
static_assert(sizeof(Bytes) == 8);

inline Bytes bytes(std::string_view s) { return {s.data(), s.size()}; }

// An `option<string>` or `option<list<u8>>`: discriminant, then the payload at 4.
struct OptionBytes {
    uint8_t is_some;
    Bytes val;
};
static_assert(sizeof(OptionBytes) == 12 && offsetof(OptionBytes, val) == 4);

inline OptionBytes none() { return {0, {nullptr, 0}}; }
inline OptionBytes some(std::string_view s) { return {1, bytes(s)}; }

// `record header { name: string, value: option<list<u8>> }`.
struct Header {
    Bytes name;
    OptionBytes value;
};
static_assert(sizeof(Header) == 20 && offsetof(Header, value) == 8);

// `record output-record { topic, key, value, headers }`.
struct OutputRecord {
    OptionBytes topic;
    OptionBytes key;
    OptionBytes value;
    Bytes headers;  // list<header>
};
static_assert(sizeof(OutputRecord) == 44 && offsetof(OutputRecord, key) == 12 &&
              offsetof(OutputRecord, value) == 24 && offsetof(OutputRecord, headers) == 36);

// A record for the job's output topic (topic none) with these headers.
inline OutputRecord record(std::string_view key, std::string_view value,
                           std::span<const Header> headers) {
    return {none(), some(key), some(value), {headers.data(), headers.size()}};
}

// `variant expiry { after-ms(u64), at-watermark(s64) }`: discriminant, payload at 8.
struct Expiry {
    uint8_t tag;  // 0 after-ms, 1 at-watermark
    alignas(8) uint64_t value;
};
static_assert(sizeof(Expiry) == 16 && alignof(Expiry) == 8 && offsetof(Expiry, value) == 8);

inline Expiry after_ms(uint64_t ms) { return {0, ms}; }
inline Expiry at_watermark(int64_t t) { return {1, static_cast<uint64_t>(t)}; }

// `variant state-op`: the discriminant, the payload at 8 (the variant's alignment is 8),
// 40 bytes in all (the largest case, `set-expiring`). Every case starts with its key.
struct StateOp {
    struct ValueExpiry {
        Bytes value;
        Expiry expiry;  // at 8 in the payload's tail: 24 in the op
    };
    uint8_t tag;
    alignas(8) Bytes key;
    union {
        Bytes value;               // set (0)
        int64_t delta;             // incr (2)
        ValueExpiry set_expiring;  // set-expiring (3)
        Expiry expiry;             // expire (4)
    } arg;
};
static_assert(sizeof(StateOp) == 40 && alignof(StateOp) == 8 && offsetof(StateOp, key) == 8 &&
              offsetof(StateOp, arg) == 16 && offsetof(StateOp::ValueExpiry, expiry) == 8);

inline StateOp op(uint8_t tag, std::string_view key) {
    StateOp o{};
    o.tag = tag;
    o.key = bytes(key);
    return o;
}

// Replaces the value of `key`.
inline StateOp set(std::string_view key, std::string_view value) {
    StateOp o = op(0, key);
    o.arg.value = bytes(value);
    return o;
}

// Removes `key`.
inline StateOp del(std::string_view key) { return op(1, key); }

// Adds `delta` to the integer value of `key` (absent counts as 0).
inline StateOp incr(std::string_view key, int64_t delta) {
    StateOp o = op(2, key);
    o.arg.delta = delta;
    return o;
}

// Replaces the value of `key` and gives it an expiry.
inline StateOp set_expiring(std::string_view key, std::string_view value, Expiry expiry) {
    StateOp o = op(3, key);
    o.arg.set_expiring = {bytes(value), expiry};
    return o;
}

// Gives `key` an expiry without writing its value.
inline StateOp expire(std::string_view key, Expiry expiry) {
    StateOp o = op(4, key);
    o.arg.expiry = expiry;
    return o;
}

// Removes the expiry of `key`.
inline StateOp persist(std::string_view key) { return op(5, key); }

// `enum time-domain`.
enum class Domain : uint8_t { kEventTime = 0, kProcessingTime = 1 };

// `record timer { key: string, domain: time-domain, at: s64 }`.
struct Timer {
    Bytes key;
    Domain domain;
    alignas(8) int64_t at;
};
static_assert(sizeof(Timer) == 24 && alignof(Timer) == 8 && offsetof(Timer, domain) == 8 &&
              offsetof(Timer, at) == 16);

// `record timer-id { key: string, domain: time-domain }`.
struct TimerId {
    Bytes key;
    Domain domain;
};
static_assert(sizeof(TimerId) == 12 && offsetof(TimerId, domain) == 8);

// What `get-many` writes to its return area: list<option<list<u8>>>, all of it allocated
// in our memory by the host (through cabi_realloc) and ours to free.
struct OptionBytesList {
    OptionBytes* ptr;
    size_t len;
};
static_assert(sizeof(OptionBytesList) == 8);

// The raw imports, under the names the generated timer_plugin.cpp gives them, so the
// module keeps one import of each.
extern "C" {
__attribute__((import_module("streamhost:plugin/emit@0.2.0"), import_name("send"))) void
__wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(const OutputRecord* records, size_t len);
__attribute__((import_module("streamhost:plugin/state@0.2.0"), import_name("apply"))) void
__wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(const StateOp* ops, size_t len);
__attribute__((import_module("streamhost:plugin/state@0.2.0"), import_name("get-many"))) void
__wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00get_many(const Bytes* keys, size_t len,
                                                                 OptionBytesList* ret);
__attribute__((import_module("streamhost:plugin/timers@0.2.0"), import_name("set"))) void
__wasm_import_streamhostX3ApluginX2FtimersX400X2E2X2E0X00set(const Timer* timers, size_t len);
__attribute__((import_module("streamhost:plugin/timers@0.2.0"), import_name("cancel"))) void
__wasm_import_streamhostX3ApluginX2FtimersX400X2E2X2E0X00cancel(const TimerId* timers, size_t len);
}

// Buffers records for output, in order.
inline void send(std::span<const OutputRecord> records) {
    __wasm_import_streamhostX3ApluginX2FemitX400X2E2X2E0X00send(records.data(), records.size());
}

// Applies state writes, in order.
inline void apply(std::span<const StateOp> ops) {
    __wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00apply(ops.data(), ops.size());
}

// Sets (or moves) timers, in order.
inline void set_timers(std::span<const Timer> timers) {
    __wasm_import_streamhostX3ApluginX2FtimersX400X2E2X2E0X00set(timers.data(), timers.size());
}

// Cancels timers.
inline void cancel_timers(std::span<const TimerId> timers) {
    __wasm_import_streamhostX3ApluginX2FtimersX400X2E2X2E0X00cancel(timers.data(), timers.size());
}

// The values of several keys, in the order asked (nullopt: absent). The host's buffers are
// copied and freed here.
inline std::vector<std::optional<std::string>> get_many(std::span<const std::string> keys) {
    std::vector<Bytes> list;
    list.reserve(keys.size());
    for (const std::string& k : keys) list.push_back(bytes(k));
    OptionBytesList ret{nullptr, 0};
    __wasm_import_streamhostX3ApluginX2FstateX400X2E2X2E0X00get_many(list.data(), list.size(), &ret);
    std::vector<std::optional<std::string>> values;
    values.reserve(ret.len);
    for (size_t i = 0; i < ret.len; ++i) {
        const OptionBytes& v = ret.ptr[i];
        if (!v.is_some) {
            values.emplace_back();
            continue;
        }
        values.emplace_back(std::string(static_cast<const char*>(v.val.ptr), v.val.len));
        // An empty list may point at no allocation (cabi_realloc returns its alignment).
        if (v.val.len > 0) free(const_cast<void*>(v.val.ptr));
    }
    if (ret.len > 0) free(ret.ptr);
    return values;
}

}  // namespace bulk
