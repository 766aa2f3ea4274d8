// nr/data/utf8.hpp — checking and repairing UTF-8 text.
//
// Corpus text is read as bytes by a byte-level tokenizer, so every file nr writes or accepts as
// a domain must be valid UTF-8 (RFC 3629: no overlong forms, no surrogates U+D800-U+DFFF,
// nothing above U+10FFFF). Sources are not always clean: old man pages in Latin-1, stray
// control bytes, truncated sequences. sanitize_utf8() repairs them: each byte that does not
// start a valid sequence becomes U+FFFD (the replacement character), CR LF becomes LF, and
// control characters other than tab and newline (C0, DEL, C1) are removed. tidy_text() gives
// rendered text its final layout: no trailing blanks, at most one blank line in a row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nr {

// Length in bytes (1 to 4) of the valid UTF-8 sequence starting at s[i], or 0 when the bytes
// there do not form one (a stray continuation byte, an overlong form, a surrogate, a code point
// above U+10FFFF, a sequence cut short).
inline size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k, unsigned lo, unsigned hi) { return k < s.size() && byte(k) >= lo && byte(k) <= hi; };
  const unsigned b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1, 0x80, 0xBF) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const unsigned lo = b == 0xE0 ? 0xA0 : 0x80;  // E0: no overlong forms
    const unsigned hi = b == 0xED ? 0x9F : 0xBF;  // ED: no surrogates
    return cont(i + 1, lo, hi) && cont(i + 2, 0x80, 0xBF) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const unsigned lo = b == 0xF0 ? 0x90 : 0x80;  // F0: no overlong forms
    const unsigned hi = b == 0xF4 ? 0x8F : 0xBF;  // F4: nothing above U+10FFFF
    return cont(i + 1, lo, hi) && cont(i + 2, 0x80, 0xBF) && cont(i + 3, 0x80, 0xBF) ? 4 : 0;
  }
  return 0;
}

// True when `s` is valid UTF-8. On failure, *bad_offset (when given) receives the byte offset of
// the first invalid sequence.
inline bool is_valid_utf8(std::string_view s, size_t* bad_offset = nullptr) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      if (bad_offset != nullptr) *bad_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

// Appends the UTF-8 encoding of code point `cp` to `out`; invalid code points (surrogates,
// above U+10FFFF) are written as U+FFFD.
inline void append_utf8(std::string& out, uint32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Valid UTF-8 without control characters: each invalid byte becomes U+FFFD, CR LF and lone CR
// become LF, other C0 controls, DEL and C1 controls (U+0080-U+009F) are removed; tab and
// newline are kept. Valid text without controls comes back unchanged.
inline std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
      continue;
    }
    const auto b = static_cast<unsigned char>(s[i]);
    if (n == 1) {
      if (b == '\r') {
        if (i + 1 >= s.size() || s[i + 1] != '\n') out += '\n';
      } else if (b == '\n' || b == '\t' || (b >= 0x20 && b != 0x7F)) {
        out += static_cast<char>(b);
      }
    } else if (!(n == 2 && b == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0)) {  // not C1
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

// Removes trailing blanks (space, tab, CR) from every line, turns runs of blank lines into one
// blank line, drops leading and trailing blank lines, and ends non-empty text with one newline.
inline std::string tidy_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  int pending_blank = 0;  // blank lines seen since the last written line
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string_view::npos) end = s.size();
    std::string_view line = s.substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    if (line.empty()) {
      ++pending_blank;
    } else {
      if (!out.empty()) out += pending_blank > 0 ? "\n\n" : "\n";
      out += line;
      pending_blank = 0;
    }
    start = end + 1;
  }
  if (!out.empty()) out += '\n';
  return out;
}

}  // namespace nr
