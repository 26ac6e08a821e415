// Drives timers and expiries from its input: the same behaviour as tests/plugins/timekeeper
// (Rust), host call for host call. Each record value is one command:
//
// * `timer KEY event|processing AT` sets a timer (`AT` absolute, or `+MS` after the
//   batch's processing time); `cancel KEY event|processing` cancels it;
// * `set KEY VALUE`, `delete KEY`, `setx KEY VALUE EXPIRY`, `expire KEY EXPIRY`,
//   `persist KEY`, where EXPIRY is `after-ms MS` or `at-watermark T`;
// * `rearm KEY MS`: when the timer KEY fires, it sets it again MS later (once);
// * `get KEY` emits `got VALUE` (or `got none`), `incr KEY N` emits `incr TOTAL` (key =
//   KEY; a failed `state.incr` is a fatal error with the host's message);
// * `emit KEY VALUE [NAME=VALUE | NAME]...` emits a record with those headers (a bare
//   NAME is a null header value);
// * `fail retryable|fatal MESSAGE...` and `fail poison INDEX MESSAGE...` fail the batch
//   with that error.
//
// Config: `tag=T` adds the header `tag: T` to every emit; any other key fails `init`.
//
// State writes are buffered into one `state.apply` at the end of the batch, except that
// `timer`, `get` and `incr` first flush the writes before them (a timer due at once fires
// after them; a read sees them). When timers fire, it emits one record per timer (key =
// timer key, value = `fired DOMAIN AT wm=WATERMARK`) and adds 1 to the state key
// `fired:KEY`.
//
// Arithmetic wraps at 64 bits like the Rust plugin's (a release build), numbers parse the
// way Rust's `str::parse` does, and error messages quote like Rust's `{:?}` (table in
// debug_escapes.h, made by tests/plugins/gen-debug-escapes).
//
// Memory: the exports own their arguments (freed before returning). What is passed to
// imports stays ours (the host copies it during the call); every string made during a
// call is kept in a `pool_t` and freed at the end of the call. Error messages are
// malloc'd: the bindings free them after the host read them. The `tag` of the config is
// kept for the instance's life.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "debug_escapes.h"
#include "timer_plugin.h"

typedef timer_plugin_string_t str_t;
typedef streamhost_plugin_types_plugin_error_t plugin_error_t;

// ---------------------------------------------------------------------------------------
// Buffers and the pool of a call's allocations.

typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} buf_t;

static void *grow(void *ptr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return ptr;
    *cap = need * 2 + 16;
    ptr = realloc(ptr, *cap * size);
    if (!ptr) abort();
    return ptr;
}

static void buf_push(buf_t *b, const void *src, size_t n) {
    b->ptr = grow(b->ptr, &b->cap, b->len + n, 1);
    if (n) memcpy(b->ptr + b->len, src, n);
    b->len += n;
}

static void buf_str(buf_t *b, const char *s) { buf_push(b, s, strlen(s)); }

static void buf_utf8(buf_t *b, uint32_t c) {
    uint8_t u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (uint8_t)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = 0xC0 | (c >> 6);
        u[1] = 0x80 | (c & 0x3F);
        n = 2;
    } else if (c < 0x10000) {
        u[0] = 0xE0 | (c >> 12);
        u[1] = 0x80 | ((c >> 6) & 0x3F);
        u[2] = 0x80 | (c & 0x3F);
        n = 3;
    } else {
        u[0] = 0xF0 | (c >> 18);
        u[1] = 0x80 | ((c >> 12) & 0x3F);
        u[2] = 0x80 | ((c >> 6) & 0x3F);
        u[3] = 0x80 | (c & 0x3F);
        n = 4;
    }
    buf_push(b, u, n);
}

static void buf_i64(buf_t *b, int64_t v) {
    char digits[20];
    size_t n = 0;
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0) buf_push(b, "-", 1);
    while (n) buf_push(b, &digits[--n], 1);
}

typedef struct {
    void **ptr;
    size_t len, cap;
} pool_t;

// Keeps `b`'s bytes until pool_free and returns them as a string.
static str_t pool_keep(pool_t *p, buf_t *b) {
    p->ptr = grow(p->ptr, &p->cap, p->len + 1, sizeof(void *));
    p->ptr[p->len++] = b->ptr;
    return (str_t){b->ptr, b->len};
}

