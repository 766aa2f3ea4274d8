// tools/corpus/html_text.hpp — a small HTML-to-text converter for documentation pages.
//
// Enough HTML for generated documentation (DocBook, Sphinx, texi2html), not a browser:
//   - dropped with their content: <script>, <style> (raw text), <head>, <title>, <template>,
//     every element whose class is listed in HtmlTextOptions::skip_classes (DocBook's
//     navigation bars and tables of contents by default) and every element whose id is listed
//     in HtmlTextOptions::skip_ids (none by default);
//   - comments, <!DOCTYPE ...>, <?xml ...?> dropped; CDATA kept as text;
//   - block tags (p, div, h1-h6, ul, ol, dl, table, pre, blockquote, hr, ...) end a paragraph
//     (a blank line); br, li, dt, dd, tr end a line; table cells on one row are joined with
//     HtmlTextOptions::cell_separator;
//   - <pre> keeps its spaces and newlines; elsewhere runs of whitespace become one space;
//   - entities: the XML five, &nbsp; (a space), Latin-1 letters and common typography by name,
//     and every decimal (&#233;) or hexadecimal (&#xE9;) reference; unknown ones stay as written.
// The result is valid UTF-8 in tidy_text() form.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nr/data/utf8.hpp"

namespace nr {

struct HtmlTextOptions {
  // Elements with one of these classes are dropped with everything inside them.
  std::vector<std::string> skip_classes = {"navheader", "navfooter", "toc", "list-of-tables"};
  // Elements whose id attribute is one of these are dropped with everything inside them.
  std::vector<std::string> skip_ids = {};
  // Written between two cells of a table row.
  std::string cell_separator = " | ";
};

namespace detail {

struct NamedEntity {
  std::string_view name;
  uint32_t code_point;
};

// Named character references found in documentation: XML, Latin-1 letters and symbols, and
// common typography. (&nbsp; is handled apart: it is whitespace.)
inline constexpr NamedEntity html_entities[] = {
    {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''},
    {"iexcl", 0xA1}, {"cent", 0xA2}, {"pound", 0xA3}, {"yen", 0xA5}, {"sect", 0xA7}, {"copy", 0xA9},
    {"laquo", 0xAB}, {"not", 0xAC}, {"shy", 0xAD}, {"reg", 0xAE}, {"deg", 0xB0}, {"plusmn", 0xB1},
    {"micro", 0xB5}, {"para", 0xB6}, {"middot", 0xB7}, {"raquo", 0xBB}, {"iquest", 0xBF},
    {"Agrave", 0xC0}, {"Aacute", 0xC1}, {"Acirc", 0xC2}, {"Atilde", 0xC3}, {"Auml", 0xC4}, {"Aring", 0xC5},
    {"AElig", 0xC6}, {"Ccedil", 0xC7}, {"Egrave", 0xC8}, {"Eacute", 0xC9}, {"Ecirc", 0xCA}, {"Euml", 0xCB},
    {"Igrave", 0xCC}, {"Iacute", 0xCD}, {"Icirc", 0xCE}, {"Iuml", 0xCF}, {"Ntilde", 0xD1}, {"Ograve", 0xD2},
    {"Oacute", 0xD3}, {"Ocirc", 0xD4}, {"Otilde", 0xD5}, {"Ouml", 0xD6}, {"times", 0xD7}, {"Oslash", 0xD8},
    {"Ugrave", 0xD9}, {"Uacute", 0xDA}, {"Ucirc", 0xDB}, {"Uuml", 0xDC}, {"Yacute", 0xDD}, {"szlig", 0xDF},
    {"agrave", 0xE0}, {"aacute", 0xE1}, {"acirc", 0xE2}, {"atilde", 0xE3}, {"auml", 0xE4}, {"aring", 0xE5},
    {"aelig", 0xE6}, {"ccedil", 0xE7}, {"egrave", 0xE8}, {"eacute", 0xE9}, {"ecirc", 0xEA}, {"euml", 0xEB},
    {"igrave", 0xEC}, {"iacute", 0xED}, {"icirc", 0xEE}, {"iuml", 0xEF}, {"ntilde", 0xF1}, {"ograve", 0xF2},
    {"oacute", 0xF3}, {"ocirc", 0xF4}, {"otilde", 0xF5}, {"ouml", 0xF6}, {"divide", 0xF7}, {"oslash", 0xF8},
    {"ugrave", 0xF9}, {"uacute", 0xFA}, {"ucirc", 0xFB}, {"uuml", 0xFC}, {"yacute", 0xFD}, {"yuml", 0xFF},
    {"OElig", 0x152}, {"oelig", 0x153}, {"ndash", 0x2013}, {"mdash", 0x2014}, {"lsquo", 0x2018},
    {"rsquo", 0x2019}, {"sbquo", 0x201A}, {"ldquo", 0x201C}, {"rdquo", 0x201D}, {"bdquo", 0x201E},
    {"bull", 0x2022}, {"hellip", 0x2026}, {"euro", 0x20AC}, {"trade", 0x2122}, {"larr", 0x2190},
    {"rarr", 0x2192}, {"le", 0x2264}, {"ge", 0x2265}, {"ne", 0x2260}, {"minus", 0x2212},
};

inline bool html_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

inline bool one_of(std::string_view name, std::initializer_list<std::string_view> set) {
  for (std::string_view x : set)
    if (name == x) return true;
  return false;
}

// Void elements never have an end tag.
inline bool html_void(std::string_view name) {
  return one_of(name, {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
                       "track", "wbr"});
}

inline bool html_block(std::string_view name) {
  return one_of(name, {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "thead", "tbody",
                       "tfoot", "pre", "blockquote", "hr", "section", "article", "header", "footer", "nav", "aside",
                       "figure", "figcaption", "caption", "address", "main", "form", "fieldset", "details", "summary",
                       "body", "html"});
}

inline bool html_line(std::string_view name) { return one_of(name, {"br", "li", "dt", "dd", "tr"}); }

// One parsed tag: <name attrs> or </name> or <name/>.
struct HtmlTag {
  std::string name;  // lower case
  std::string cls;   // value of the class attribute
  std::string id;    // value of the id attribute
  bool closing = false, self_closing = false;
};

// Parses the tag that starts at s[i] == '<'. Returns the index after its '>' (or s.size()), or
// i when the '<' does not start a tag (it is then text).
inline size_t parse_html_tag(std::string_view s, size_t i, HtmlTag& tag) {
  size_t j = i + 1;
  tag = HtmlTag{};
  if (j < s.size() && s[j] == '/') {
    tag.closing = true;
    ++j;
  }
  while (j < s.size() && std::isalnum(static_cast<unsigned char>(s[j])))
    tag.name += static_cast<char>(std::tolower(static_cast<unsigned char>(s[j++])));
  if (tag.name.empty()) return i;
  // Attributes: name[=value], value quoted with ' or " or bare.
  while (j < s.size() && s[j] != '>') {
    if (html_space(s[j])) {
      ++j;
      continue;
    }
    if (s[j] == '/') {
      tag.self_closing = j + 1 < s.size() && s[j + 1] == '>';
      ++j;
      continue;
    }
    std::string attr;
    while (j < s.size() && !html_space(s[j]) && s[j] != '=' && s[j] != '>' && s[j] != '/')
      attr += static_cast<char>(std::tolower(static_cast<unsigned char>(s[j++])));
    if (attr.empty()) {
      ++j;  // a stray character such as a lone quote
      continue;
    }
    while (j < s.size() && html_space(s[j])) ++j;
    if (j >= s.size() || s[j] != '=') continue;
    ++j;
    while (j < s.size() && html_space(s[j])) ++j;
    std::string value;
    if (j < s.size() && (s[j] == '"' || s[j] == '\'')) {
      const char q = s[j++];
      const size_t end = s.find(q, j);
      const size_t stop = end == std::string_view::npos ? s.size() : end;
      value = std::string(s.substr(j, stop - j));
      j = stop == s.size() ? stop : stop + 1;
    } else {
      while (j < s.size() && !html_space(s[j]) && s[j] != '>') value += s[j++];
    }
    if (attr == "class") tag.cls = value;
    if (attr == "id") tag.id = std::move(value);
  }
  return j < s.size() ? j + 1 : s.size();
}

inline bool has_class(std::string_view cls, const std::vector<std::string>& wanted) {
  size_t i = 0;
  while (i < cls.size()) {
    while (i < cls.size() && html_space(cls[i])) ++i;
    size_t j = i;
    while (j < cls.size() && !html_space(cls[j])) ++j;
    const std::string_view word = cls.substr(i, j - i);
    for (const std::string& w : wanted)
      if (!word.empty() && word == w) return true;
    i = j;
  }
  return false;
}

// Decodes the character reference at s[i] == '&' into `out`; returns the index after it, or
// i when it is not a reference that can be decoded (the '&' is then text). `*space` is set for
// &nbsp; so the caller can treat it as whitespace.
inline size_t decode_html_entity(std::string_view s, size_t i, std::string& out, bool* space) {
  *space = false;
  const size_t semi = s.find(';', i + 1);
  if (semi == std::string_view::npos || semi - i > 32) return i;
  const std::string_view body = s.substr(i + 1, semi - i - 1);
  if (body.empty()) return i;
  if (body[0] == '#') {
    const bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
    const std::string_view digits = body.substr(hex ? 2 : 1);
    if (digits.empty() || digits.size() > 8) return i;
    uint32_t cp = 0;
    for (char c : digits) {
      const auto u = static_cast<unsigned char>(c);
      uint32_t d = 0;
      if (std::isdigit(u))
        d = static_cast<uint32_t>(u - '0');
      else if (hex && std::isxdigit(u))
        d = static_cast<uint32_t>(std::tolower(u) - 'a' + 10);
      else
        return i;
      cp = cp * (hex ? 16u : 10u) + d;
    }
    if (cp == 0xA0) {
      *space = true;
    } else if (cp == 0 || cp > 0x10FFFF) {
      append_utf8(out, 0xFFFD);
    } else {
      append_utf8(out, cp);
    }
    return semi + 1;
  }
  if (body == "nbsp") {
    *space = true;
    return semi + 1;
  }
  for (const NamedEntity& e : html_entities) {
    if (e.name == body) {
      if (e.code_point != 0xAD) append_utf8(out, e.code_point);  // &shy; is an invisible hyphen
      return semi + 1;
    }
  }
  return i;
}

}  // namespace detail

// Converts an HTML document (or a fragment of one) to plain text; see the file comment.
inline std::string html_to_text(std::string_view html, const HtmlTextOptions& options = {}) {
  std::string out;
  out.reserve(html.size() / 2);
  int pre = 0;                // depth of <pre> elements
  std::string skip_name;      // element being skipped, with its nesting depth
  int skip_depth = 0;
  int cells_in_row = 0;       // cells started on the current table row

  auto end_line = [&](int newlines) {  // trailing spaces off, then at least `newlines` '\n'
    while (!out.empty() && out.back() == ' ') out.pop_back();
    if (out.empty()) return;
    int have = 0;
    for (size_t k = out.size(); k > 0 && out[k - 1] == '\n'; --k) ++have;
    for (; have < newlines; ++have) out += '\n';
  };
  auto space = [&] {
    if (pre > 0)
      out += ' ';
    else if (!out.empty() && out.back() != ' ' && out.back() != '\n')
      out += ' ';
  };

  detail::HtmlTag tag;
  for (size_t i = 0; i < html.size();) {
    const char c = html[i];
    if (c == '<') {
      if (html.substr(i, 4) == "<!--") {
        const size_t end = html.find("-->", i + 4);
        i = end == std::string_view::npos ? html.size() : end + 3;
        continue;
      }
      if (html.substr(i, 9) == "<![CDATA[") {
        const size_t end = html.find("]]>", i + 9);
        const size_t stop = end == std::string_view::npos ? html.size() : end;
        if (skip_depth == 0) out.append(html.substr(i + 9, stop - i - 9));
        i = stop == html.size() ? stop : stop + 3;
        continue;
      }
      if (i + 1 < html.size() && (html[i + 1] == '!' || html[i + 1] == '?')) {
        const size_t end = html.find('>', i + 2);
        i = end == std::string_view::npos ? html.size() : end + 1;
        continue;
      }
      const size_t next = detail::parse_html_tag(html, i, tag);
      if (next != i) {
        i = next;
        const bool opens = !tag.closing && !tag.self_closing && !detail::html_void(tag.name);
        if (skip_depth > 0) {  // inside a dropped element: only track its own nesting
          if (tag.name == skip_name) skip_depth += tag.closing ? -1 : (opens ? 1 : 0);
          continue;
        }
        if (!tag.closing && (tag.name == "script" || tag.name == "style")) {  // raw text: skip to </name
          if (tag.self_closing) continue;
          const std::string close = "</" + tag.name;
          size_t k = i;
          while (k < html.size()) {
            const size_t lt = html.find("</", k);
            if (lt == std::string_view::npos) {
              k = html.size();
              break;
            }
            std::string probe(html.substr(lt, close.size()));
            for (char& ch : probe) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            if (probe == close) {
              const size_t gt = html.find('>', lt);
              k = gt == std::string_view::npos ? html.size() : gt + 1;
              break;
            }
            k = lt + 2;
          }
          i = k;
          continue;
        }
        if (opens && (tag.name == "head" || tag.name == "title" || tag.name == "template" ||
                      detail::has_class(tag.cls, options.skip_classes) ||
                      std::find(options.skip_ids.begin(), options.skip_ids.end(), tag.id) != options.skip_ids.end())) {
          skip_name = tag.name;
          skip_depth = 1;
          continue;
        }
        if (tag.name == "td" || tag.name == "th") {
          if (!tag.closing) {
            if (cells_in_row > 0) {
              while (!out.empty() && out.back() == ' ') out.pop_back();
              if (!out.empty() && out.back() != '\n') out += options.cell_separator;
            }
            ++cells_in_row;
          }
          continue;
        }
        if (tag.name == "tr") cells_in_row = 0;
        if (tag.name == "pre") {
          end_line(2);
          if (tag.closing) {
            if (pre > 0) --pre;
          } else if (opens) {
            ++pre;
            if (i < html.size() && html[i] == '\n') ++i;  // the newline right after <pre> is not content
          }
          continue;
        }
        if (detail::html_block(tag.name))
          end_line(2);
        else if (detail::html_line(tag.name))
          end_line(1);
        continue;
      }
    }
    ++i;
    if (skip_depth > 0) continue;
    if (c == '&') {
      bool nbsp = false;
      const size_t next = detail::decode_html_entity(html, i - 1, out, &nbsp);
      if (next != i - 1) {
        if (nbsp) space();
        i = next;
        continue;
      }
      out += '&';
    } else if (pre > 0) {
      if (c != '\r') out += c;
    } else if (detail::html_space(c)) {
      space();
    } else {
      out += c;
    }
  }
  return tidy_text(sanitize_utf8(out));
}

// Splits `html` before every occurrence of `marker` (for DocBook sections:
// `<div class="section">`). The first piece is what comes before the first marker; each other
// piece starts with the marker. Pieces are views into `html`.
inline std::vector<std::string_view> split_html_before(std::string_view html, std::string_view marker) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  if (!marker.empty()) {
    for (size_t at = html.find(marker, 1); at != std::string_view::npos; at = html.find(marker, at + 1)) {
      pieces.push_back(html.substr(start, at - start));
      start = at;
    }
  }
  pieces.push_back(html.substr(start));
  return pieces;
}

}  // namespace nr
