// Word count in C: the same behaviour as plugins/wordcount (Rust).
//
// Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on Unicode
// whitespace, lowercased, and 1 is added per word to the job state (key = word,
// value = count). With config `emit=true` it also emits one record per word
// (key = word, value = "1"), in order.
//
// The words of a whole batch are added up in a hash table and handed to the host in one
// `state.apply` call: each call into the host costs far more than a table update.
//
// Memory: the host hands `process` its batch and the guest owns it (freed at the end).
// Strings passed to imports stay ours; the host copies them during the call.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "unicode_tables.h"

static bool emit_words = false;

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, lowercasing.

#define REPLACEMENT 0xFFFDu

static bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

// Decodes one code point at s[*i] and advances *i. An invalid sequence yields U+FFFD and
// consumes its maximal valid prefix (at least one byte), as Rust, Python and the WHATWG
// decoder do, so the five plugins see the same characters.
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

// Unicode's White_Space property.
static bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static uint32_t lower_one(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    size_t lo = 0, hi = LOWER_LEN;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (LOWER_FROM[mid] == c) return LOWER_TO[mid];
        if (LOWER_FROM[mid] < c) lo = mid + 1; else hi = mid;
    }
    return c;
}

static bool is_cased(uint32_t c) {
    size_t lo = 0, hi = CASED_LEN;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < CASED[mid][0]) hi = mid;
        else if (c > CASED[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

// Approximates Unicode's Case_Ignorable: apostrophes, periods, colons, combining accents.
static bool is_case_ignorable(uint32_t c) {
    return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0xAD || c == 0x2018 ||
           c == 0x2019 || c == 0x2024 || c == 0x2027 || (c >= 0x300 && c <= 0x36F);
}

// Unicode's final-sigma rule: Σ lowercases to ς when a cased letter comes before it and
// none after it (skipping case-ignorable characters), else to σ.
static bool cased_around(const uint32_t *w, size_t n, size_t i, int step) {
    for (size_t j = i + step; j < n; j += step) {  // j wraps past 0 to SIZE_MAX: stops
        if (is_case_ignorable(w[j])) continue;
        return is_cased(w[j]);
    }
    return false;
}

// ---------------------------------------------------------------------------------------
// A growable byte buffer and the word table.

typedef struct {
    uint8_t *ptr;
    size_t len, cap;
} buf_t;

static void buf_push(buf_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 16;
        b->ptr = realloc(b->ptr, b->cap);
        if (!b->ptr) abort();
    }
    memcpy(b->ptr + b->len, src, n);
    b->len += n;
}

static void buf_push_utf8(buf_t *b, uint32_t c) {
    uint8_t u[4];
    size_t n;
    if (c < 0x80) { u[0] = (uint8_t)c; n = 1; }
    else if (c < 0x800) { u[0] = 0xC0 | (c >> 6); u[1] = 0x80 | (c & 0x3F); n = 2; }
    else if (c < 0x10000) {
        u[0] = 0xE0 | (c >> 12); u[1] = 0x80 | ((c >> 6) & 0x3F); u[2] = 0x80 | (c & 0x3F);
        n = 3;
    } else {
        u[0] = 0xF0 | (c >> 18); u[1] = 0x80 | ((c >> 12) & 0x3F);
        u[2] = 0x80 | ((c >> 6) & 0x3F); u[3] = 0x80 | (c & 0x3F);
        n = 4;
    }
    buf_push(b, u, n);
}

typedef struct {
    uint8_t *word;  // owned; NULL for an empty slot
    size_t len;
    uint64_t hash;
    int64_t count;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap, used;  // cap is a power of two
} table_t;

static uint64_t fnv1a(const uint8_t *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static void table_grow(table_t *t) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    slot_t *slots = calloc(cap, sizeof(slot_t));
    if (!slots) abort();
    for (size_t i = 0; i < t->cap; i++) {
        slot_t s = t->slots[i];
        if (!s.word) continue;
        size_t j = s.hash & (cap - 1);
        while (slots[j].word) j = (j + 1) & (cap - 1);
        slots[j] = s;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

// Adds 1 to the word's count; returns the table's own copy of the word (stable until the
// table is freed: growing moves slots, not words).
static const uint8_t *table_add(table_t *t, const uint8_t *w, size_t n) {
    if ((t->used + 1) * 10 > t->cap * 7) table_grow(t);
    uint64_t h = fnv1a(w, n);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].word) {
        slot_t *s = &t->slots[j];
        if (s->hash == h && s->len == n && memcmp(s->word, w, n) == 0) {
            s->count++;
            return s->word;
        }
        j = (j + 1) & (t->cap - 1);
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) abort();
    memcpy(copy, w, n);
    t->slots[j] = (slot_t){copy, n, h, 1};
    t->used++;
    return copy;
}

// ---------------------------------------------------------------------------------------
// The exports.

static bool parse_flag(plugin_string_t *v, bool *flag) {
    static const char *yes[] = {"true", "1", "yes"}, *no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        if (v->len == strlen(yes[i]) && memcmp(v->ptr, yes[i], v->len) == 0) return *flag = true, true;
        if (v->len == strlen(no[i]) && memcmp(v->ptr, no[i], v->len) == 0) return *flag = false, true;
    }
    return false;
}