static void pool_free(pool_t *p) {
    for (size_t i = 0; i < p->len; i++) free(p->ptr[i]);
    free(p->ptr);
}

// `prefix` + `s`, kept in the pool.
static str_t concat(pool_t *p, const char *prefix, str_t s) {
    buf_t b = {0};
    buf_str(&b, prefix);
    buf_push(&b, s.ptr, s.len);
    return pool_keep(p, &b);
}

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, `{:?}` quoting, integers.

#define REPLACEMENT 0xFFFDu

static bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

// Decodes one code point at s[*i] and advances *i. An invalid sequence yields U+FFFD and
// consumes its maximal valid prefix (at least one byte), as Rust's from_utf8_lossy does.
static uint32_t decode(const uint8_t *s, size_t len, size_t *i) {
    uint8_t b = s[*i];
    if (b < 0x80) {
        *i += 1;
        return b;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    uint32_t cp;
    if (in(b, 0xC2, 0xDF)) {
        need = 1;
        cp = b & 0x1F;
    } else if (in(b, 0xE0, 0xEF)) {
        need = 2;
        cp = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (in(b, 0xF0, 0xF4)) {
        need = 3;
        cp = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *i += 1;
        return REPLACEMENT;
    }
    size_t j = *i + 1;
    for (size_t k = 0; k < need; k++, j++) {
        if (j >= len || !in(s[j], k == 0 ? lo : 0x80, k == 0 ? hi : 0xBF)) {
            *i = j;
            return REPLACEMENT;
        }
        cp = (cp << 6) | (s[j] & 0x3F);
    }
    *i = j;
    return cp;
}

// Unicode's White_Space property, as Rust's `split_whitespace`.
static bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static bool debug_escaped(uint32_t c) {
    size_t lo = 0, hi = DEBUG_ESCAPE_LEN;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < DEBUG_ESCAPE[mid][0]) hi = mid;
        else if (c > DEBUG_ESCAPE[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

// Appends `s` (valid UTF-8) quoted like Rust's `{:?}` of a string.
static void buf_debug(buf_t *b, str_t s) {
    static const char hex[] = "0123456789abcdef";
    buf_push(b, "\"", 1);
    for (size_t i = 0; i < s.len;) {
        size_t at = i;
        uint32_t c = decode(s.ptr, s.len, &i);
        switch (c) {
            case 0: buf_str(b, "\\0"); break;
            case '\t': buf_str(b, "\\t"); break;
            case '\r': buf_str(b, "\\r"); break;
            case '\n': buf_str(b, "\\n"); break;
            case '"': buf_str(b, "\\\""); break;
            case '\\': buf_str(b, "\\\\"); break;
            default:
                if (debug_escaped(c)) {
                    char digits[8];
                    size_t n = 0;
                    do {
                        digits[n++] = hex[c & 0xF];
                        c >>= 4;
                    } while (c);
                    buf_str(b, "\\u{");
                    while (n) buf_push(b, &digits[--n], 1);
                    buf_push(b, "}", 1);
                } else {
                    buf_push(b, s.ptr + at, i - at);
                }
        }
    }
    buf_push(b, "\"", 1);
}

// Rust's `str::parse::<u64>`: an optional `+`, then ASCII digits; false on overflow.
static bool parse_u64(const uint8_t *s, size_t len, uint64_t *out) {
    size_t i = 0;
    if (len > 0 && s[0] == '+') i = 1;
    if (i == len) return false;
    uint64_t n = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        uint64_t d = s[i] - '0';
        if (n > (UINT64_MAX - d) / 10) return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

// Rust's `str::parse::<i64>`: an optional sign, then ASCII digits; false out of range.
static bool parse_i64(const uint8_t *s, size_t len, int64_t *out) {
    bool neg = len > 0 && s[0] == '-';
    uint64_t m;
    if (neg) {
        if (len == 1 || s[1] == '+' || !parse_u64(s + 1, len - 1, &m)) return false;
        if (m > (uint64_t)INT64_MAX + 1) return false;
        *out = (int64_t)(0 - m);
    } else {
        if (!parse_u64(s, len, &m) || m > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)m;
    }
    return true;
}

static int64_t wrapping_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

static bool eq(str_t s, const char *lit) { return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0; }

// Rust's `str::parse::<u32>`.
static bool parse_u32(str_t s, uint32_t *out) {
    uint64_t n;
    if (!parse_u64(s.ptr, s.len, &n) || n > UINT32_MAX) return false;
    *out = (uint32_t)n;
    return true;
}

// Appends `s` with U+FFFD for what is not UTF-8, as Rust's from_utf8_lossy.
static void buf_lossy(buf_t *b, const uint8_t *s, size_t len) {
    for (size_t i = 0; i < len;) buf_utf8(b, decode(s, len, &i));
}

// The words of `s` (valid UTF-8), as Rust's `split_whitespace`: a malloc'd array (NULL
// for none) pointing into `s`.
static str_t *split_words(str_t s, size_t *count) {
    str_t *w = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < s.len;) {
        size_t at = i;
        if (is_space(decode(s.ptr, s.len, &i))) continue;
        size_t end = i;
        while (i < s.len) {
            size_t next = i;
            if (is_space(decode(s.ptr, s.len, &next))) break;
            i = end = next;
        }
        w = grow(w, &cap, n + 1, sizeof *w);
        w[n++] = (str_t){s.ptr + at, end - at};
    }
    *count = n;
    return w;
}

// `w[0..n]` joined by single spaces, malloc'd (NULL when empty).
static str_t join(const str_t *w, size_t n) {
    buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        if (i) buf_push(&b, " ", 1);
        buf_push(&b, w[i].ptr, w[i].len);
    }
    return (str_t){b.ptr, b.len};
}

// ---------------------------------------------------------------------------------------
// Errors, with a malloc'd message the bindings free.

static bool fatal(plugin_error_t *err, buf_t *msg) {
    err->tag = STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL;
    err->val.fatal = (str_t){msg->ptr, msg->len};
    return false;
}

static bool fail(plugin_error_t *err, uint8_t tag, str_t message) {
    err->tag = tag;
    if (tag == STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_RETRYABLE) err->val.retryable = message;
    else err->val.fatal = message;
    return false;
}

static bool bad_command(plugin_error_t *err, str_t line) {
    buf_t m = {0};
    buf_str(&m, "bad command ");
    buf_debug(&m, line);
    return fatal(err, &m);
}

static bool domain(str_t word, streamhost_plugin_types_time_domain_t *out, plugin_error_t *err) {
    if (eq(word, "event")) {
        *out = STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_EVENT_TIME;
    } else if (eq(word, "processing")) {
        *out = STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_PROCESSING_TIME;
    } else {
        buf_t m = {0};
        buf_str(&m, "unknown domain ");
        buf_debug(&m, word);
        return fatal(err, &m);
    }
    return true;
}

static bool expiry(str_t kind, str_t value, streamhost_plugin_types_expiry_t *out, plugin_error_t *err) {
    if (eq(kind, "after-ms") && parse_u64(value.ptr, value.len, &out->val.after_ms)) {
        out->tag = STREAMHOST_PLUGIN_TYPES_EXPIRY_AFTER_MS;
        return true;
    }
    if (eq(kind, "at-watermark") && parse_i64(value.ptr, value.len, &out->val.at_watermark)) {
        out->tag = STREAMHOST_PLUGIN_TYPES_EXPIRY_AT_WATERMARK;
        return true;
    }
    buf_t m = {0};
    buf_str(&m, "bad expiry ");
    buf_push(&m, kind.ptr, kind.len);
    buf_push(&m, " ", 1);
    buf_push(&m, value.ptr, value.len);
    return fatal(err, &m);
}

// ---------------------------------------------------------------------------------------
// State ops of a call.

typedef struct {
    streamhost_plugin_state_state_op_t *ptr;
    size_t len, cap;
} ops_t;

static streamhost_plugin_state_state_op_t *op_push(ops_t *ops, uint8_t tag) {
    ops->ptr = grow(ops->ptr, &ops->cap, ops->len + 1, sizeof *ops->ptr);
    streamhost_plugin_state_state_op_t *op = &ops->ptr[ops->len++];
    memset(op, 0, sizeof *op);
    op->tag = tag;
    return op;
}

static void apply(ops_t *ops) {
    streamhost_plugin_state_list_state_op_t list = {ops->ptr, ops->len};
    streamhost_plugin_state_apply(&list);
    ops->len = 0;
}

static timer_plugin_list_u8_t bytes(str_t s) { return (timer_plugin_list_u8_t){s.ptr, s.len}; }

// ---------------------------------------------------------------------------------------
// Emits.

// `--config tag=T`: the value of the `tag` header on every emit (malloc'd).
static timer_plugin_option_string_t tag;

typedef struct {
    streamhost_plugin_types_header_t *ptr;
    size_t len, cap;
} headers_t;

// Appends the header `name: value`, or `name` with a null value if `value` is NULL.
static void header_push(headers_t *h, str_t name, const str_t *value) {
    h->ptr = grow(h->ptr, &h->cap, h->len + 1, sizeof *h->ptr);
    streamhost_plugin_types_header_t *hd = &h->ptr[h->len++];
    *hd = (streamhost_plugin_types_header_t){.name = name};
    if (value) hd->value = (timer_plugin_option_list_u8_t){true, bytes(*value)};
}

// A record to emit, with the `tag` header (appended to `headers`) if the config set one.
// It points into `key`, `value` and `headers`, which stay the caller's.
static streamhost_plugin_emit_output_record_t output(str_t key, str_t value, headers_t *headers) {
    if (tag.is_some) header_push(headers, (str_t){(uint8_t *)"tag", 3}, &tag.val);
    return (streamhost_plugin_emit_output_record_t){
        .key = {true, bytes(key)},
        .value = {true, bytes(value)},
        .headers = {headers->ptr, headers->len},
    };
}

// Emits one record (`emit.send`) and frees `value` and `headers`.
static void send_one(str_t key, buf_t *value, headers_t *headers) {
    str_t v = {value->ptr, value->len};
    streamhost_plugin_emit_output_record_t o = output(key, v, headers);
    streamhost_plugin_emit_list_output_record_t records = {&o, 1};
    streamhost_plugin_emit_send(&records);
    free(value->ptr);
    free(headers->ptr);
}

// ---------------------------------------------------------------------------------------
// The exports.

bool exports_streamhost_plugin_lifecycle_init(timer_plugin_list_tuple2_string_string_t *config,
                                              str_t *err) {
    bool ok = true;
    for (size_t i = 0; i < config->len && ok; i++) {
        str_t key = config->ptr[i].f0, value = config->ptr[i].f1;
        if (eq(key, "tag")) {
            buf_t t = {0};
            buf_push(&t, value.ptr, value.len);
            free(tag.val.ptr);
            tag = (timer_plugin_option_string_t){true, {t.ptr, t.len}};
        } else {
            buf_t m = {0};
            buf_str(&m, "unknown config key ");
            buf_debug(&m, key);
            buf_str(&m, "; timekeeper knows tag");
            *err = (str_t){m.ptr, m.len};
            ok = false;
        }
    }
    timer_plugin_list_tuple2_string_string_free(config);
    return ok;
}

// Runs the command of `line` (valid UTF-8), its words `w[0..n]`: false with `err` set for a
// bad one or a `fail`.
static bool run(exports_streamhost_plugin_handler_batch_t *batch, str_t line, str_t *w,
                size_t n, ops_t *ops, pool_t *pool, plugin_error_t *err) {
    if (n == 4 && eq(w[0], "timer")) {
        int64_t at, ms;
        if (w[3].len > 0 && w[3].ptr[0] == '+') {
            if (!parse_i64(w[3].ptr + 1, w[3].len - 1, &ms)) return bad_command(err, line);
            at = wrapping_add(batch->processing_time, ms);
        } else if (!parse_i64(w[3].ptr, w[3].len, &at)) {
            return bad_command(err, line);
        }
        // Ops so far first: a timer due at once fires after them.
        apply(ops);
        streamhost_plugin_timers_timer_t t = {.key = w[1], .at = at};
        if (!domain(w[2], &t.domain, err)) return false;
        streamhost_plugin_timers_list_timer_t list = {&t, 1};
        streamhost_plugin_timers_set(&list);
    } else if (n == 3 && eq(w[0], "cancel")) {
        streamhost_plugin_timers_timer_id_t id = {.key = w[1]};
        if (!domain(w[2], &id.domain, err)) return false;
        streamhost_plugin_timers_list_timer_id_t list = {&id, 1};
        streamhost_plugin_timers_cancel(&list);
    } else if (n == 3 && eq(w[0], "set")) {
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_SET)->val.set =
            (streamhost_plugin_types_key_value_t){w[1], bytes(w[2])};
    } else if (n == 2 && eq(w[0], "delete")) {
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_DELETE)->val.delete_ = w[1];
    } else if (n == 5 && eq(w[0], "setx")) {
        streamhost_plugin_types_expiry_t e;
        if (!expiry(w[3], w[4], &e, err)) return false;
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_SET_EXPIRING)->val.set_expiring =
            (streamhost_plugin_types_expiring_value_t){w[1], bytes(w[2]), e};
    } else if (n == 4 && eq(w[0], "expire")) {
        streamhost_plugin_types_expiry_t e;
        if (!expiry(w[2], w[3], &e, err)) return false;
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_EXPIRE)->val.expire =
            (streamhost_plugin_types_key_expiry_t){w[1], e};
    } else if (n == 2 && eq(w[0], "persist")) {
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_PERSIST)->val.persist = w[1];
    } else if (n == 3 && eq(w[0], "rearm")) {
        op_push(ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_SET)->val.set =
            (streamhost_plugin_types_key_value_t){concat(pool, "rearm:", w[1]), bytes(w[2])};
    } else if (n == 2 && eq(w[0], "get")) {
        apply(ops);
        timer_plugin_list_u8_t got;
        buf_t v = {0};
        buf_str(&v, "got ");
        if (streamhost_plugin_state_get(&w[1], &got)) {
            buf_lossy(&v, got.ptr, got.len);
            timer_plugin_list_u8_free(&got);
        } else {
            buf_str(&v, "none");
        }
        headers_t h = {0};
        send_one(w[1], &v, &h);
    } else if (n == 3 && eq(w[0], "incr")) {
        int64_t delta, total;
        if (!parse_i64(w[2].ptr, w[2].len, &delta)) return bad_command(err, line);
        apply(ops);
        str_t message;
        if (!streamhost_plugin_state_incr(&w[1], delta, &total, &message))
            return fail(err, STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL, message);
        buf_t v = {0};
        buf_str(&v, "incr ");
        buf_i64(&v, total);
        headers_t h = {0};
        send_one(w[1], &v, &h);
    } else if (n >= 3 && eq(w[0], "emit")) {
        headers_t h = {0};
        for (size_t i = 3; i < n; i++) {
            const uint8_t *at = memchr(w[i].ptr, '=', w[i].len);
            if (at) {
                size_t name_len = (size_t)(at - w[i].ptr);
                str_t value = {(uint8_t *)at + 1, w[i].len - name_len - 1};
                header_push(&h, (str_t){w[i].ptr, name_len}, &value);
            } else {
                header_push(&h, w[i], NULL);
            }
        }
        buf_t v = {0};
        buf_push(&v, w[2].ptr, w[2].len);
        send_one(w[1], &v, &h);
    } else if (n >= 2 && eq(w[0], "fail") && eq(w[1], "retryable")) {
        return fail(err, STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_RETRYABLE, join(w + 2, n - 2));
    } else if (n >= 2 && eq(w[0], "fail") && eq(w[1], "fatal")) {
        return fail(err, STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_FATAL, join(w + 2, n - 2));
    } else if (n >= 3 && eq(w[0], "fail") && eq(w[1], "poison")) {
        uint32_t index;
        if (!parse_u32(w[2], &index)) return bad_command(err, line);
        err->tag = STREAMHOST_PLUGIN_TYPES_PLUGIN_ERROR_POISON;
        err->val.poison = (streamhost_plugin_types_poison_record_t){index, join(w + 3, n - 3)};
        return false;
    } else {
        return bad_command(err, line);
    }
    return true;
}

