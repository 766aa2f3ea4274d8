// nr/tokenize/added_tokens.hpp — finding added / special tokens (<|im_start|>, <|endoftext|>) in
// raw text before pre-tokenisation, as Hugging Face `tokenizers` does.
//
// Two passes, each leftmost-longest over a byte trie of the contents: first the tokens with
// `normalized: false` over the whole text, then those with `normalized: true` in the gaps the
// first pass left (nr supports no normalizer, so both passes see the raw text). A match of a
// `single_word` token counts only between non-word characters (Unicode \w as Rust's regex has
// it: Alphabetic, marks, decimal digits, connector punctuation, joiners); `lstrip` / `rstrip`
// extend the match over the whitespace on its left / right (never into the previous match; a
// match that starts inside the previous one's rstrip keeps only the part after it).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nr/tokenize/regex.hpp"

namespace nr {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = true;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(std::vector<AddedToken> tokens) : tokens_(std::move(tokens)) {
    for (size_t t = 0; t < tokens_.size(); ++t) (tokens_[t].normalized ? normalized_ : raw_).add(tokens_[t].content, t);
    if (std::any_of(tokens_.begin(), tokens_.end(), [](const AddedToken& a) { return a.single_word; }))
      word_char_ = Regex("\\A[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", "added_tokens single_word");
  }

  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Calls gap(text) for each stretch without added tokens and token(id) for each added token, in
  // text order.
  template <class Gap, class Tok>
  void split(std::string_view text, Gap&& gap, Tok&& token) const {
    if (normalized_.empty()) { scan(raw_, text, gap, token); return; }
    scan(raw_, text, [&](std::string_view g) { scan(normalized_, g, gap, token); }, token);
  }

 private:
  struct Trie {
    struct Node { std::vector<std::pair<unsigned char, uint32_t>> kids; int64_t token = -1; };
    std::vector<Node> nodes;
    bool first[256] = {};
    bool empty() const { return nodes.empty(); }
    void add(const std::string& s, size_t t) {
      if (nodes.empty()) nodes.emplace_back();
      first[static_cast<unsigned char>(s[0])] = true;
      uint32_t at = 0;
      for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        uint32_t nx = 0;
        for (const auto& [k, v] : nodes[at].kids) if (k == c) nx = v;
        if (nx == 0) {
          nx = static_cast<uint32_t>(nodes.size());
          nodes[at].kids.emplace_back(c, nx);
          nodes.emplace_back();
        }
        at = nx;
      }
      if (nodes[at].token < 0) nodes[at].token = static_cast<int64_t>(t);  // first of duplicates
    }
    // Longest token starting at text[i]: (token index, length) or (-1, 0).
    std::pair<int64_t, size_t> longest(std::string_view text, size_t i) const {
      std::pair<int64_t, size_t> best{-1, 0};
      uint32_t at = 0;
      for (size_t k = i; k < text.size(); ++k) {
        const auto c = static_cast<unsigned char>(text[k]);
        uint32_t nx = 0;
        for (const auto& [kc, v] : nodes[at].kids) if (kc == c) nx = v;
        if (nx == 0) break;
        at = nx;
        if (nodes[at].token >= 0) best = {nodes[at].token, k + 1 - i};
      }
      return best;
    }
  };

  // The code point before / at a byte position, when the bytes there are valid UTF-8.
  static bool char_before(std::string_view s, size_t end, char32_t& cp) {
    for (size_t back = 1; back <= 4 && back <= end; ++back) {
      const size_t len = utf8_sequence_length(s, end - back);
      if (len == back) { cp = utf8_decode(s, end - back, len); return true; }
    }
    return false;
  }
  bool is_word(char32_t cp) const {
    std::string ch;
    append_utf8(ch, cp);
    bool hit = false;
    word_char_.for_each_match(ch, [&](size_t, size_t) { hit = true; });
    return hit;
  }

  template <class Gap, class Tok>
  void scan(const Trie& trie, std::string_view text, Gap&& gap, Tok&& token) const {
    if (trie.empty()) { if (!text.empty()) gap(text); return; }
    size_t done = 0;  // everything before `done` has been emitted
    for (size_t i = 0; i < text.size();) {
      if (!trie.first[static_cast<unsigned char>(text[i])]) { ++i; continue; }
      const auto [t, len] = trie.longest(text, i);
      if (t < 0) { ++i; continue; }
      const AddedToken& a = tokens_[static_cast<size_t>(t)];
      size_t start = i, stop = i + len;
      start = std::max(start, done);  // inside the previous match's rstrip: the rest of it counts
      if (a.single_word) {
        char32_t cp = 0;
        const bool left_word = start > 0 && char_before(text, start, cp) && is_word(cp);
        const size_t rl = stop < text.size() ? utf8_sequence_length(text, stop) : 0;
        const bool right_word = rl > 0 && is_word(utf8_decode(text, stop, rl));
        if (left_word || right_word) { i = stop; continue; }
      }
      if (a.lstrip) {
        char32_t cp = 0;
        while (start > done && char_before(text, start, cp) && is_unicode_space(cp)) {
          std::string tmp;
          append_utf8(tmp, cp);
          start -= tmp.size();
        }
      }
      if (a.rstrip) {
        for (size_t l; stop < text.size() && (l = utf8_sequence_length(text, stop)) > 0 &&
                       is_unicode_space(utf8_decode(text, stop, l));)
          stop += l;
      }
      if (start > done) gap(text.substr(done, start - done));
      token(a.id);
      done = stop;
      i += len;  // the search resumes after the match itself, not after what rstrip took
    }
    if (done < text.size()) gap(text.substr(done));
  }

  std::vector<AddedToken> tokens_;
  Trie raw_, normalized_;
  Regex word_char_;
};

}  // namespace nr
