package export_streamhost_plugin_handler

import (
	"unicode"
	"unicode/utf8"
)

// wordScanner yields the lowercased words of one text. A word that is lowercase ASCII
// already (most of them) is a slice of the text itself; the others are lowercased into
// a buffer the scanner reuses, so a word is only valid until the next call.
type wordScanner struct {
	text  []byte
	pos   int
	runes []rune
	lower []byte
}

func (s *wordScanner) reset(text []byte) {
	s.text, s.pos = text, 0
}

func (s *wordScanner) next() ([]byte, bool) {
	text := s.text
	i := s.pos
	for i < len(text) { // whitespace before the word
		r, n := decode(text[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += n
	}
	if i == len(text) {
		s.pos = i
		return nil, false
	}
	start, simple := i, true
	for i < len(text) {
		b := text[i]
		if b < utf8.RuneSelf {
			if isASCIISpace(b) {
				break
			}
			if 'A' <= b && b <= 'Z' {
				simple = false
			}
			i++
			continue
		}
		r, n := decode(text[i:])
		if unicode.IsSpace(r) {
			break
		}
		simple = false
		i += n
	}
	s.pos = i
	if simple {
		return text[start:i], true
	}
	return s.lowercase(text[start:i]), true
}

func isASCIISpace(b byte) bool {
	return b == ' ' || ('\t' <= b && b <= '\r')
}

// lowercase applies Unicode's full lowercase mapping: per code point, plus İ (to i and a
// combining dot) and the final-sigma rule, the two that need more than one code point.
func (s *wordScanner) lowercase(word []byte) []byte {
	s.runes = s.runes[:0]
	for i := 0; i < len(word); {
		r, n := decode(word[i:])
		s.runes = append(s.runes, r)
		i += n
	}
	s.lower = s.lower[:0]
	for k, r := range s.runes {
		switch r {
		case 'İ':
			s.lower = append(s.lower, "i\u0307"...)
		case 'Σ':
			if casedAround(s.runes, k, -1) && !casedAround(s.runes, k, 1) {
				s.lower = utf8.AppendRune(s.lower, 'ς')
			} else {
				s.lower = utf8.AppendRune(s.lower, 'σ')
			}
		default:
			s.lower = utf8.AppendRune(s.lower, unicode.ToLower(r))
		}
	}
	return s.lower
}

// casedAround says whether the first code point from runes[k] in direction step (±1)
// that is not case-ignorable is cased: the context of Unicode's final-sigma rule.
func casedAround(runes []rune, k, step int) bool {
	for j := k + step; j >= 0 && j < len(runes); j += step {
		if isCaseIgnorable(runes[j]) {
			continue
		}
		return isCased(runes[j])
	}
	return false
}

// Unicode's Cased property.
func isCased(r rune) bool {
	return unicode.IsUpper(r) || unicode.IsLower(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// Unicode's Case_Ignorable property: marks, format characters, modifiers, and the
// apostrophes and dots that may sit inside a word.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', '·', '\u0387', '\u055f', '\u05f4', '‘', '’', '\u2024', '\u2027',
		'\ufe13', '\ufe52', '\ufe55', '\uff07', '\uff0e', '\uff1a':
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

// decode reads the code point at the start of b (non-empty). An invalid sequence is one
// U+FFFD for its longest valid beginning (at least one byte), as Rust's and Python's
// decoders do; Go's own decoder would give one per byte.
func decode(b []byte) (rune, int) {
	if b[0] < utf8.RuneSelf {
		return rune(b[0]), 1
	}
	r, n := utf8.DecodeRune(b)
	if r != utf8.RuneError || n > 1 {
		return r, n // valid, a written U+FFFD included
	}
	lo, hi := byte(0x80), byte(0xBF) // the range of the second byte
	need := 0
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		need = 1
	case 0xE0 <= c && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
	case 0xF0 <= c && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
	}
	n = 1
	for k := 0; k < need && n < len(b) && lo <= b[n] && b[n] <= hi; k++ {
		lo, hi = 0x80, 0xBF
		n++
	}
	return utf8.RuneError, n
}