// Runs one command line (valid UTF-8): false with `err` set for a bad one or a `fail`.
static bool command(exports_streamhost_plugin_handler_batch_t *batch, str_t line, ops_t *ops,
                    pool_t *pool, plugin_error_t *err) {
    size_t n;
    str_t *w = split_words(line, &n);
    bool ok = run(batch, line, w, n, ops, pool, err);
    free(w);
    return ok;
}

bool exports_streamhost_plugin_handler_process(exports_streamhost_plugin_handler_batch_t *batch,
                                               plugin_error_t *err) {
    pool_t pool = {0};  // the lines: ops point into them until the last apply
    ops_t ops = {0};
    bool ok = true;
    for (size_t r = 0; r < batch->records.len && ok; r++) {
        streamhost_plugin_types_kafka_record_t *rec = &batch->records.ptr[r];
        if (!rec->value.is_some) continue;
        const uint8_t *text = batch->data.ptr + rec->value.val.start;
        size_t len = rec->value.val.len;
        buf_t line = {0};
        buf_lossy(&line, text, len);
        ok = command(batch, pool_keep(&pool, &line), &ops, &pool, err);
    }
    if (ok) apply(&ops);
    free(ops.ptr);
    pool_free(&pool);
    exports_streamhost_plugin_handler_batch_free(batch);
    return ok;
}

