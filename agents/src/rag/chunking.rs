//! Splitting a document into chunks on sentence and paragraph boundaries.
//!
//! Sentences are packed into chunks of at most `size` characters; the next chunk starts
//! with the last sentences of the previous one, up to `overlap` characters, so a fact
//! that straddles two chunks is whole in one of them. A paragraph break always ends a
//! chunk's sentence, and a sentence longer than `size` is cut at whitespace (or, with
//! none, at a character boundary). Sizes are in characters, not bytes, so text in any
//! script is cut the same way and never inside a character.

/// Splits `text` into sentences, keeping their text trimmed and dropping empty ones.
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut start = 0;
        let chars: Vec<(usize, char)> = paragraph.char_indices().collect();
        for (i, (at, c)) in chars.iter().enumerate() {
            let ends = matches!(c, '.' | '!' | '?' | '。' | '\n')
                && chars
                    .get(i + 1)
                    .is_none_or(|(_, next)| next.is_whitespace());
            if ends {
                let end = at + c.len_utf8();
                out.push(paragraph[start..end].trim());
                start = end;
            }
        }
        out.push(paragraph[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Cuts a sentence longer than `size` characters into pieces of at most `size`,
/// preferring whitespace.
fn pieces(sentence: &str, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: &str = sentence;
    while rest.chars().count() > size {
        let limit = rest
            .char_indices()
            .nth(size)
            .map_or(rest.len(), |(at, _)| at);
        let cut = rest[..limit]
            .rfind(char::is_whitespace)
            .filter(|at| *at > 0)
            .unwrap_or(limit);
        out.push(rest[..cut].trim().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The chunks of `text`: at most `size` characters each, the next repeating up to
/// `overlap` characters of whole sentences from the previous one.
pub fn chunk(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let size = size.max(1);
    let overlap = overlap.min(size / 2);
    let units: Vec<String> = sentences(text)
        .into_iter()
        .flat_map(|s| pieces(s, size))
        .collect();
    let length = |units: &[&str]| -> usize {
        units.iter().map(|u| u.chars().count()).sum::<usize>() + units.len().saturating_sub(1)
    };
    let mut chunks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for unit in &units {
        let mut candidate = current.clone();
        candidate.push(unit);
        if length(&candidate) > size && !current.is_empty() {
            chunks.push(current.join(" "));
            // Keep the tail of whole units that fits the overlap and leaves room.
            let mut tail: Vec<&str> = Vec::new();
            for kept in current.iter().rev() {
                let mut with = vec![*kept];
                with.extend(tail.iter().copied());
                if length(&with) > overlap || length(&with) + 1 + unit.chars().count() > size {
                    break;
                }
                tail = with;
            }
            current = tail;
        }
        current.push(unit);
    }
    // `current` always ends with a unit no emitted chunk has.
    if !current.is_empty() {
        chunks.push(current.join(" "));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_sentences_and_overlaps() {
        let text = "One is first. Two is second. Three is third.\n\nFour starts a paragraph.";
        let chunks = chunk(text, 30, 15);
        assert_eq!(
            chunks,
            [
                "One is first. Two is second.",
                "Two is second. Three is third.",
                "Four starts a paragraph."
            ]
        );
        assert_eq!(chunk(text, 1000, 100).len(), 1);
        assert!(chunk("   \n\n ", 10, 2).is_empty());
    }

    #[test]
    fn long_sentences_are_cut_within_the_size_on_char_boundaries() {
        let text = "ééé ".repeat(100);
        for piece in chunk(&text, 10, 0) {
            assert!(piece.chars().count() <= 10, "{piece}");
            assert!(!piece.is_empty());
        }
        let unbroken = "x".repeat(25);
        assert_eq!(chunk(&unbroken, 10, 0).len(), 3);
    }

    #[test]
    fn every_sentence_lands_in_a_chunk() {
        let text: String = (0..50).map(|i| format!("Sentence number {i}. ")).collect();
        let chunks = chunk(&text, 80, 20);
        for i in 0..50 {
            let needle = format!("Sentence number {i}.");
            assert!(chunks.iter().any(|c| c.contains(&needle)), "{i}");
        }
        assert!(chunks.iter().all(|c| c.chars().count() <= 80));
    }
}
