//! Word count in Zig: the same behaviour as plugins/wordcount (Rust).
//!
//! Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on Unicode
//! whitespace, lowercased, and 1 is added per word to the job state (key = word,
//! value = count). With config `emit=true` it also emits one record per word
//! (key = word, value = "1"), in order.
//!
//! The words of a whole batch are added up in a hash map and handed to the host in one
//! `state.apply` call: each call into the host costs far more than a map update.
//!
//! The bindings are the C ones from `wit-bindgen c` (there is no Zig generator), turned
//! into Zig by `zig translate-c` (build.sh writes src/bindings.zig). The guest owns the
//! batch `process` receives and frees it at the end.

const std = @import("std");
const c = @import("bindings.zig");
const tables = @import("unicode_tables.zig");

const gpa = std.heap.c_allocator; // the bindings' cabi_realloc uses libc's realloc too

var emit_words = false;

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, lowercasing.

const replacement: u21 = 0xFFFD;

/// Decodes one code point at s[i.*] and advances i. An invalid sequence yields U+FFFD and
/// consumes its maximal valid prefix (at least one byte), as Rust, Python and the WHATWG
/// decoder do, so the five plugins see the same characters.
fn decode(s: []const u8, i: *usize) u21 {
    const b = s[i.*];
    if (b < 0x80) {
        i.* += 1;
        return b;
    }
    var lo: u8 = 0x80;
    var hi: u8 = 0xBF;
    var need: usize = undefined;
    var cp: u21 = undefined;
    switch (b) {
        0xC2...0xDF => {
            need = 1;
            cp = b & 0x1F;
        },
        0xE0...0xEF => {
            need = 2;
            cp = b & 0x0F;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        },
        0xF0...0xF4 => {
            need = 3;
            cp = b & 0x07;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        },
        else => {
            i.* += 1;
            return replacement;
        },
    }
    var j = i.* + 1;
    var k: usize = 0;
    while (k < need) : ({
        k += 1;
        j += 1;
    }) {
        const min: u8 = if (k == 0) lo else 0x80;
        const max: u8 = if (k == 0) hi else 0xBF;
        if (j >= s.len or s[j] < min or s[j] > max) {
            i.* = j;
            return replacement;
        }
        cp = (cp << 6) | @as(u21, s[j] & 0x3F);
    }
    i.* = j;
    return cp;
}

/// Unicode's White_Space property.
fn isSpace(ch: u21) bool {
    return switch (ch) {
        0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000 => true,
        else => false,
    };
}

fn lowerOne(ch: u21) u21 {
    if (ch < 0x80) return if (ch >= 'A' and ch <= 'Z') ch + 32 else ch;
    var lo: usize = 0;
    var hi: usize = tables.lower_from.len;
    while (lo < hi) {
        const mid = (lo + hi) / 2;
        if (tables.lower_from[mid] == ch) return tables.lower_to[mid];
        if (tables.lower_from[mid] < ch) lo = mid + 1 else hi = mid;
    }
    return ch;
}

fn isCased(ch: u21) bool {
    var lo: usize = 0;
    var hi: usize = tables.cased.len;
    while (lo < hi) {
        const mid = (lo + hi) / 2;
        if (ch < tables.cased[mid][0]) {
            hi = mid;
        } else if (ch > tables.cased[mid][1]) {
            lo = mid + 1;
        } else return true;
    }
    return false;
}

/// Approximates Unicode's Case_Ignorable: apostrophes, periods, colons, combining accents.
fn isCaseIgnorable(ch: u21) bool {
    return switch (ch) {
        '\'', '.', ':', 0xB7, 0xAD, 0x2018, 0x2019, 0x2024, 0x2027, 0x300...0x36F => true,
        else => false,
    };
}

/// Unicode's final-sigma rule: Σ lowercases to ς when a cased letter comes before it and
/// none after it (skipping case-ignorable characters), else to σ.
fn isFinalSigma(word: []const u21, at: usize) bool {
    var before = false;
    var j = at;
    while (j > 0) {
        j -= 1;
        if (isCaseIgnorable(word[j])) continue;
        before = isCased(word[j]);
        break;
    }
    if (!before) return false;
    for (word[at + 1 ..]) |ch| {
        if (isCaseIgnorable(ch)) continue;
        return !isCased(ch);
    }
    return true;
}

fn appendUtf8(out: *std.ArrayList(u8), ch: u21) !void {
    var buf: [4]u8 = undefined;
    const n = std.unicode.utf8Encode(ch, &buf) catch unreachable; // never a surrogate
    try out.appendSlice(gpa, buf[0..n]);
}