bool exports_streamhost_plugin_timer_handler_on_timers(
    exports_streamhost_plugin_timer_handler_timer_context_t *context,
    exports_streamhost_plugin_timer_handler_list_timer_t *fired, plugin_error_t *err) {
    (void)err;
    pool_t pool = {0};
    size_t n = fired->len;
    buf_t wm = {0};
    if (context->watermark.is_some) buf_i64(&wm, context->watermark.val);
    else buf_str(&wm, "none");
    pool_keep(&pool, &wm);

    str_t *rearm_keys = calloc(n + 1, sizeof *rearm_keys);
    streamhost_plugin_emit_output_record_t *out = calloc(n + 1, sizeof *out);
    headers_t *headers = calloc(n + 1, sizeof *headers);
    streamhost_plugin_timers_timer_t *again = calloc(n + 1, sizeof *again);
    if (!rearm_keys || !out || !headers || !again) abort();
    for (size_t i = 0; i < n; i++) rearm_keys[i] = concat(&pool, "rearm:", fired->ptr[i].key);
    timer_plugin_list_string_t keys = {rearm_keys, n};
    timer_plugin_list_option_list_u8_t rearms;
    streamhost_plugin_state_get_many(&keys, &rearms);

    ops_t ops = {0};
    size_t n_out = 0, n_again = 0;
    for (size_t i = 0; i < n && i < rearms.len; i++) {
        streamhost_plugin_types_timer_t *t = &fired->ptr[i];
        buf_t v = {0};
        buf_str(&v, t->domain == STREAMHOST_PLUGIN_TYPES_TIME_DOMAIN_EVENT_TIME ? "fired event "
                                                                                : "fired processing ");
        buf_i64(&v, t->at);
        buf_str(&v, " wm=");
        buf_push(&v, wm.ptr, wm.len);
        out[n_out] = output(t->key, pool_keep(&pool, &v), &headers[n_out]);
        n_out++;
        op_push(&ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR)->val.incr =
            (streamhost_plugin_types_key_delta_t){concat(&pool, "fired:", t->key), 1};
        int64_t ms;
        timer_plugin_option_list_u8_t *rearm = &rearms.ptr[i];
        if (rearm->is_some && parse_i64(rearm->val.ptr, rearm->val.len, &ms)) {
            op_push(&ops, STREAMHOST_PLUGIN_TYPES_STATE_OP_DELETE)->val.delete_ = rearm_keys[i];
            again[n_again++] = (streamhost_plugin_timers_timer_t){t->key, t->domain, wrapping_add(t->at, ms)};
        }
    }
    streamhost_plugin_emit_list_output_record_t records = {out, n_out};
    streamhost_plugin_emit_send(&records);
    apply(&ops);
    streamhost_plugin_timers_list_timer_t list = {again, n_again};
    streamhost_plugin_timers_set(&list);

    timer_plugin_list_option_list_u8_free(&rearms);
    free(ops.ptr);
    free(again);
    for (size_t i = 0; i < n_out; i++) free(headers[i].ptr);
    free(headers);
    free(out);
    free(rearm_keys);
    pool_free(&pool);
    exports_streamhost_plugin_timer_handler_list_timer_free(fired);
    exports_streamhost_plugin_timer_handler_timer_context_free(context);
    return true;
}
