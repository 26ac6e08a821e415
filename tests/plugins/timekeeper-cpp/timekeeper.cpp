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
// way Rust's `str::parse` does, and error messages quote like Rust's `{:?}` (with the table
// of tests/plugins/timekeeper-c/debug_escapes.h, made by tests/plugins/gen-debug-escapes).
//
// Memory: the exports get their arguments by value (wit::string and wit::vector own their
// buffers; build.sh makes the glue free the arrays it copied). The host calls that take
// lists go through bulk_imports.h, whose structs point at our data: every string they
// point at is kept in a `Pool` until the call returned.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../timekeeper-c/debug_escapes.h"  // DEBUG_ESCAPE: the table the C port uses
#include "bulk_imports.h"
#include "timer_plugin_cpp.h"

namespace types = ::streamhost::plugin::types;

namespace {

// `--config tag=T`: the value of the `tag` header on every emit.
std::optional<std::string> tag;

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, `{:?}` quoting, integers.

constexpr char32_t kReplacement = 0xFFFD;

constexpr bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

// Decodes one code point at s[i] and advances i. An invalid sequence yields U+FFFD and
// consumes its maximal valid prefix (at least one byte), as Rust's from_utf8_lossy does.
char32_t decode(std::string_view s, size_t& i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) {
        ++i;
        return b;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    char32_t cp;
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
        ++i;
        return kReplacement;
    }
    size_t j = i + 1;
    for (size_t k = 0; k < need; ++k, ++j) {
        if (j >= s.size() || !in(static_cast<uint8_t>(s[j]), k == 0 ? lo : 0x80, k == 0 ? hi : 0xBF)) {
            i = j;
            return kReplacement;
        }
        cp = (cp << 6) | (static_cast<uint8_t>(s[j]) & 0x3F);
    }
    i = j;
    return cp;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xC0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xE0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (c & 0x3F));
    }
}

// Rust's `String::from_utf8_lossy`.
std::string lossy(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size());
    for (size_t i = 0; i < bytes.size();) append_utf8(out, decode(bytes, i));
    return out;
}

// Unicode's White_Space property, as Rust's `split_whitespace`.
constexpr bool is_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

// Rust's `str::split_whitespace` of valid UTF-8: views into `s`.
std::vector<std::string_view> split_whitespace(std::string_view s) {
    std::vector<std::string_view> words;
    size_t start = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.size();) {
        const size_t at = i;
        if (is_space(decode(s, i))) {
            if (in_word) words.push_back(s.substr(start, at - start));
            in_word = false;
        } else if (!in_word) {
            start = at;
            in_word = true;
        }
    }
    if (in_word) words.push_back(s.substr(start));
    return words;
}

bool debug_escaped(char32_t c) {
    const auto* end = DEBUG_ESCAPE + DEBUG_ESCAPE_LEN;
    const auto* it = std::lower_bound(DEBUG_ESCAPE, end, c,
                                      [](const uint32_t (&r)[2], char32_t c) { return r[1] < c; });
    return it != end && (*it)[0] <= c;
}

// `s` (valid UTF-8) quoted like Rust's `{:?}` of a string.
std::string debug(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\"";
    for (size_t i = 0; i < s.size();) {
        const size_t at = i;
        char32_t c = decode(s, i);
        switch (c) {
            case 0: out += "\\0"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            case '\n': out += "\\n"; break;
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            default:
                if (debug_escaped(c)) {
                    std::string digits;
                    do {
                        digits.insert(digits.begin(), kHex[c & 0xF]);
                        c >>= 4;
                    } while (c);
                    out += "\\u{" + digits + "}";
                } else {
                    out += s.substr(at, i - at);
                }
        }
    }
    return out + "\"";
}

// Rust's `str::parse::<u64>`: an optional `+`, then ASCII digits; nullopt on overflow.
std::optional<uint64_t> parse_u64(std::string_view s) {
    if (!s.empty() && s[0] == '+') s.remove_prefix(1);
    if (s.empty()) return std::nullopt;
    uint64_t n = 0;
    for (const char ch : s) {
        if (ch < '0' || ch > '9') return std::nullopt;
        const uint64_t d = static_cast<uint64_t>(ch - '0');
        if (n > (UINT64_MAX - d) / 10) return std::nullopt;
        n = n * 10 + d;
    }
    return n;
}

// Rust's `str::parse::<u32>`.
std::optional<uint32_t> parse_u32(std::string_view s) {
    const auto n = parse_u64(s);
    if (!n || *n > UINT32_MAX) return std::nullopt;
    return static_cast<uint32_t>(*n);
}

