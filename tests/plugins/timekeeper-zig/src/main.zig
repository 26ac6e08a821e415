//! Drives timers and expiries from its input: the same behaviour as tests/plugins/timekeeper
//! (Rust), host call for host call. Each record value is one command:
//!
//! * `timer KEY event|processing AT` sets a timer (`AT` absolute, or `+MS` after the
//!   batch's processing time); `cancel KEY event|processing` cancels it;
//! * `set KEY VALUE`, `delete KEY`, `setx KEY VALUE EXPIRY`, `expire KEY EXPIRY`,
//!   `persist KEY`, where EXPIRY is `after-ms MS` or `at-watermark T`;
//! * `rearm KEY MS`: when the timer KEY fires, it sets it again MS later (once);
//! * `get KEY` emits `got VALUE` (or `got none`), `incr KEY N` emits `incr TOTAL` (key =
//!   KEY; a failed `state.incr` is a fatal error with the host's message);
//! * `emit KEY VALUE [NAME=VALUE | NAME]...` emits a record with those headers (a bare
//!   NAME is a null header value);
//! * `fail retryable|fatal MESSAGE...` and `fail poison INDEX MESSAGE...` fail the batch
//!   with that error.
//!
//! Config: `tag=T` adds the header `tag: T` to every emit; any other key fails `init`.
//!
//! State writes are buffered into one `state.apply` at the end of the batch, except that
//! `timer`, `get` and `incr` first flush the writes before them (a timer due at once fires
//! after them; a read sees them). When timers fire, it emits one record per timer (key =
//! timer key, value = `fired DOMAIN AT wm=WATERMARK`) and adds 1 to the state key
//! `fired:KEY`.
//!
//! Arithmetic wraps at 64 bits like the Rust plugin's (a release build), numbers parse the
//! way Rust's `str::parse` does (not Zig's `parseInt`, which takes `_`), and error messages
//! quote like Rust's `{:?}` (table in src/debug_escapes.zig, made by
//! tests/plugins/gen-debug-escapes).
//!
//! The bindings are the C ones from `wit-bindgen c` (world timer-plugin), turned into Zig
//! by `zig translate-c` (build.sh writes src/bindings.zig). The exports own their arguments
//! and free them; what a call makes lives in an arena freed when it returns (the config's
//! `tag` lives as long as the instance). Lists handed
//! to the host never carry a Zig empty slice's pointer (it lies outside linear memory):
//! an empty list is passed as null.

const std = @import("std");
const c = @import("bindings.zig");
const escapes = @import("debug_escapes.zig");

const gpa = std.heap.c_allocator; // the bindings free error messages with libc's free

const Str = c.timer_plugin_string_t;
const PluginError = c.streamhost_plugin_types_plugin_error_t;
const Op = c.streamhost_plugin_state_state_op_t;
const Timer = c.streamhost_plugin_timers_timer_t;
const Domain = c.streamhost_plugin_types_time_domain_t;
const Expiry = c.streamhost_plugin_types_expiry_t;
const Header = c.streamhost_plugin_types_header_t;
const OutputRecord = c.streamhost_plugin_emit_output_record_t;

/// A C pointer for a slice handed to the host: null when it is empty.
fn cptr(comptime T: type, s: []const T) [*c]T {
    return if (s.len == 0) null else @constCast(s.ptr);
}

fn toStr(s: []const u8) Str {
    return .{ .ptr = cptr(u8, s), .len = s.len };
}

fn toBytes(s: []const u8) c.timer_plugin_list_u8_t {
    return .{ .ptr = cptr(u8, s), .len = s.len };
}

fn slice(comptime T: type, ptr: [*c]T, len: usize) []T {
    return if (len == 0) &[_]T{} else ptr[0..len];
}

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, `{:?}` quoting, integers.

const replacement: u21 = 0xFFFD;

/// Decodes one code point at s[i.*] and advances i. An invalid sequence yields U+FFFD and
/// consumes its maximal valid prefix (at least one byte), as Rust's from_utf8_lossy does.
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

/// `bytes` as UTF-8 with invalid sequences replaced by U+FFFD (Rust's from_utf8_lossy).
fn lossy(a: std.mem.Allocator, bytes: []const u8) ![]const u8 {
    var out: std.ArrayList(u8) = .empty;
    try out.ensureTotalCapacity(a, bytes.len);
    var i: usize = 0;
    while (i < bytes.len) {
        var buf: [4]u8 = undefined;
        const n = std.unicode.utf8Encode(decode(bytes, &i), &buf) catch unreachable; // never a surrogate
        try out.appendSlice(a, buf[0..n]);
    }
    return out.items;
}