fn lowerWord(word: []const u21, out: *std.ArrayList(u8)) !void {
    out.clearRetainingCapacity();
    for (word, 0..) |ch, k| {
        switch (ch) {
            0x130 => { // İ lowercases to i + combining dot above
                try out.append(gpa, 'i');
                try appendUtf8(out, 0x307);
            },
            0x3A3 => try appendUtf8(out, if (isFinalSigma(word, k)) 0x3C2 else 0x3C3),
            else => try appendUtf8(out, lowerOne(ch)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The exports.

fn str(s: c.plugin_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn setError(err: *c.plugin_string_t, comptime fmt: []const u8, args: anytype) void {
    const msg = std.fmt.allocPrint(gpa, fmt, args) catch @panic("out of memory");
    err.* = .{ .ptr = msg.ptr, .len = msg.len };
}

export fn exports_streamhost_plugin_lifecycle_init(config: *c.plugin_list_tuple2_string_string_t, err: *c.plugin_string_t) bool {
    defer c.plugin_list_tuple2_string_string_free(config);
    const pairs = if (config.len == 0) &[_]c.plugin_tuple2_string_string_t{} else config.ptr[0..config.len];
    for (pairs) |pair| {
        const key = str(pair.f0);
        const value = str(pair.f1);
        var flag: bool = undefined;
        if (eql(value, "true") or eql(value, "1") or eql(value, "yes")) {
            flag = true;
        } else if (eql(value, "false") or eql(value, "0") or eql(value, "no")) {
            flag = false;
        } else {
            setError(err, "config {s}={s}: expected true or false", .{ key, value });
            return false;
        }
        if (eql(key, "emit")) {
            emit_words = flag;
        } else {
            setError(err, "unknown config key \"{s}\"; wordcount knows emit", .{key});
            return false;
        }
    }
    return true;
}

fn eql(a: []const u8, b: []const u8) bool {
    return std.mem.eql(u8, a, b);
}

export fn exports_streamhost_plugin_handler_process(batch: *c.exports_streamhost_plugin_handler_batch_t, err: *c.exports_streamhost_plugin_handler_plugin_error_t) bool {
    defer c.exports_streamhost_plugin_handler_batch_free(batch);
    countBatch(batch) catch {
        err.tag = c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_RETRYABLE;
        const msg = "wordcount: out of memory";
        const copy = gpa.dupe(u8, msg) catch @panic("out of memory");
        err.val.retryable = .{ .ptr = copy.ptr, .len = copy.len };
        return false;
    };
    return true;
}

fn countBatch(batch: *c.exports_streamhost_plugin_handler_batch_t) !void {
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    const arena = arena_state.allocator(); // the batch's words, all freed at once

    var counts: std.StringArrayHashMapUnmanaged(i64) = .empty;
    defer counts.deinit(gpa);
    var out: std.ArrayList(c.streamhost_plugin_emit_output_record_t) = .empty;
    defer out.deinit(gpa);
    var chars: std.ArrayList(u21) = .empty;
    defer chars.deinit(gpa);
    var word: std.ArrayList(u8) = .empty;
    defer word.deinit(gpa);
    const one = "1";

    const data = if (batch.data.len == 0) &[_]u8{} else batch.data.ptr[0..batch.data.len];
    const records = if (batch.records.len == 0) &[_]c.streamhost_plugin_types_kafka_record_t{} else batch.records.ptr[0..batch.records.len];
    for (records) |rec| {
        if (!rec.value.is_some) continue;
        const text = data[rec.value.val.start..][0..rec.value.val.len];
        chars.clearRetainingCapacity();
        var i: usize = 0;
        while (i < text.len) try chars.append(gpa, decode(text, &i));
        const cps = chars.items;
        var k: usize = 0;
        while (k < cps.len) {
            while (k < cps.len and isSpace(cps[k])) k += 1;
            const start = k;
            while (k < cps.len and !isSpace(cps[k])) k += 1;
            if (k == start) continue;
            try lowerWord(cps[start..k], &word);
            const entry = try counts.getOrPut(gpa, word.items);
            if (!entry.found_existing) {
                entry.key_ptr.* = try arena.dupe(u8, word.items);
                entry.value_ptr.* = 0;
            }
            entry.value_ptr.* += 1;
            if (emit_words) {
                const key = entry.key_ptr.*;
                var emitted = std.mem.zeroes(c.streamhost_plugin_emit_output_record_t);
                emitted.key = .{ .is_some = true, .val = .{ .ptr = @constCast(key.ptr), .len = key.len } };
                emitted.value = .{ .is_some = true, .val = .{ .ptr = @constCast(one.ptr), .len = one.len } };
                try out.append(gpa, emitted);
            }
        }
    }

    const ops = try arena.alloc(c.streamhost_plugin_state_state_op_t, counts.count());
    for (counts.keys(), counts.values(), ops) |key, n, *op| {
        op.* = std.mem.zeroes(c.streamhost_plugin_state_state_op_t);
        op.tag = c.STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR;
        op.val.incr = .{ .key = .{ .ptr = @constCast(key.ptr), .len = key.len }, .delta = n };
    }
    // (Zig's empty slices carry an address outside linear memory: the host would refuse it.)
    if (ops.len > 0) {
        var list = c.streamhost_plugin_state_list_state_op_t{ .ptr = ops.ptr, .len = ops.len };
        c.streamhost_plugin_state_apply(&list);
    }
    if (out.items.len > 0) {
        var records_out = c.streamhost_plugin_emit_list_output_record_t{ .ptr = out.items.ptr, .len = out.items.len };
        c.streamhost_plugin_emit_send(&records_out);
    }
}