// Rust's `str::parse::<i64>`: an optional sign, then ASCII digits; nullopt out of range.
std::optional<int64_t> parse_i64(std::string_view s) {
    if (!s.empty() && s[0] == '-') {
        s.remove_prefix(1);
        if (!s.empty() && s[0] == '+') return std::nullopt;  // one sign only
        const auto m = parse_u64(s);
        if (!m || *m > static_cast<uint64_t>(INT64_MAX) + 1) return std::nullopt;
        return static_cast<int64_t>(0 - *m);
    }
    const auto m = parse_u64(s);
    if (!m || *m > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(*m);
}

constexpr int64_t wrapping_add(int64_t a, int64_t b) {
    return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

// Rust's `[&str]::join(" ")`.
std::string join(std::span<const std::string_view> words) {
    std::string out;
    for (size_t i = 0; i < words.size(); ++i) {
        if (i > 0) out += ' ';
        out += words[i];
    }
    return out;
}

// ---------------------------------------------------------------------------------------
// Errors.

types::PluginError fatal(std::string_view message) {
    return types::PluginError{types::PluginError::Fatal{wit::string::from_view(message)}};
}

std::unexpected<types::PluginError> fail(types::PluginError e) { return std::unexpected(std::move(e)); }

std::expected<bulk::Domain, types::PluginError> domain(std::string_view word) {
    if (word == "event") return bulk::Domain::kEventTime;
    if (word == "processing") return bulk::Domain::kProcessingTime;
    return fail(fatal("unknown domain " + debug(word)));
}

std::expected<bulk::Expiry, types::PluginError> expiry(std::string_view kind, std::string_view value) {
    if (kind == "after-ms") {
        if (const auto ms = parse_u64(value)) return bulk::after_ms(*ms);
    } else if (kind == "at-watermark") {
        if (const auto t = parse_i64(value)) return bulk::at_watermark(*t);
    }
    return fail(fatal("bad expiry " + std::string(kind) + " " + std::string(value)));
}

// ---------------------------------------------------------------------------------------
// What a call hands the host.

// Strings that bulk structs point at, alive until the pool is destroyed (a deque never
// moves its elements).
class Pool {
   public:
    std::string_view keep(std::string s) { return strings_.emplace_back(std::move(s)); }

   private:
    std::deque<std::string> strings_;
};

// The `tag` header (none or one), for every emitted record.
std::vector<bulk::Header> tag_headers() {
    std::vector<bulk::Header> h;
    if (tag) h.push_back({bulk::bytes("tag"), bulk::some(*tag)});
    return h;
}

// Emits one record with these headers (and the `tag` header if the config set one).
void emit_one(std::string_view key, std::string_view value, std::vector<bulk::Header> headers) {
    if (tag) headers.push_back({bulk::bytes("tag"), bulk::some(*tag)});
    const bulk::OutputRecord r = bulk::record(key, value, headers);
    bulk::send({&r, 1});
}

// `state.apply` of the ops so far; they are cleared.
void flush(std::vector<bulk::StateOp>& ops) {
    bulk::apply(ops);
    ops.clear();
}

// Runs one command (a line of valid UTF-8, kept alive by the caller's pool).
std::expected<void, types::PluginError> command(const types::Batch& batch, std::string_view line,
                                                std::vector<bulk::StateOp>& ops, Pool& pool) {
    const std::vector<std::string_view> w = split_whitespace(line);
    const size_t n = w.size();
    const auto bad = [&] { return fail(fatal("bad command " + debug(line))); };
    const std::string_view cmd = n > 0 ? w[0] : std::string_view();
    if (cmd == "timer" && n == 4) {
        std::optional<int64_t> at;
        if (w[3].starts_with('+')) {
            if (const auto ms = parse_i64(w[3].substr(1))) at = wrapping_add(batch.processing_time, *ms);
        } else {
            at = parse_i64(w[3]);
        }
        if (!at) return bad();
        // Ops so far first: a timer due at once fires after them.
        flush(ops);
        const auto d = domain(w[2]);
        if (!d) return fail(d.error());
        const bulk::Timer t{bulk::bytes(w[1]), *d, *at};
        bulk::set_timers({&t, 1});
    } else if (cmd == "cancel" && n == 3) {
        const auto d = domain(w[2]);
        if (!d) return fail(d.error());
        const bulk::TimerId id{bulk::bytes(w[1]), *d};
        bulk::cancel_timers({&id, 1});
    } else if (cmd == "set" && n == 3) {
        ops.push_back(bulk::set(w[1], w[2]));
    } else if (cmd == "delete" && n == 2) {
        ops.push_back(bulk::del(w[1]));
    } else if (cmd == "setx" && n == 5) {
        const auto e = expiry(w[3], w[4]);
        if (!e) return fail(e.error());
        ops.push_back(bulk::set_expiring(w[1], w[2], *e));
    } else if (cmd == "expire" && n == 4) {
        const auto e = expiry(w[2], w[3]);
        if (!e) return fail(e.error());
        ops.push_back(bulk::expire(w[1], *e));
    } else if (cmd == "persist" && n == 2) {
        ops.push_back(bulk::persist(w[1]));
    } else if (cmd == "rearm" && n == 3) {
        ops.push_back(bulk::set(pool.keep("rearm:" + std::string(w[1])), w[2]));
    } else if (cmd == "get" && n == 2) {
        flush(ops);
        const auto v = ::streamhost::plugin::state::Get(w[1]);
        const std::string got =
            v ? lossy({reinterpret_cast<const char*>(v->data()), v->size()}) : "none";
        emit_one(w[1], "got " + got, {});
    } else if (cmd == "incr" && n == 3) {
        const auto delta = parse_i64(w[2]);
        if (!delta) return bad();
        flush(ops);
        auto total = ::streamhost::plugin::state::Incr(w[1], *delta);
        if (!total) {
            return fail(types::PluginError{types::PluginError::Fatal{std::move(total).error()}});
        }
        emit_one(w[1], "incr " + std::to_string(*total), {});
    } else if (cmd == "emit" && n >= 3) {
        std::vector<bulk::Header> headers;
        for (const std::string_view h : std::span(w).subspan(3)) {
            const size_t eq = h.find('=');
            if (eq == std::string_view::npos) {
                headers.push_back({bulk::bytes(h), bulk::none()});
            } else {
                headers.push_back({bulk::bytes(h.substr(0, eq)), bulk::some(h.substr(eq + 1))});
            }
        }
        emit_one(w[1], w[2], std::move(headers));
    } else if (cmd == "fail" && n >= 2 && w[1] == "retryable") {
        return fail(types::PluginError{
            types::PluginError::Retryable{wit::string::from_view(join(std::span(w).subspan(2)))}});
    } else if (cmd == "fail" && n >= 2 && w[1] == "fatal") {
        return fail(fatal(join(std::span(w).subspan(2))));
    } else if (cmd == "fail" && n >= 3 && w[1] == "poison") {
        const auto index = parse_u32(w[2]);
        if (!index) return bad();
        return fail(types::PluginError{types::PluginError::Poison{
            types::PoisonRecord{*index, wit::string::from_view(join(std::span(w).subspan(3)))}}});
    } else {
        return bad();
    }
    return {};
}

// An error string for the host: a malloc'd copy the generated glue frees after the host read it.
std::unexpected<wit::string> refuse(std::string_view message) {
    return std::unexpected(wit::string::from_view(message));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The exports (declared in gen/timer_plugin_cpp.h, called by gen/timer_plugin.cpp).

std::expected<void, wit::string> exports::streamhost::plugin::lifecycle::Init(
    wit::vector<std::tuple<wit::string, wit::string>> config) {
    for (const auto& [key, value] : config.get_const_view()) {
        if (key.get_view() != "tag") {
            return refuse("unknown config key " + debug(key.get_view()) + "; timekeeper knows tag");
        }
        tag = value.to_string();
    }
    return {};
}

std::expected<void, types::PluginError> exports::streamhost::plugin::handler::Process(
    types::Batch batch) {
    const std::string_view data(reinterpret_cast<const char*>(batch.data.data()), batch.data.size());
    Pool pool;  // the lines and the keys made from them: ops point into them until the last apply
    std::vector<bulk::StateOp> ops;
    for (const types::KafkaRecord& record : batch.records.get_const_view()) {
        if (!record.value) continue;
        const std::string_view line = pool.keep(lossy(data.substr(record.value->start, record.value->len)));
        if (auto done = command(batch, line, ops, pool); !done) return done;
    }
    bulk::apply(ops);
    return {};
}

std::expected<void, types::PluginError> exports::streamhost::plugin::timer_handler::OnTimers(
    types::TimerContext context, wit::vector<types::Timer> timers) {
    const std::span<const types::Timer> fired = timers.get_const_view();
    const std::string wm = context.watermark ? std::to_string(*context.watermark) : "none";
    std::vector<std::string> rearm_keys;
    rearm_keys.reserve(fired.size());
    for (const types::Timer& t : fired) rearm_keys.push_back("rearm:" + t.key.to_string());
    const std::vector<std::optional<std::string>> rearms = bulk::get_many(rearm_keys);

    Pool pool;
    const std::vector<bulk::Header> headers = tag_headers();  // the same for every record
    std::vector<bulk::OutputRecord> out;
    std::vector<bulk::StateOp> ops;
    std::vector<bulk::Timer> again;
    // As Rust's `zip`: as many as the shorter list has.
    for (size_t i = 0; i < std::min(fired.size(), rearms.size()); ++i) {
        const types::Timer& t = fired[i];
        const std::string_view key = t.key.get_view();
        const char* d = t.domain == types::TimeDomain::kEventTime ? "event" : "processing";
        const std::string_view value =
            pool.keep("fired " + std::string(d) + " " + std::to_string(t.at) + " wm=" + wm);
        out.push_back(bulk::record(key, value, headers));
        ops.push_back(bulk::incr(pool.keep("fired:" + std::string(key)), 1));
        // Digits are ASCII: bytes that are not UTF-8 never parse, as in Rust.
        if (const auto ms = rearms[i] ? parse_i64(*rearms[i]) : std::nullopt) {
            ops.push_back(bulk::del(rearm_keys[i]));
            again.push_back({bulk::bytes(key), static_cast<bulk::Domain>(t.domain), wrapping_add(t.at, *ms)});
        }
    }
    bulk::send(out);
    bulk::apply(ops);
    bulk::set_timers(again);
    return {};
}