/// Unicode's White_Space property, as Rust's `split_whitespace`.
fn isSpace(ch: u21) bool {
    return switch (ch) {
        0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000 => true,
        else => false,
    };
}

fn debugEscaped(ch: u21) bool {
    var lo: usize = 0;
    var hi: usize = escapes.ranges.len;
    while (lo < hi) {
        const mid = (lo + hi) / 2;
        if (ch < escapes.ranges[mid][0]) {
            hi = mid;
        } else if (ch > escapes.ranges[mid][1]) {
            lo = mid + 1;
        } else return true;
    }
    return false;
}

/// Appends `s` (valid UTF-8) quoted like Rust's `{:?}` of a string.
fn appendDebug(out: *std.ArrayList(u8), a: std.mem.Allocator, s: []const u8) !void {
    try out.append(a, '"');
    var i: usize = 0;
    while (i < s.len) {
        const at = i;
        const ch = decode(s, &i);
        switch (ch) {
            0 => try out.appendSlice(a, "\\0"),
            '\t' => try out.appendSlice(a, "\\t"),
            '\r' => try out.appendSlice(a, "\\r"),
            '\n' => try out.appendSlice(a, "\\n"),
            '"' => try out.appendSlice(a, "\\\""),
            '\\' => try out.appendSlice(a, "\\\\"),
            else => if (debugEscaped(ch)) {
                try out.print(a, "\\u{{{x}}}", .{ch});
            } else {
                try out.appendSlice(a, s[at..i]);
            },
        }
    }
    try out.append(a, '"');
}

/// Rust's `str::parse::<u64>`: an optional `+`, then ASCII digits; null on overflow.
fn parseU64(s: []const u8) ?u64 {
    const digits = if (s.len > 0 and s[0] == '+') s[1..] else s;
    if (digits.len == 0) return null;
    var n: u64 = 0;
    for (digits) |d| {
        if (d < '0' or d > '9') return null;
        n = std.math.mul(u64, n, 10) catch return null;
        n = std.math.add(u64, n, d - '0') catch return null;
    }
    return n;
}

/// Rust's `str::parse::<u32>`.
fn parseU32(s: []const u8) ?u32 {
    return std.math.cast(u32, parseU64(s) orelse return null);
}

/// Rust's `str::parse::<i64>`: an optional sign, then ASCII digits; null out of range.
fn parseI64(s: []const u8) ?i64 {
    if (s.len > 0 and s[0] == '-') {
        if (s.len > 1 and s[1] == '+') return null;
        const m = parseU64(s[1..]) orelse return null;
        if (m > @as(u64, std.math.maxInt(i64)) + 1) return null;
        return @bitCast(0 -% m);
    }
    const m = parseU64(s) orelse return null;
    if (m > std.math.maxInt(i64)) return null;
    return @intCast(m);
}

// ---------------------------------------------------------------------------------------
// Errors, with a malloc'd message the bindings free.

/// `error.Failed`: the call fails with the error in its `err`.
const Failed = error{Failed} || std.mem.Allocator.Error;

fn fail(err: *PluginError, comptime prefix: []const u8, quoted: ?[]const u8, plain: []const u8) Failed {
    var msg: std.ArrayList(u8) = .empty;
    try msg.appendSlice(gpa, prefix);
    if (quoted) |q| try appendDebug(&msg, gpa, q);
    try msg.appendSlice(gpa, plain);
    return failWith(err, c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL, toStr(try msg.toOwnedSlice(gpa)));
}

/// Fails with a retryable or fatal error whose message (malloc'd, or empty) is `message`.
fn failWith(err: *PluginError, tag: c_int, message: Str) Failed {
    err.tag = @intCast(tag);
    if (tag == c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_RETRYABLE) {
        err.val.retryable = message;
    } else {
        err.val.fatal = message;
    }
    return error.Failed;
}

/// `words` joined by single spaces, malloc'd (empty: no allocation).
fn join(words: []const []const u8) !Str {
    return toStr(try std.mem.join(gpa, " ", words));
}

fn domain(word: []const u8, err: *PluginError) Failed!Domain {
    if (eql(word, "event")) return c.STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_EVENT_TIME;
    if (eql(word, "processing")) return c.STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_PROCESSING_TIME;
    return fail(err, "unknown domain ", word, "");
}

