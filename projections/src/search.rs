//! Searching a read model's text by words, the same on both databases.
//!
//! A searched text is kept normalised ([`normalize`]): lower case, accents dropped, every run of
//! letters and digits a word after one space (" buca pericolosa in via roma 12"). A search
//! ([`Words`]) finds the texts with a word beginning with each of its terms, in any order: "citta
//! 12" finds "Città, via Roma 120". The `LIKE '% term%'` conditions say it exactly; on SQLite an
//! FTS5 index of the words finds the candidates ([`Words::fts_term`]), on PostgreSQL a trigram
//! index serves the `LIKE`s themselves.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The words of `text`: lower case, without accents, split at anything not a letter or a digit.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let lower = text.chars().flat_map(char::to_lowercase);
    for c in lower.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            word.push(c);
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `text` as a searched column keeps it: each word after one space.
pub fn normalize(text: &str) -> String {
    words(text).iter().map(|w| format!(" {w}")).collect()
}

/// The longest prefix the full-text index keeps a list of documents for (FTS5's `prefix`
/// option, 1 to this).
pub const INDEXED_PREFIX: usize = 6;

/// What a search asks for: a word beginning with each term (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words(Vec<String>);

impl Words {
    /// The terms of what was typed; none when it holds no letter or digit.
    pub fn parse(typed: &str) -> Option<Words> {
        let mut terms = words(typed);
        terms.sort();
        terms.dedup();
        (!terms.is_empty()).then_some(Words(terms))
    }

    pub fn terms(&self) -> &[String] {
        &self.0
    }

    /// The FTS5 query of a term: the prefix of its first [`INDEXED_PREFIX`] characters, which
    /// the index keeps a list for (a longer prefix would merge the lists of every word it begins,
    /// in memory); each candidate is then checked for the whole term. Terms are letters and digits
    /// only, which FTS5's `ascii` tokenizer keeps whole (it splits at ASCII punctuation and
    /// spaces only).
    pub fn fts_term(term: &str) -> String {
        let prefix: String = term.chars().take(INDEXED_PREFIX).collect();
        format!("\"{prefix}\"*")
    }

    /// Whether a [`normalize`]d text has a word beginning with each term: what
    /// [`Words::like_patterns`] say in SQL.
    pub fn matches(&self, text: &str) -> bool {
        self.0.iter().all(|t| text.contains(&format!(" {t}")))
    }

    /// One `LIKE` pattern per term over a [`normalize`]d text; no term holds a wildcard.
    pub fn like_patterns(&self) -> Vec<String> {
        self.0.iter().map(|t| format!("% {t}%")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_as_lower_case_words_without_accents() {
        assert_eq!(
            normalize("Perdita d'acqua in Via  Città—Vecchia, n.12/B"),
            " perdita d acqua in via citta vecchia n 12 b"
        );
        assert_eq!(normalize("ŞEHİR Straße"), " sehir straße");
        assert_eq!(normalize("  ,;  "), "");
    }

    #[test]
    fn a_search_is_its_distinct_terms_as_prefixes() {
        let words = Words::parse("Roma  VIA via, 12").unwrap();
        assert_eq!(words.terms(), ["12", "roma", "via"]);
        assert_eq!(Words::fts_term("pericolosa"), "\"perico\"*");
        assert_eq!(Words::fts_term("città"), "\"città\"*");
        assert_eq!(words.like_patterns(), ["% 12%", "% roma%", "% via%"]);
        assert_eq!(Words::parse("100% _"), Words::parse("100"));
        assert_eq!(Words::parse(" %_\"' "), None);
        assert!(words.matches(" via roma 120"));
        assert!(!words.matches(" via groma 12"));
    }
}
