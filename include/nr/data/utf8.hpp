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

#include "nr/core/utf8.hpp"

namespace nr {

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