fn expiry(a: std.mem.Allocator, kind: []const u8, value: []const u8, err: *PluginError) Failed!Expiry {
    var e = std.mem.zeroes(Expiry);
    if (eql(kind, "after-ms")) {
        if (parseU64(value)) |ms| {
            e.tag = c.STREAMHOST_PLUGIN_TYPES_EXPIRY_AFTER_MS;
            e.val.after_ms = ms;
            return e;
        }
    } else if (eql(kind, "at-watermark")) {
        if (parseI64(value)) |t| {
            e.tag = c.STREAMHOST_PLUGIN_TYPES_EXPIRY_AT_WATERMARK;
            e.val.at_watermark = t;
            return e;
        }
    }
    return fail(err, "bad expiry ", null, try std.fmt.allocPrint(a, "{s} {s}", .{ kind, value }));
}

fn eql(a: []const u8, b: []const u8) bool {
    return std.mem.eql(u8, a, b);
}

// ---------------------------------------------------------------------------------------
// State ops of a call.

const Ops = struct {
    list: std.ArrayList(Op) = .empty,

    fn push(self: *Ops, a: std.mem.Allocator, tag: c_int) !*Op {
        const op = try self.list.addOne(a);
        op.* = std.mem.zeroes(Op);
        op.tag = @intCast(tag);
        return op;
    }

    fn apply(self: *Ops) void {
        var list = c.streamhost_plugin_state_list_state_op_t{ .ptr = cptr(Op, self.list.items), .len = self.list.items.len };
        c.streamhost_plugin_state_apply(&list);
        self.list.clearRetainingCapacity();
    }
};

// ---------------------------------------------------------------------------------------
// Emits.

/// `--config tag=T`: the value of the `tag` header on every emit (allocated with `gpa`).
var config_tag: ?[]u8 = null;

/// A record to emit, with the `tag` header (appended to `headers`) if the config set one.
/// It points into `key`, `value` and `headers`.
fn output(a: std.mem.Allocator, key: []const u8, value: []const u8, headers: *std.ArrayList(Header)) !OutputRecord {
    if (config_tag) |t| try headers.append(a, .{ .name = toStr("tag"), .value = .{ .is_some = true, .val = toBytes(t) } });
    var o = std.mem.zeroes(OutputRecord);
    o.key = .{ .is_some = true, .val = toBytes(key) };
    o.value = .{ .is_some = true, .val = toBytes(value) };
    o.headers = .{ .ptr = cptr(Header, headers.items), .len = headers.items.len };
    return o;
}

/// Emits one record (`emit.send`).
fn sendOne(a: std.mem.Allocator, key: []const u8, value: []const u8, headers: *std.ArrayList(Header)) !void {
    var o = try output(a, key, value, headers);
    var records = c.streamhost_plugin_emit_list_output_record_t{ .ptr = &o, .len = 1 };
    c.streamhost_plugin_emit_send(&records);
}

// ---------------------------------------------------------------------------------------
// The exports.

export fn exports_streamhost_plugin_lifecycle_init(config: *c.timer_plugin_list_tuple2_string_string_t, err: *Str) bool {
    defer c.timer_plugin_list_tuple2_string_string_free(config);
    for (slice(c.timer_plugin_tuple2_string_string_t, config.ptr, config.len)) |kv| {
        const key = slice(u8, kv.f0.ptr, kv.f0.len);
        const value = slice(u8, kv.f1.ptr, kv.f1.len);
        if (eql(key, "tag")) {
            const t = gpa.dupe(u8, value) catch @panic("out of memory");
            if (config_tag) |old| gpa.free(old);
            config_tag = t;
        } else {
            var msg: std.ArrayList(u8) = .empty;
            msg.appendSlice(gpa, "unknown config key ") catch @panic("out of memory");
            appendDebug(&msg, gpa, key) catch @panic("out of memory");
            msg.appendSlice(gpa, "; timekeeper knows tag") catch @panic("out of memory");
            err.* = toStr(msg.toOwnedSlice(gpa) catch @panic("out of memory"));
            return false;
        }
    }
    return true;
}

export fn exports_streamhost_plugin_handler_process(batch: *c.exports_streamhost_plugin_handler_batch_t, err: *PluginError) bool {
    defer c.exports_streamhost_plugin_handler_batch_free(batch);
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    processBatch(arena_state.allocator(), batch, err) catch |e| switch (e) {
        error.Failed => return false,
        error.OutOfMemory => @panic("out of memory"),
    };
    return true;
}

fn processBatch(a: std.mem.Allocator, batch: *c.exports_streamhost_plugin_handler_batch_t, err: *PluginError) Failed!void {
    var ops: Ops = .{};
    const data = slice(u8, batch.data.ptr, batch.data.len);
    for (slice(c.streamhost_plugin_types_kafka_record_t, batch.records.ptr, batch.records.len)) |rec| {
        if (!rec.value.is_some) continue;
        const line = try lossy(a, data[rec.value.val.start..][0..rec.value.val.len]);
        try command(a, batch.processing_time, line, &ops, err);
    }
    ops.apply();
}

