// nr/tokenize/regex.hpp — Unicode regular expressions for pre-tokenisation (PCRE2, UTF-8) and the
// Unicode classes the tokenizer needs (the UTF-8 primitives are core/utf8.hpp's).
//
// Hugging Face `tokenizers` matches its pre-tokeniser patterns with Oniguruma; PCRE2 compiled with
// PCRE2_UTF | PCRE2_UCP gives the same Unicode classes (\p{L}, \p{N}, case folding) but not the
// same \s: Oniguruma's is the White_Space property (with U+0085, without U+180E), PCRE2's is \p{Z}
// plus the ASCII spaces plus a list with U+180E. So `\s` is rewritten to the White_Space list
// (kWhiteSpaceMembers, in brackets or, inside a class, as they are) and `\S` outside a class to its negation; the
// differential test against `tokenizers` over every code point found exactly these two. And
// PCRE2 10.42 has Unicode 14 tables, `tokenizers` Oniguruma Unicode 16: the letters and numbers
// assigned since (CJK extensions H and I, Kawi, Garay, ... 9272 letters and 120 numbers, listed
// in kNewLetters / kNewNumbers from that same comparison) are added to \p{L} and \p{N}. Patterns
// are JIT-compiled when the PCRE2 build has a JIT; a match that overflows the JIT stack is
// retried with the interpreter.
//
// Subjects must be valid UTF-8 (the caller checks once with utf8_sequence_length; PCRE2 is told not to
// check again, which would cost a pass over the subject per match).
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "nr/core/error.hpp"
#include "nr/core/utf8.hpp"

namespace nr {

// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s accept).
inline bool is_unicode_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// The members of Unicode's White_Space property, as PCRE2 class items.
inline constexpr std::string_view kWhiteSpaceMembers =
    "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}";

// Letters and numbers of Unicode 15.0-16.0 (general categories L* and N*), as class items.
inline constexpr std::string_view kNewLetters =
    "\\x{1c89}-\\x{1c8a}\\x{a7cb}-\\x{a7cd}\\x{a7da}-\\x{a7dc}\\x{105c0}-\\x{105f3}\\x{10d4a}-\\x{10d65}"
    "\\x{10d6f}-\\x{10d85}\\x{10ec2}-\\x{10ec4}\\x{1123f}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138b}"
    "\\x{1138e}\\x{11390}-\\x{113b5}\\x{113b7}\\x{113d1}\\x{113d3}\\x{11bc0}-\\x{11be0}\\x{11f02}"
    "\\x{11f04}-\\x{11f10}\\x{11f12}-\\x{11f33}\\x{1342f}\\x{13441}-\\x{13446}\\x{13460}-\\x{143fa}"
    "\\x{16100}-\\x{1611d}\\x{16d40}-\\x{16d6c}\\x{18cff}\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}"
    "\\x{1e030}-\\x{1e06d}\\x{1e4d0}-\\x{1e4eb}\\x{1e5d0}-\\x{1e5ed}\\x{1e5f0}\\x{2b739}"
    "\\x{2ebf0}-\\x{2ee5d}\\x{31350}-\\x{323af}";
inline constexpr std::string_view kNewNumbers =
    "\\x{10d40}-\\x{10d49}\\x{116d0}-\\x{116e3}\\x{11bf0}-\\x{11bf9}\\x{11f50}-\\x{11f59}\\x{16130}-\\x{16139}"
    "\\x{16d70}-\\x{16d79}\\x{1ccf0}-\\x{1ccf9}\\x{1d2c0}-\\x{1d2d3}\\x{1e4f0}-\\x{1e4f9}\\x{1e5f1}-\\x{1e5fa}";

// Oniguruma's meaning for PCRE2 (see the header comment): `\s` -> `[White_Space]`, `\S` ->
// `[^White_Space]`, `\p{L}` / `\p{N}` (and \P) with the newer letters / numbers; inside a class
// the members are added to it. Escapes such as `\\s` and everything inside \Q...\E stay as they are.
inline std::string oniguruma_compatible(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 16);
  bool in_class = false, quoted = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (quoted) {
      out += c;
      if (c == '\\' && i + 1 < pattern.size() && pattern[i + 1] == 'E') { out += 'E'; ++i; quoted = false; }
      continue;
    }
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 'Q') quoted = true;
      std::string members;
      bool negated = false;
      if (e == 's' || e == 'S') {
        members = kWhiteSpaceMembers;
        negated = e == 'S';
      } else if ((e == 'p' || e == 'P') && (pattern.substr(i + 1, 3) == "{L}" || pattern.substr(i + 1, 3) == "{N}")) {
        const bool letters = pattern[i + 2] == 'L';
        members = std::string(letters ? "\\p{L}" : "\\p{N}") + std::string(letters ? kNewLetters : kNewNumbers);
        negated = e == 'P';
        i += 3;
      } else {
        out += c;
        out += e;
        continue;
      }
      if (!in_class) out += (negated ? "[^" : "[") + members + "]";
      else if (!negated) out += members;
      else out += e == 'S' ? std::string("\\S") : std::string("\\P{") + pattern[i - 1] + "}";  // rare: left as PCRE2 has it
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') { out += '^'; ++i; }
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') { out += ']'; ++i; }
      continue;
    }
    if (c == '[' && in_class && i + 1 < pattern.size() && pattern[i + 1] == ':') {  // [:alpha:] inside a class
      const size_t end = pattern.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out += pattern.substr(i, end + 2 - i);
        i = end + 1;
        continue;
      }
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

