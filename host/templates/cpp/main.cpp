// {{name}}: a streamhost plugin. The host calls `Process` once per batch of records of
// one Kafka partition; state writes and emits are kept only if `Process` returns success.
//
// The types and the export declarations come from gen/plugin_cpp.h, which build.sh
// generates from the contract (wit/) with `wit-bindgen cpp`. Memory: `Process` gets its
// batch by value and its wit::vector / wit::string members free themselves (RAII); what we
// pass to the host stays ours (the host copies it during the call).
//
// emit.send and state.apply go through bulk_imports.h: the generated emit::Send and
// state::Apply hand the host garbage in wit-bindgen 0.61 (see that file).

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bulk_imports.h"
#include "plugin_cpp.h"

// Inside `exports::streamhost::...` functions a bare `streamhost::` means
// `exports::streamhost`: name the imports with a leading `::`.
namespace host = ::streamhost::plugin;
namespace types = ::streamhost::plugin::types;

namespace {
bool echo = false;
}

// Runs once per instance with the job's `--config key=value` pairs.
std::expected<void, wit::string> exports::streamhost::plugin::lifecycle::Init(
    wit::vector<std::tuple<wit::string, wit::string>> config) {
    for (const auto& [key, value] : config.get_const_view()) {
        if (key.get_view() == "echo") {
            echo = value.get_view() == "true";
        } else {
            // The glue frees the error string once the host has read it.
            return std::unexpected(wit::string::from_view("unknown config key; known: echo"));
        }
    }
    return {};
}

std::expected<void, types::PluginError> exports::streamhost::plugin::handler::Process(
    types::Batch batch) {
    const std::span<const uint8_t> data = batch.data.get_const_view();
    int64_t records = 0, bytes = 0;
    std::vector<bulk::OutputRecord> out;
    for (const types::KafkaRecord& r : batch.records.get_const_view()) {
        // Keys and values are ranges (spans) of one buffer, batch.data.
        if (!r.value) continue;  // a null value
        records++;
        bytes += r.value->len;
        if (echo) out.push_back(bulk::record({}, bulk::some(data.subspan(r.value->start, r.value->len))));
    }
    // One host call for all of the batch's state writes, one for all its emits.
    const bulk::StateOp ops[] = {bulk::incr("records", records), bulk::incr("bytes", bytes)};
    bulk::apply(ops);
    if (!out.empty()) bulk::send(out);

    host::log::Log(types::Level::kDebug, "partition " + std::to_string(batch.partition) + ": " +
                                             std::to_string(records) + " records");
    return {};
    // To fail the batch instead (none of its effects are kept):
    // return std::unexpected(types::PluginError{types::PluginError::Retryable{
    //     wit::string::from_view("database busy")}});
}
