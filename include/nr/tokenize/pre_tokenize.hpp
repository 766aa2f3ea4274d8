// nr/tokenize/pre_tokenize.hpp — splitting text into the pieces BPE merges within, as the
// pre-tokenizers of Hugging Face `tokenizers` do (a tokenizer.json "Sequence" of these steps).
//
//   Split(pattern, behaviour, invert)  the pattern's matches are delimiters; behaviour says what
//                                      becomes of them: removed, isolated (own piece),
//                                      merged_with_previous / _next, contiguous (runs of
//                                      delimiters, and of the rest, each one piece); invert
//                                      swaps matches and the rest.
//   Digits(individual)                 each Unicode number character (\p{N}) alone, or runs of them.
//   ByteLevel(add_prefix_space, use_regex)
//                                      " " prepended to a piece that does not start with one;
//                                      then (use_regex) Split(GPT-2 pattern, isolated). The
//                                      byte-to-character mapping itself happens in the model.
// Every step applies to each piece the previous steps made; empty pieces are dropped. ByteLevel
// must be the last step (a Split of byte-level characters is not supported).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nr/core/error.hpp"
#include "nr/tokenize/regex.hpp"

namespace nr {

// The pre-tokenisation patterns of the common byte-level BPE families.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct PreTokenizerStep {
  enum class Kind { split, digits, byte_level };
  Kind kind = Kind::byte_level;
  std::string pattern;  // split: a regex, or a literal string when !pattern_is_regex
  bool pattern_is_regex = true;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  bool individual_digits = false;  // digits
  bool add_prefix_space = false;   // byte_level
  bool use_regex = true;           // byte_level

  static PreTokenizerStep split(std::string pattern, SplitBehavior b = SplitBehavior::isolated, bool invert = false,
                                bool is_regex = true) {
    PreTokenizerStep s;
    s.kind = Kind::split;
    s.pattern = std::move(pattern);
    s.pattern_is_regex = is_regex;
    s.behavior = b;
    s.invert = invert;
    return s;
  }
  static PreTokenizerStep digits(bool individual) {
    PreTokenizerStep s;
    s.kind = Kind::digits;
    s.individual_digits = individual;
    return s;
  }
  static PreTokenizerStep byte_level(bool add_prefix_space = false, bool use_regex = true) {
    PreTokenizerStep s;
    s.kind = Kind::byte_level;
    s.add_prefix_space = add_prefix_space;
    s.use_regex = use_regex;
    return s;
  }
};

class PreTokenizer {
 public:
  PreTokenizer() = default;
  // Steps recurse into each other (one stack frame per step and piece): a bounded number.
  static constexpr size_t kMaxSteps = 64;

  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {
    if (steps_.size() > kMaxSteps)
      throw ValueError("pre_tokenizer: " + std::to_string(steps_.size()) + " steps, more than the " +
                       std::to_string(kMaxSteps) + " supported");
    for (size_t i = 0; i < steps_.size(); ++i) {
      const auto& s = steps_[i];
      const std::string where = "pre_tokenizer step " + std::to_string(i);
      if (s.kind == PreTokenizerStep::Kind::byte_level && i + 1 != steps_.size())
        throw ValueError(where + ": ByteLevel must be the last pre-tokenizer step (a split of byte-level "
                                 "characters is not supported)");
      Regex re;
      if (s.kind == PreTokenizerStep::Kind::split) {
        re = Regex(s.pattern_is_regex ? s.pattern : literal(s.pattern), where + " (Split)");
      } else if (s.kind == PreTokenizerStep::Kind::digits) {
        re = Regex(s.individual_digits ? "\\p{N}" : "\\p{N}+", where + " (Digits)");
      } else if (s.use_regex) {
        re = Regex(kGpt2Pattern, where + " (ByteLevel)");
      }
      regexes_.push_back(std::move(re));
    }
  }

  const std::vector<PreTokenizerStep>& steps() const { return steps_; }

  // Calls emit(piece) for each final piece of `text` (valid UTF-8), in order.
  template <class Emit>
  void run(std::string_view text, Emit&& emit) const { step(0, text, emit); }

 private:
  static std::string literal(std::string_view s) {
    std::string out;
    for (const char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) out += '\\';
      out += c;
    }
    return out;
  }

  template <class Emit>
  void step(size_t k, std::string_view text, Emit& emit) const {
    if (text.empty()) return;
    if (k == steps_.size()) { emit(text); return; }
    const PreTokenizerStep& s = steps_[k];
    if (s.kind == PreTokenizerStep::Kind::byte_level) {
      if (s.add_prefix_space && text[0] != ' ') {
        const std::string spaced = " " + std::string(text);
        byte_level_split(k, spaced, emit);
      } else {
        byte_level_split(k, text, emit);
      }
      return;
    }
    split(k, text, s.behavior, s.invert, emit);
  }

  template <class Emit>
  void byte_level_split(size_t k, std::string_view text, Emit& emit) const {
    if (!steps_[k].use_regex) { step(k + 1, text, emit); return; }
    split(k, text, SplitBehavior::isolated, false, emit);
  }

  template <class Emit>
  void split(size_t k, std::string_view text, SplitBehavior behavior, bool invert, Emit& emit) const {
    const auto next = [&](size_t b, size_t e) { if (e > b) step(k + 1, text.substr(b, e - b), emit); };
    if (behavior == SplitBehavior::isolated) {
      // The fast path: every match and every stretch between matches is a piece.
      size_t prev = 0;
      regexes_[k].for_each_match(text, [&](size_t b, size_t e) { next(prev, b); next(b, e); prev = e; });
      next(prev, text.size());
      return;
    }
    // (begin, end, is_delimiter) covering the text, then the behaviour's grouping.
    struct Span { size_t b, e; bool delim; };
    std::vector<Span> spans;
    size_t prev = 0;
    regexes_[k].for_each_match(text, [&](size_t b, size_t e) {
      if (b > prev) spans.push_back({prev, b, invert});
      spans.push_back({b, e, !invert});
      prev = e;
    });
    if (prev < text.size()) spans.push_back({prev, text.size(), invert});
    std::vector<std::pair<size_t, size_t>> out;
    bool prev_delim = false;
    if (behavior == SplitBehavior::merged_with_next) {
      for (size_t i = spans.size(); i-- > 0;) {
        const Span& sp = spans[i];
        if (sp.delim && !prev_delim && !out.empty()) out.back().first = sp.b;
        else out.emplace_back(sp.b, sp.e);
        prev_delim = sp.delim;
      }
      for (size_t i = out.size(); i-- > 0;) next(out[i].first, out[i].second);
      return;
    }
    for (const Span& sp : spans) {
      if (behavior == SplitBehavior::removed) {
        if (!sp.delim) out.emplace_back(sp.b, sp.e);
      } else if (behavior == SplitBehavior::contiguous) {
        if (sp.delim == prev_delim && !out.empty()) out.back().second = sp.e;
        else out.emplace_back(sp.b, sp.e);
      } else {  // merged_with_previous
        if (sp.delim && !prev_delim && !out.empty()) out.back().second = sp.e;
        else out.emplace_back(sp.b, sp.e);
      }
      prev_delim = sp.delim;
    }
    for (const auto& [b, e] : out) next(b, e);
  }

  std::vector<PreTokenizerStep> steps_;
  std::vector<Regex> regexes_;
};

}  // namespace nr
