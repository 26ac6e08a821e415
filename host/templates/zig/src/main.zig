//! {{name}}: a streamhost plugin. The host calls `process` once per batch of records of
//! one Kafka partition; state writes and emits are kept only if `process` returns true.
//!
//! The types and functions come from the C bindings of the contract (`wit-bindgen c`),
//! turned into Zig by `zig translate-c`; build.sh writes them to src/bindings.zig.
//! Memory: `process` owns its batch and frees it; what we pass to the host stays ours.

const std = @import("std");
const c = @import("bindings.zig");

const gpa = std.heap.c_allocator;

var echo = false;

fn str(s: c.plugin_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

/// Runs once per instance with the job's `--config key=value` pairs.
export fn exports_streamhost_plugin_lifecycle_init(config: *c.plugin_list_tuple2_string_string_t, err: *c.plugin_string_t) bool {
    defer c.plugin_list_tuple2_string_string_free(config);
    const pairs = if (config.len == 0) &[_]c.plugin_tuple2_string_string_t{} else config.ptr[0..config.len];
    for (pairs) |pair| {
        if (std.mem.eql(u8, str(pair.f0), "echo")) {
            echo = std.mem.eql(u8, str(pair.f1), "true");
        } else {
            c.plugin_string_dup(err, "unknown config key; known: echo");
            return false;
        }
    }
    return true;
}

export fn exports_streamhost_plugin_handler_process(batch: *c.exports_streamhost_plugin_handler_batch_t, err: *c.exports_streamhost_plugin_handler_plugin_error_t) bool {
    _ = err;
    defer c.exports_streamhost_plugin_handler_batch_free(batch);
    var records: i64 = 0;
    var bytes: i64 = 0;
    var out: std.ArrayList(c.streamhost_plugin_emit_output_record_t) = .empty;
    defer out.deinit(gpa);

    const all = if (batch.records.len == 0) &[_]c.streamhost_plugin_types_kafka_record_t{} else batch.records.ptr[0..batch.records.len];
    for (all) |r| {
        // Keys and values are ranges (spans) of one buffer, batch.data.
        if (!r.value.is_some) continue;
        records += 1;
        bytes += r.value.val.len;
        if (echo) {
            var o = std.mem.zeroes(c.streamhost_plugin_emit_output_record_t);
            o.value = .{ .is_some = true, .val = .{ .ptr = batch.data.ptr + r.value.val.start, .len = r.value.val.len } };
            out.append(gpa, o) catch @panic("out of memory");
        }
    }
    // One host call for all of the batch's state writes.
    var ops = std.mem.zeroes([2]c.streamhost_plugin_state_state_op_t);
    ops[0].tag = c.STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR;
    ops[0].val.incr = .{ .key = text("records"), .delta = records };
    ops[1].tag = c.STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR;
    ops[1].val.incr = .{ .key = text("bytes"), .delta = bytes };
    var list = c.streamhost_plugin_state_list_state_op_t{ .ptr = &ops, .len = ops.len };
    c.streamhost_plugin_state_apply(&list);
    if (out.items.len > 0) {
        var emits = c.streamhost_plugin_emit_list_output_record_t{ .ptr = out.items.ptr, .len = out.items.len };
        c.streamhost_plugin_emit_send(&emits);
    }

    var buf: [128]u8 = undefined;
    const line = std.fmt.bufPrint(&buf, "partition {d}: {d} records", .{ batch.partition, records }) catch "batch done";
    var message = text(line);
    c.streamhost_plugin_log_log(c.STREAMHOST_PLUGIN_TYPES_LEVEL_DEBUG, &message);
    return true;
}

fn text(s: []const u8) c.plugin_string_t {
    return .{ .ptr = @constCast(s.ptr), .len = s.len };
}