static void error_message(plugin_string_t *err, const char *a, plugin_string_t *b, const char *c) {
    buf_t m = {0};
    buf_push(&m, a, strlen(a));
    buf_push(&m, b->ptr, b->len);
    buf_push(&m, c, strlen(c));
    err->ptr = m.ptr;
    err->len = m.len;
}

bool exports_streamhost_plugin_lifecycle_init(plugin_list_tuple2_string_string_t *config,
                                              plugin_string_t *err) {
    bool ok = true;
    for (size_t i = 0; i < config->len && ok; i++) {
        plugin_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
        bool flag;
        if (!parse_flag(value, &flag)) {
            error_message(err, "config value ", value, ": expected true or false");
            ok = false;
        } else if (key->len == 4 && memcmp(key->ptr, "emit", 4) == 0) {
            emit_words = flag;
        } else {
            error_message(err, "unknown config key \"", key, "\"; wordcount knows emit");
            ok = false;
        }
    }
    plugin_list_tuple2_string_string_free(config);
    return ok;
}

bool exports_streamhost_plugin_handler_process(exports_streamhost_plugin_handler_batch_t *batch,
                                               exports_streamhost_plugin_handler_plugin_error_t *err) {
    (void)err;  // word counting cannot fail
    table_t table = {0};
    table_grow(&table);
    buf_t chars = {0}, word = {0}, out = {0};  // out: emitted records
    static uint8_t one[] = {'1'};

    for (size_t r = 0; r < batch->records.len; r++) {
        streamhost_plugin_types_kafka_record_t *rec = &batch->records.ptr[r];
        if (!rec->value.is_some) continue;
        const uint8_t *text = batch->data.ptr + rec->value.val.start;
        size_t len = rec->value.val.len;
        chars.len = 0;
        for (size_t i = 0; i < len;) {
            uint32_t c = decode(text, len, &i);
            buf_push(&chars, &c, sizeof c);
        }
        const uint32_t *cps = (const uint32_t *)chars.ptr;
        size_t n = chars.len / sizeof(uint32_t);
        for (size_t i = 0; i < n;) {
            while (i < n && is_space(cps[i])) i++;
            size_t start = i;
            while (i < n && !is_space(cps[i])) i++;
            if (i == start) continue;
            word.len = 0;
            for (size_t k = start; k < i; k++) {
                uint32_t c = cps[k];
                if (c == 0x130) {  // İ lowercases to i + combining dot above
                    buf_push_utf8(&word, 'i');
                    buf_push_utf8(&word, 0x307);
                } else if (c == 0x3A3) {
                    bool final = cased_around(cps + start, i - start, k - start, -1) &&
                                 !cased_around(cps + start, i - start, k - start, 1);
                    buf_push_utf8(&word, final ? 0x3C2 : 0x3C3);
                } else {
                    buf_push_utf8(&word, lower_one(c));
                }
            }
            const uint8_t *key = table_add(&table, word.ptr, word.len);
            if (emit_words) {
                streamhost_plugin_emit_output_record_t o = {0};
                o.key.is_some = true;
                o.key.val = (plugin_list_u8_t){(uint8_t *)key, word.len};
                o.value.is_some = true;
                o.value.val = (plugin_list_u8_t){one, 1};
                buf_push(&out, &o, sizeof o);
            }
        }
    }

    streamhost_plugin_state_state_op_t *ops = calloc(table.used ? table.used : 1, sizeof *ops);
    if (!ops) abort();
    size_t n_ops = 0;
    for (size_t i = 0; i < table.cap; i++) {
        slot_t *s = &table.slots[i];
        if (!s->word) continue;
        ops[n_ops].tag = STREAMHOST_PLUGIN_TYPES_STATE_OP_INCR;
        ops[n_ops].val.incr.key = (plugin_string_t){s->word, s->len};
        ops[n_ops].val.incr.delta = s->count;
        n_ops++;
    }
    streamhost_plugin_state_list_state_op_t list = {ops, n_ops};
    streamhost_plugin_state_apply(&list);
    if (out.len) {
        streamhost_plugin_emit_list_output_record_t records = {
            (streamhost_plugin_emit_output_record_t *)out.ptr,
            out.len / sizeof(streamhost_plugin_emit_output_record_t)};
        streamhost_plugin_emit_send(&records);
    }

    free(ops);
    for (size_t i = 0; i < table.cap; i++) free(table.slots[i].word);
    free(table.slots);
    free(chars.ptr);
    free(word.ptr);
    free(out.ptr);
    exports_streamhost_plugin_handler_batch_free(batch);
    return true;
}
