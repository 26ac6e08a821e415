package timekeeper

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text the way the Rust plugin sees it: lossy UTF-8 decoding, Unicode whitespace,
// `{:?}` quoting and `str::parse` of unsigned integers.

// decode reads one code point at s[i:] and returns it with the index after it. An
// invalid sequence yields U+FFFD and consumes its maximal valid prefix (at least one
// byte), as Rust's `from_utf8_lossy` does. (Go's utf8.DecodeRune consumes one byte
// per error instead.)
func decode(s []byte, i int) (rune, int) {
	b := s[i]
	if b < 0x80 {
		return rune(b), i + 1
	}
	var need int
	var cp rune
	lo, hi := byte(0x80), byte(0xBF) // the allowed range of the second byte
	switch {
	case b >= 0xC2 && b <= 0xDF:
		need, cp = 1, rune(b&0x1F)
	case b >= 0xE0 && b <= 0xEF:
		need, cp = 2, rune(b&0x0F)
		if b == 0xE0 {
			lo = 0xA0
		} else if b == 0xED {
			hi = 0x9F
		}
	case b >= 0xF0 && b <= 0xF4:
		need, cp = 3, rune(b&0x07)
		if b == 0xF0 {
			lo = 0x90
		} else if b == 0xF4 {
			hi = 0x8F
		}
	default:
		return utf8.RuneError, i + 1
	}
	j := i + 1
	for k := 0; k < need; k, j = k+1, j+1 {
		if j >= len(s) || s[j] < lo || s[j] > hi {
			return utf8.RuneError, j
		}
		lo, hi = 0x80, 0xBF
		cp = cp<<6 | rune(s[j]&0x3F)
	}
	return cp, j
}

// lossy is Rust's `String::from_utf8_lossy(s)`.
func lossy(s []byte) string {
	if utf8.Valid(s) {
		return string(s)
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		var c rune
		c, i = decode(s, i)
		b.WriteRune(c)
	}
	return b.String()
}

// isSpace is Unicode's White_Space property, which Rust's `split_whitespace` splits on.
func isSpace(c rune) bool {
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
		c == 0x205F || c == 0x3000
}

// debugEscaped says whether `{:?}` writes c as \u{HEX}: a binary search of the table.
func debugEscaped(c rune) bool {
	lo, hi := 0, len(debugEscapeRanges)
	for lo < hi {
		mid := (lo + hi) / 2
		switch r := debugEscapeRanges[mid]; {
		case uint32(c) < r[0]:
			hi = mid
		case uint32(c) > r[1]:
			lo = mid + 1
		default:
			return true
		}
	}
	return false
}

// debugQuote is Rust's `format!("{:?}", s)` of a string s (valid UTF-8). Go's %q is
// not the same: it escapes by Go's rules (\a, \x07, \u200b, ...).
func debugQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case 0:
			b.WriteString(`\0`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if debugEscaped(c) {
				b.WriteString(`\u{`)
				b.WriteString(strconv.FormatUint(uint64(c), 16))
				b.WriteByte('}')
			} else {
				b.WriteRune(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// parseUint is Rust's `str::parse` of an unsigned integer of that many bits: an optional
// `+` (which strconv.ParseUint refuses), then ASCII digits, in range.
func parseUint(s string, bits int) (uint64, bool) {
	if len(s) > 1 && s[0] == '+' {
		s = s[1:]
	}
	n, err := strconv.ParseUint(s, 10, bits)
	return n, err == nil
}
