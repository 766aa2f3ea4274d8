// tools/corpus/language_filter.hpp — telling an untranslated English paragraph from French or German.
//
// Debian's translated documentation is translated paragraph by paragraph, and a paragraph that no
// translator has reached yet is shipped in English. In the Debian Administrator's Handbook
// (bookworm, 11.20220922) that is 38 % of the French text's bytes and 26 % of the German's
// (docs/corpus.md), far too much to leave in a domain meant to teach a new language. The check
// is the classic function-word count: running text of any length is full of its language's
// articles, prepositions and auxiliaries, and rarely uses another language's.
//
//   english = number of words of the paragraph in english_stop_words()
//   own     = number of words of the paragraph in stop_words(language)
//   a paragraph reads as English when english >= 3 and english > 2 * own
//
// Words are runs of letters (ASCII letters and any non-ASCII UTF-8 byte), compared lower-cased;
// an apostrophe ends a word ("l'option" is "l" and "option"). The lists hold only words that are
// not also common in the other two languages ("in", "an", "will", "was", "also" and "man" are
// left out: they are German words too; "on" is French). Code, option lists and tables hold few
// function words in any language and are kept: the test needs three English function words.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

inline const std::vector<std::string_view>& english_stop_words() {
  static const std::vector<std::string_view> w = {
      "the",  "of",   "and",   "to",    "is",     "that",  "for",   "it",   "with",  "as",   "are",  "be",
      "this", "by",   "or",    "from",  "which",  "can",   "not",   "you",  "at",    "have", "your", "these",
      "has",  "its",  "their", "they",  "but",    "all",   "if",    "when", "more",  "other", "should", "would",
      "there", "been", "were", "what",  "how",    "only",  "into",  "than", "then",  "them", "such", "each",
      "any",  "some", "used",  "use",   "using"};
  return w;
}

// The function words of `language` ("en", "fr" or "de"); an empty list for any other language.
inline const std::vector<std::string_view>& stop_words(std::string_view language) {
  static const std::vector<std::string_view> none;
  static const std::vector<std::string_view> fr = {
      "le",   "la",  "les",  "de",   "des",  "du",   "et",   "est",  "un",    "une",  "que",  "qui",
      "dans", "pour", "pas", "sur",  "au",   "aux",  "par",  "ce",   "cette", "il",   "elle", "sont",
      "ou",   "avec", "se",  "ne",   "plus", "ses",  "leur", "peut", "être",  "vous", "nous", "mais",
      "comme", "tout", "tous", "si", "été",  "fait", "aussi", "ces", "sa",    "lorsque", "dont", "leurs"};
  static const std::vector<std::string_view> de = {
      "der",  "die",  "das",  "und",   "ist",  "nicht", "ein",  "eine", "zu",   "den",   "von",  "mit",
      "sich", "des",  "auf",  "für",   "im",   "dem",   "auch", "es",   "werden", "aus", "er",   "sie",
      "wird", "oder", "bei",  "sind",  "kann", "wenn",  "nur",  "wie",  "einer", "einen", "dass", "noch",
      "diese", "dieser", "wir", "ihr", "nach", "über",  "um",   "zum",  "zur",  "sollten", "können", "haben"};
  if (language == "en") return english_stop_words();
  if (language == "fr") return fr;
  if (language == "de") return de;
  return none;
}

// How many words of `text` are in `words` (see the file comment for what a word is).
inline int64_t count_stop_words(std::string_view text, const std::vector<std::string_view>& words) {
  int64_t n = 0;
  std::string word;
  auto flush = [&] {
    if (word.empty()) return;
    for (std::string_view w : words)
      if (w == word) {
        ++n;
        break;
      }
    word.clear();
  };
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || u >= 0x80)
      word += c;
    else if (u >= 'A' && u <= 'Z')
      word += static_cast<char>(u - 'A' + 'a');
    else
      flush();
  }
  flush();
  return n;
}

// True when `paragraph`, meant to be in `language`, reads as English (the rule in the file
// comment). Always false for English itself; a language without a list throws nr::ValueError,
// so that a filter is never silently a no-op.
inline bool reads_as_english(std::string_view paragraph, std::string_view language) {
  if (language == "en") return false;
  const std::vector<std::string_view>& own = stop_words(language);
  if (own.empty())
    throw ValueError(fmt::format("the English-paragraph filter knows French and German only, not '{}'", language));
  const int64_t english = count_stop_words(paragraph, english_stop_words());
  return english >= 3 && english > 2 * count_stop_words(paragraph, own);
}

}  // namespace nr
