// Word count in C++: the same behaviour as plugins/wordcount-c (and plugins/wordcount, Rust).
//
// Each record value is decoded as UTF-8 (invalid bytes become U+FFFD), split on Unicode
// whitespace, lowercased, and 1 is added per word to the job state (key = word,
// value = count). With config `emit=true` it also emits one record per word
// (key = word, value = "1"), in order.
//
// The words of a whole batch are added up in a std::unordered_map and handed to the host in
// one `state.apply` call: each call into the host costs far more than a map update.
//
// Memory: the generated glue hands `Process` its batch by value; its wit::vector and
// wit::string members own their buffers and free them when the batch goes out of scope.
// What we pass to the host stays ours; the host copies it during the call.

#include <algorithm>
#include <cstdint>
#include <expected>
#include <functional>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bulk_imports.h"
#include "plugin_cpp.h"
#include "unicode_tables.h"

namespace types = ::streamhost::plugin::types;

namespace {

bool emit_words = false;

// ---------------------------------------------------------------------------------------
// Text: lossy UTF-8 decoding, whitespace, lowercasing.

constexpr char32_t kReplacement = 0xFFFD;

constexpr bool in(uint8_t b, uint8_t lo, uint8_t hi) { return b >= lo && b <= hi; }

// Decodes one code point at s[i] and advances i. An invalid sequence yields U+FFFD and
// consumes its maximal valid prefix (at least one byte), as Rust, Python and the WHATWG
// decoder do, so every plugin sees the same characters.
char32_t decode(std::span<const uint8_t> s, size_t& i) {
    const uint8_t b = s[i];
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
        if (j >= s.size() || !in(s[j], k == 0 ? lo : 0x80, k == 0 ? hi : 0xBF)) {
            i = j;
            return kReplacement;
        }
        cp = (cp << 6) | (s[j] & 0x3F);
    }
    i = j;
    return cp;
}

// Unicode's White_Space property.
constexpr bool is_space(char32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

char32_t lower_one(char32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    using unicode_tables::lower_from, unicode_tables::lower_to;
    const auto it = std::lower_bound(lower_from.begin(), lower_from.end(), c);
    return it != lower_from.end() && *it == c ? lower_to[it - lower_from.begin()] : c;
}

bool is_cased(char32_t c) {
    using unicode_tables::cased, unicode_tables::Range;
    const auto it = std::lower_bound(cased.begin(), cased.end(), c,
                                     [](const Range& r, char32_t c) { return r.last < c; });
    return it != cased.end() && it->first <= c;
}

// Approximates Unicode's Case_Ignorable: apostrophes, periods, colons, combining accents.
constexpr bool is_case_ignorable(char32_t c) {
    return c == '\'' || c == '.' || c == ':' || c == 0xB7 || c == 0xAD || c == 0x2018 ||
           c == 0x2019 || c == 0x2024 || c == 0x2027 || (c >= 0x300 && c <= 0x36F);
}

// Is the first character of [from, to) that is not case-ignorable a cased letter?
template <class It>
bool next_is_cased(It from, It to) {
    const It it = std::find_if_not(from, to, is_case_ignorable);
    return it != to && is_cased(*it);
}

// Unicode's final-sigma rule: Σ lowercases to ς when a cased letter comes before it and
// none after it (skipping case-ignorable characters), else to σ.
bool is_final_sigma(std::u32string_view word, size_t i) {
    return next_is_cased(std::make_reverse_iterator(word.begin() + i), word.rend()) &&
           !next_is_cased(word.begin() + i + 1, word.end());
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

// The lowercase of a word (its code points), as UTF-8, into `out`.
void lowercase(std::u32string_view word, std::string& out) {
    out.clear();
    for (size_t k = 0; k < word.size(); ++k) {
        const char32_t c = word[k];
        if (c == 0x130) {  // İ lowercases to i + combining dot above
            append_utf8(out, 'i');
            append_utf8(out, 0x307);
        } else if (c == 0x3A3) {
            append_utf8(out, is_final_sigma(word, k) ? 0x3C2 : 0x3C3);
        } else {
            append_utf8(out, lower_one(c));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The word table.

// Lets the map be searched with a std::string_view, without making a std::string per word.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using WordCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

// Adds 1 to the word's count; returns the map's own copy of the word (stable until the map
// is destroyed: rehashing moves no elements).
const std::string& add(WordCounts& counts, std::string_view word) {
    auto it = counts.find(word);
    if (it == counts.end()) it = counts.emplace(word, 0).first;
    ++it->second;
    return it->first;
}

std::optional<bool> parse_flag(std::string_view v) {
    if (v == "true" || v == "1" || v == "yes") return true;
    if (v == "false" || v == "0" || v == "no") return false;
    return std::nullopt;
}

// An error for the host: a wit::string the generated glue frees after the host read it.
std::unexpected<wit::string> refuse(std::string_view message) {
    return std::unexpected(wit::string::from_view(message));
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The exports (declared in gen/plugin_cpp.h, called by gen/plugin.cpp).

std::expected<void, wit::string> exports::streamhost::plugin::lifecycle::Init(
    wit::vector<std::tuple<wit::string, wit::string>> config) {
    for (const auto& [key, value] : config.get_const_view()) {
        const std::optional<bool> flag = parse_flag(value.get_view());
        if (!flag) return refuse("config value " + value.to_string() + ": expected true or false");
        if (key.get_view() != "emit") {
            return refuse("unknown config key \"" + key.to_string() + "\"; wordcount knows emit");
        }
        emit_words = *flag;
    }
    return {};
}

std::expected<void, types::PluginError> exports::streamhost::plugin::handler::Process(
    types::Batch batch) {
    const std::span<const uint8_t> data = batch.data.get_const_view();
    WordCounts counts;
    std::vector<bulk::OutputRecord> out;  // emitted records: keys point into `counts`
    std::u32string chars;                 // one value's code points
    std::string word;

    for (const types::KafkaRecord& record : batch.records.get_const_view()) {
        if (!record.value) continue;  // a null value (tombstone)
        const auto text = data.subspan(record.value->start, record.value->len);
        chars.clear();
        for (size_t i = 0; i < text.size();) chars.push_back(decode(text, i));
        const std::u32string_view cps = chars;
        for (size_t i = 0; i < cps.size();) {
            while (i < cps.size() && is_space(cps[i])) ++i;
            const size_t start = i;
            while (i < cps.size() && !is_space(cps[i])) ++i;
            if (i == start) continue;
            lowercase(cps.substr(start, i - start), word);
            const std::string& key = add(counts, word);
            if (emit_words) out.push_back(bulk::record(bulk::some(key), bulk::some("1")));
        }
    }

    std::vector<bulk::StateOp> ops;
    ops.reserve(counts.size());
    for (const auto& [w, n] : counts) ops.push_back(bulk::incr(w, n));
    bulk::apply(ops);
    if (!out.empty()) bulk::send(out);
    return {};  // word counting cannot fail
}
