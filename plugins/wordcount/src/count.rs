//! The word count itself, free of any WebAssembly binding so that the benchmark can
//! compile exactly this code natively as its baseline.

use std::collections::HashMap;

/// Adds 1 to `counts[word]` for every word of `text`: split on Unicode whitespace,
/// lowercased. Bytes that are not UTF-8 become U+FFFD and are counted like any character.
pub fn count_words(text: &[u8], counts: &mut HashMap<String, i64>) {
    let text = String::from_utf8_lossy(text);
    for word in text.split_whitespace() {
        add_word(word, counts);
    }
}

/// Calls `f` with every word of `text`, lowercased, in order.
pub fn for_each_word(text: &[u8], mut f: impl FnMut(&str)) {
    let text = String::from_utf8_lossy(text);
    for word in text.split_whitespace() {
        if needs_lowercasing(word) {
            f(&word.to_lowercase());
        } else {
            f(word);
        }
    }
}

fn add_word(word: &str, counts: &mut HashMap<String, i64>) {
    // Most words are already lowercase ASCII: look them up without allocating.
    if needs_lowercasing(word) {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    } else if let Some(n) = counts.get_mut(word) {
        *n += 1;
    } else {
        counts.insert(word.to_owned(), 1);
    }
}

fn needs_lowercasing(word: &str) -> bool {
    !word.is_ascii() || word.bytes().any(|b| b.is_ascii_uppercase())
}