/// Runs one command line (valid UTF-8); the ops point into `line`, which lives in `a`.
fn command(a: std.mem.Allocator, processing_time: i64, line: []const u8, ops: *Ops, err: *PluginError) Failed!void {
    // The words, as Rust's `split_whitespace`.
    var words: std.ArrayList([]const u8) = .empty;
    var i: usize = 0;
    while (i < line.len) {
        const at = i;
        if (isSpace(decode(line, &i))) continue;
        var end = i;
        while (i < line.len) {
            var next = i;
            if (isSpace(decode(line, &next))) break;
            i = next;
            end = next;
        }
        try words.append(a, line[at..end]);
    }
    const w = words.items;
    const n = w.len;
    const cmd: []const u8 = if (n > 0) w[0] else "";
    if (n == 4 and eql(cmd, "timer")) {
        const when = w[3];
        const at: i64 = if (when.len > 0 and when[0] == '+')
            processing_time +% (parseI64(when[1..]) orelse return fail(err, "bad command ", line, ""))
        else
            parseI64(when) orelse return fail(err, "bad command ", line, "");
        // Ops so far first: a timer due at once fires after them.
        ops.apply();
        var t = Timer{ .key = toStr(w[1]), .domain = try domain(w[2], err), .at = at };
        var list = c.streamhost_plugin_timers_list_timer_t{ .ptr = &t, .len = 1 };
        c.streamhost_plugin_timers_set(&list);
    } else if (n == 3 and eql(cmd, "cancel")) {
        var id = c.streamhost_plugin_timers_timer_id_t{ .key = toStr(w[1]), .domain = try domain(w[2], err) };
        var list = c.streamhost_plugin_timers_list_timer_id_t{ .ptr = &id, .len = 1 };
        c.streamhost_plugin_timers_cancel(&list);
    } else if (n == 3 and eql(cmd, "set")) {
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_SET)).val.set = .{ .key = toStr(w[1]), .value = toBytes(w[2]) };
    } else if (n == 2 and eql(cmd, "delete")) {
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_DELETE)).val.delete_ = toStr(w[1]);
    } else if (n == 5 and eql(cmd, "setx")) {
        const e = try expiry(a, w[3], w[4], err);
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_SET_EXPIRING)).val.set_expiring = .{ .key = toStr(w[1]), .value = toBytes(w[2]), .expiry = e };
    } else if (n == 4 and eql(cmd, "expire")) {
        const e = try expiry(a, w[2], w[3], err);
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_EXPIRE)).val.expire = .{ .key = toStr(w[1]), .expiry = e };
    } else if (n == 2 and eql(cmd, "persist")) {
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_PERSIST)).val.persist = toStr(w[1]);
    } else if (n == 3 and eql(cmd, "rearm")) {
        const key = try std.fmt.allocPrint(a, "rearm:{s}", .{w[1]});
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_SET)).val.set = .{ .key = toStr(key), .value = toBytes(w[2]) };
    } else if (n == 2 and eql(cmd, "get")) {
        ops.apply();
        var key = toStr(w[1]);
        var got: c.timer_plugin_list_u8_t = undefined;
        const value = if (c.streamhost_plugin_state_get(&key, &got)) blk: {
            defer c.timer_plugin_list_u8_free(&got);
            break :blk try std.fmt.allocPrint(a, "got {s}", .{try lossy(a, slice(u8, got.ptr, got.len))});
        } else "got none";
        var headers: std.ArrayList(Header) = .empty;
        try sendOne(a, w[1], value, &headers);
    } else if (n == 3 and eql(cmd, "incr")) {
        const delta = parseI64(w[2]) orelse return fail(err, "bad command ", line, "");
        ops.apply();
        var key = toStr(w[1]);
        var total: i64 = undefined;
        var message: Str = undefined;
        if (!c.streamhost_plugin_state_incr(&key, delta, &total, &message)) {
            return failWith(err, c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL, message);
        }
        var headers: std.ArrayList(Header) = .empty;
        try sendOne(a, w[1], try std.fmt.allocPrint(a, "incr {d}", .{total}), &headers);
    } else if (n >= 3 and eql(cmd, "emit")) {
        var headers: std.ArrayList(Header) = .empty;
        for (w[3..]) |h| {
            if (std.mem.indexOfScalar(u8, h, '=')) |eq| {
                try headers.append(a, .{ .name = toStr(h[0..eq]), .value = .{ .is_some = true, .val = toBytes(h[eq + 1 ..]) } });
            } else {
                try headers.append(a, .{ .name = toStr(h), .value = std.mem.zeroes(c.timer_plugin_option_list_u8_t) });
            }
        }
        try sendOne(a, w[1], w[2], &headers);
    } else if (n >= 2 and eql(cmd, "fail") and eql(w[1], "retryable")) {
        return failWith(err, c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_RETRYABLE, try join(w[2..]));
    } else if (n >= 2 and eql(cmd, "fail") and eql(w[1], "fatal")) {
        return failWith(err, c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL, try join(w[2..]));
    } else if (n >= 3 and eql(cmd, "fail") and eql(w[1], "poison")) {
        const index = parseU32(w[2]) orelse return fail(err, "bad command ", line, "");
        err.tag = c.STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_POISON;
        err.val.poison = .{ .index = index, .message = try join(w[3..]) };
        return error.Failed;
    } else {
        return fail(err, "bad command ", line, "");
    }
}