// A compiled pattern; immutable after construction, so one object serves every thread.
class Regex {
 public:
  Regex() = default;
  // `what` names the pattern's origin in error messages (e.g. "pre_tokenizer.pattern.Regex").
  Regex(std::string_view pattern, std::string_view what) : source_(pattern) {
    const std::string translated = oniguruma_compatible(pattern);
    int err = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                     PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw ValueError(std::string(what) + ": invalid regular expression '" + std::string(pattern) +
                       "' at offset " + std::to_string(offset) + ": " + reinterpret_cast<const char*>(msg));
    }
    code_ = std::shared_ptr<pcre2_code>(code, pcre2_code_free);
    uint32_t has_jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
    if (has_jit != 0) jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  }

  const std::string& source() const { return source_; }
  bool empty() const { return code_ == nullptr; }

  // Calls f(begin, end) for each leftmost non-overlapping match in `subject` (valid UTF-8), as
  // Oniguruma's iteration does: after an empty match the search resumes one character later.
  template <class F>
  void for_each_match(std::string_view subject, F&& f) const {
    // One match block per thread, reused by every call instead of a malloc per piece. 64 pairs:
    // a pattern with more groups still gets ovector[0..1] (pcre2_match then returns 0).
    thread_local const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
        pcre2_match_data_create(64, nullptr), pcre2_match_data_free);
    if (!md) throw Error("regex: out of memory creating match data");
    const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    size_t start = 0;
    while (start <= subject.size()) {
      int rc = jit_ ? pcre2_jit_match(code_.get(), s, subject.size(), start, 0, md.get(), nullptr)
                    : PCRE2_ERROR_JIT_BADOPTION;
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_JIT_BADOPTION)
        rc = pcre2_match(code_.get(), s, subject.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw ValueError("regex '" + source_ + "': matching failed at byte " + std::to_string(start) + ": " +
                         reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t b = ov[0], e = ov[1];
      f(b, e);
      if (e > b) {
        start = e;
      } else {
        if (b >= subject.size()) return;
        const size_t len = utf8_sequence_length(subject, b);
        start = b + (len == 0 ? 1 : len);
      }
    }
  }

 private:
  std::string source_;
  std::shared_ptr<pcre2_code> code_;
  bool jit_ = false;
};

}  // namespace nr