export fn exports_streamhost_plugin_timer_handler_on_timers(
    context: *c.exports_streamhost_plugin_timer_handler_timer_context_t,
    fired: *c.exports_streamhost_plugin_timer_handler_list_timer_t,
    err: *PluginError,
) bool {
    _ = err;
    defer c.exports_streamhost_plugin_timer_handler_timer_context_free(context);
    defer c.exports_streamhost_plugin_timer_handler_list_timer_free(fired);
    var arena_state = std.heap.ArenaAllocator.init(gpa);
    defer arena_state.deinit();
    onTimers(arena_state.allocator(), context, slice(Timer, fired.ptr, fired.len)) catch @panic("out of memory");
    return true;
}

fn onTimers(a: std.mem.Allocator, context: *c.exports_streamhost_plugin_timer_handler_timer_context_t, fired: []const Timer) !void {
    const wm = if (context.watermark.is_some) try std.fmt.allocPrint(a, "{d}", .{context.watermark.val}) else "none";
    const rearm_keys = try a.alloc(Str, fired.len);
    for (fired, rearm_keys) |t, *key| {
        key.* = toStr(try std.fmt.allocPrint(a, "rearm:{s}", .{slice(u8, t.key.ptr, t.key.len)}));
    }
    var keys = c.timer_plugin_list_string_t{ .ptr = cptr(Str, rearm_keys), .len = rearm_keys.len };
    var rearms: c.timer_plugin_list_option_list_u8_t = undefined;
    c.streamhost_plugin_state_get_many(&keys, &rearms);
    defer c.timer_plugin_list_option_list_u8_free(&rearms);

    var out: std.ArrayList(c.streamhost_plugin_emit_output_record_t) = .empty;
    var ops: Ops = .{};
    var again: std.ArrayList(Timer) = .empty;
    const got = slice(c.timer_plugin_option_list_u8_t, rearms.ptr, rearms.len);
    for (fired, rearm_keys, 0..) |t, rearm_key, i| {
        if (i >= got.len) break;
        const key = slice(u8, t.key.ptr, t.key.len);
        const d = if (t.domain == c.STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_EVENT_TIME) "event" else "processing";
        const value = try std.fmt.allocPrint(a, "fired {s} {d} wm={s}", .{ d, t.at, wm });
        const headers = try a.create(std.ArrayList(Header));
        headers.* = .empty;
        try out.append(a, try output(a, key, value, headers));
        (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR)).val.incr = .{
            .key = toStr(try std.fmt.allocPrint(a, "fired:{s}", .{key})),
            .delta = 1,
        };
        const rearm = got[i];
        if (!rearm.is_some) continue;
        if (parseI64(slice(u8, rearm.val.ptr, rearm.val.len))) |ms| {
            (try ops.push(a, c.STREAMHOST_PLUGIN_TYPES_STATE_OP_DELETE)).val.delete_ = rearm_key;
            try again.append(a, .{ .key = t.key, .domain = t.domain, .at = t.at +% ms });
        }
    }
    var records = c.streamhost_plugin_emit_list_output_record_t{ .ptr = cptr(c.streamhost_plugin_emit_output_record_t, out.items), .len = out.items.len };
    c.streamhost_plugin_emit_send(&records);
    ops.apply();
    var list = c.streamhost_plugin_timers_list_timer_t{ .ptr = cptr(Timer, again.items), .len = again.items.len };
    c.streamhost_plugin_timers_set(&list);
}
