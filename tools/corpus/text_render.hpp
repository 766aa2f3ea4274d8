// tools/corpus/text_render.hpp — turning documentation sources into plain UTF-8 text.
//
// The corpus builder (corpus/corpus_builder.hpp) feeds a language model with real prose from
// three kinds of Debian documentation. Each has a renderer here that returns plain text: lines
// without trailing blanks, paragraphs separated by one blank line, valid UTF-8, no control
// characters except tab and newline.
//
//   man pages   roff source -> `groff -mandoc -Tutf8` (run as a child process) -> cleaned text
//               (overstrikes and ANSI escapes removed, running head and foot dropped, the
//               standard 7-column body indent removed). `.so` link pages render to nothing.
//   info files  the `\x1f`-separated nodes of a makeinfo manual -> one section per node (node
//               header, menus, indirect and tag tables, heading underlines dropped).
//   HTML        a small converter: script / style / head and chosen classes dropped, block tags
//               become paragraph breaks, <pre> keeps its layout, entities decoded (named,
//               decimal, hex and &nbsp;), whitespace collapsed.
//
// Everything but render_man_source() is a pure function (string in, string out). groff is the
// one external program, because roff is a programming language that only groff renders fully;
// its output is deterministic for a given groff version and the options fixed below.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "corpus/html_text.hpp"
#include "corpus/subprocess.hpp"
#include "nr/data/utf8.hpp"

namespace nr {

// One named piece of a rendered source: an info node, an HTML section.
struct TextSection {
  std::string name;  // node or section name
  std::string text;  // rendered text (tidy_text form)
};

// ----------------------------------------------------------------------------------------------
// Terminal formatting
// ----------------------------------------------------------------------------------------------

// Removes what a terminal would interpret instead of print: backspace overstrikes ("X\bX" bold,
// "_\bX" underline: the code point before each backspace is deleted) and ANSI escape sequences
// (CSI `ESC [ ... final`, OSC `ESC ] ... BEL`, two-byte `ESC x`).
inline std::string strip_terminal_formatting(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\b') {  // delete the previous code point (its continuation bytes first)
      while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
      if (!out.empty()) out.pop_back();
    } else if (c == 0x1B && i + 1 < s.size()) {
      const char kind = s[i + 1];
      size_t j = i + 2;
      if (kind == '[') {  // CSI: parameters and intermediates, then one final byte 0x40-0x7E
        while (j < s.size() && (static_cast<unsigned char>(s[j]) < 0x40 || static_cast<unsigned char>(s[j]) > 0x7E)) ++j;
        i = j;
      } else if (kind == ']') {  // OSC: up to BEL or ESC backslash
        while (j < s.size() && s[j] != '\a' && !(s[j] == 0x1B && j + 1 < s.size() && s[j + 1] == '\\')) ++j;
        i = (j < s.size() && s[j] == 0x1B) ? j + 1 : j;
      } else {
        i = i + 1;  // ESC + one byte
      }
    } else if (c == 0x1B) {
      // a lone ESC at the very end: dropped
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// ----------------------------------------------------------------------------------------------
// Man pages
// ----------------------------------------------------------------------------------------------

// True when a roff source only redirects to another page (`.so man3/other.3`): a link page
// whose text lives elsewhere. Leading blank and comment lines (.\" or '\") are skipped.
inline bool is_man_redirect(std::string_view roff) {
  size_t start = 0;
  while (start < roff.size()) {
    size_t end = roff.find('\n', start);
    if (end == std::string_view::npos) end = roff.size();
    std::string_view line = roff.substr(start, end - start);
    start = end + 1;
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r' || line.back() == '\t')) line.remove_suffix(1);
    if (line.empty() || line == "." || line.starts_with(".\\\"") || line.starts_with("'\\\"")) continue;
    return line.starts_with(".so ") || line.starts_with(".so\t");
  }
  return false;
}

namespace detail {

// A running head or foot of a formatted man page, such as
//   "LS(1)                     User Commands                     LS(1)":
// it starts at column 0 and has a gap of three or more spaces between its parts. Body lines are
// indented and section headings ("SEE ALSO") have no such gap.
inline bool is_running_title(std::string_view line) {
  return !line.empty() && line[0] != ' ' && line.find("   ") != std::string_view::npos;
}

}  // namespace detail

// Sections left out of a corpus by default: the translator credits that Debian's translated
// man pages end with (a list of names and addresses, different on every page).
inline const std::vector<std::string>& default_dropped_man_sections() {
  static const std::vector<std::string> names = {
      "TRADUCTION", "ÜBERSETZUNG", "TRADUCCIÓN", "TRADUZIONE", "TRADUÇÃO", "TŁUMACZENIE", "VERTALING",
      "ÖVERSÄTTNING", "PŘEKLAD", "OVERSÆTTELSE", "KÄÄNNÖS", "FORDÍTÁS", "ПЕРЕВОД", "ПЕРЕКЛАД", "TRADUCERE",
      "TERCÜME", "PENERJEMAH", "OVERSETTELSE", "ΜΕΤΆΦΡΑΣΗ", "ПРЕВОД", "DỊCH"};
  return names;
}

// Cleans the output of `groff -Tutf8` (or `man`) for a corpus: removes overstrikes and escape
// sequences, maps groff's typographic hyphen and minus (U+2010, U+2011, U+2212) to '-', drops
// the running head (first non-blank line) and foot (last one) when they look like
// "LS(1)   ...   LS(1)", drops the sections whose heading (a line starting at column 0) is in
// `drop_sections`, removes up to 7 leading spaces (the standard body indent, so that text
// starts at column 0 and nested indents are kept), and tidies lines (tidy_text).
inline std::string clean_man_output(std::string_view rendered,
                                    const std::vector<std::string>& drop_sections = default_dropped_man_sections()) {
  std::string s = strip_terminal_formatting(rendered);
  static constexpr std::string_view dashes[] = {"\xE2\x80\x90", "\xE2\x80\x91", "\xE2\x88\x92"};
  {  // copy rather than replace in place (GCC 12 -O3 reports a false -Wrestrict on replace)
    std::string mapped;
    mapped.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      size_t matched = 0;
      for (std::string_view d : dashes)
        if (std::string_view(s).substr(i, d.size()) == d) matched = d.size();
      if (matched) {
        mapped += '-';
        i += matched;
      } else {
        mapped += s[i++];
      }
    }
    s.swap(mapped);
  }

  std::vector<std::string_view> lines;
  for (size_t start = 0; start <= s.size();) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    std::string_view line = std::string_view(s).substr(start, end - start);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  size_t first = 0, last = lines.size();
  while (first < last && lines[first].empty()) ++first;
  while (last > first && lines[last - 1].empty()) --last;
  if (first < last && detail::is_running_title(lines[first])) ++first;
  if (first < last && detail::is_running_title(lines[last - 1])) --last;

  std::string out;
  out.reserve(s.size());
  bool dropping = false;
  for (size_t i = first; i < last; ++i) {
    std::string_view line = lines[i];
    if (!line.empty() && line[0] != ' ') {  // a section heading
      dropping = false;
      for (const std::string& d : drop_sections) dropping = dropping || line == d;
    }
    if (dropping) continue;
    size_t indent = 0;
    while (indent < 7 && indent < line.size() && line[indent] == ' ') ++indent;
    out += line.substr(indent);
    out += '\n';
  }
  return tidy_text(sanitize_utf8(out));
}

// The groff command line used for man pages: preconv with UTF-8 input (-k -Kutf-8), tbl (-t),
// the man/mdoc macros (-mandoc), UTF-8 terminal output with overstrikes and SGR escapes off
// (-P-cbou), 78 columns, hyphenation off (-rHY=0), one continuous page (-rcR=1).
inline constexpr const char* groff_man_command =
    "groff -k -Kutf-8 -t -mandoc -Tutf8 -P-cbou -rLL=78n -rLT=78n -rHY=0 -rcR=1";

// Lines prepended to every page: left-aligned text instead of justified text (no runs of
// padding spaces) and no hyphenation (no words cut at line ends). The `ad` request is renamed
// and replaced by a macro that always asks for left adjustment, and `hy` by a macro that does
// nothing, so neither the macro packages nor the page itself (many call `.hy`) can switch
// justification or hyphenation back on.
inline constexpr std::string_view groff_man_prologue =
    ".rn ad nr*ad-request\n.de ad\n.nr*ad-request l\n..\n.ad l\n"
    ".rn hy nr*hy-request\n.de hy\n..\n.nh\n";

// Renders one man page from its roff source with groff and cleans the result
// (clean_man_output). Returns an empty string for a `.so` link page. Throws nr::IoError when
// groff is missing or fails. Thread-safe: each call uses its own temporary file.
inline std::string render_man_source(std::string_view roff) {
  if (is_man_redirect(roff)) return {};
  std::string tmpl = (std::filesystem::temp_directory_path() / "nr-roff-XXXXXX").string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw IoError(fmt::format("cannot create a temporary file {}", tmpl));
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove_tmp{tmpl};
  {
    FILE* f = ::fdopen(fd, "wb");
    if (f == nullptr) {
      ::close(fd);
      throw IoError(fmt::format("cannot write the temporary file {}", tmpl));
    }
    const bool ok = std::fwrite(groff_man_prologue.data(), 1, groff_man_prologue.size(), f) == groff_man_prologue.size() &&
                    std::fwrite(roff.data(), 1, roff.size(), f) == roff.size();
    if (std::fclose(f) != 0 || !ok) throw IoError(fmt::format("cannot write the temporary file {}", tmpl));
  }
  const CommandResult r = run_command(std::string(groff_man_command) + " < " + shell_quote(tmpl) + " 2>/dev/null");
  if (r.status == 127)
    throw IoError("groff not found: man pages are rendered with groff (install it with `apt-get install groff-base`)");
  if (!r.ok()) throw IoError(fmt::format("groff failed with status {}", r.status));
  return clean_man_output(r.output);
}

// Reads a man page (plain or .gz) and renders it (render_man_source). The error names the file.
inline std::string render_man_file(const std::filesystem::path& path) {
  const std::string roff = read_maybe_gzip(path);
  try {
    return render_man_source(roff);
  } catch (const IoError& e) {
    throw IoError(fmt::format("{}: {}", path.string(), e.what()));
  }
}

// ----------------------------------------------------------------------------------------------
// Info manuals
// ----------------------------------------------------------------------------------------------

namespace detail {

// A heading underline written by makeinfo ("*****", "=====", "-----", "....."), recognised
// when the line above it is not blank.
inline bool is_info_underline(std::string_view line, std::string_view previous) {
  if (line.size() < 2 || previous.empty()) return false;
  const char c = line[0];
  if (c != '*' && c != '=' && c != '-' && c != '.') return false;
  for (char x : line)
    if (x != c) return false;
  return true;
}

}  // namespace detail

// Splits one info file (decompressed; a whole manual or one part "name.info-N") into its nodes.
// Segments are separated by '\x1f'. Dropped: the preamble before the first separator (the
// "This is X.info, produced by makeinfo" header, the copying notice and the dir entry), the
// "Indirect:" and "Tag Table:" tables, the "Local Variables:" trailer, each node's header line
// ("File: x.info,  Node: Top,  Next: ...") and its menu (from "* Menu:" to the node's end;
// index nodes are menus too), heading underlines, and the "\0\b[...\0\b]" markers makeinfo
// leaves for index entries and images. Nodes whose text is empty are left out.
inline std::vector<TextSection> info_nodes(std::string_view info) {
  // Remove the \0\b[ ... \0\b] markers first: they would otherwise leave "[index]" behind.
  std::string raw;
  raw.reserve(info.size());
  static constexpr std::string_view open("\0\b[", 3), close("\0\b]", 3);
  for (size_t i = 0; i < info.size();) {
    if (info.substr(i, 3) == open) {
      const size_t end = info.find(close, i + 3);
      i = end == std::string_view::npos ? info.size() : end + 3;
    } else {
      raw += info[i++];
    }
  }
  std::vector<TextSection> nodes;
  std::string_view all(raw);
  const bool has_separators = all.find('\x1f') != std::string_view::npos;
  size_t start = 0;
  bool first_segment = true;
  while (start <= all.size()) {
    size_t end = all.find('\x1f', start);
    if (end == std::string_view::npos) end = all.size();
    std::string_view seg = all.substr(start, end - start);
    start = end + 1;
    const bool preamble = first_segment && has_separators;
    first_segment = false;
    if (preamble) continue;
    while (!seg.empty() && (seg.front() == '\n' || seg.front() == '\r')) seg.remove_prefix(1);
    if (seg.starts_with("Indirect:") || seg.starts_with("Tag Table:") || seg.starts_with("End Tag Table") ||
        seg.starts_with("Local Variables:"))
      continue;
    TextSection node;
    if (seg.starts_with("File:")) {
      const size_t eol = std::min(seg.find('\n'), seg.size());
      const std::string_view header = seg.substr(0, eol);
      const size_t at = header.find("Node:");
      if (at != std::string_view::npos) {
        std::string_view name = header.substr(at + 5);
        name = name.substr(0, std::min(name.find(','), name.size()));
        while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
        while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
        node.name = std::string(name);
      }
      seg.remove_prefix(std::min(eol + 1, seg.size()));
    }
    std::string body;
    std::string_view previous;
    for (size_t ls = 0; ls < seg.size();) {
      size_t le = seg.find('\n', ls);
      if (le == std::string_view::npos) le = seg.size();
      std::string_view line = seg.substr(ls, le - ls);
      ls = le + 1;
      if (line.starts_with("* Menu:")) break;
      if (detail::is_info_underline(line, previous)) {
        previous = line;
        continue;
      }
      previous = line;
      body += line;
      body += '\n';
    }
    node.text = tidy_text(sanitize_utf8(body));
    if (!node.text.empty()) nodes.push_back(std::move(node));
  }
  return nodes;
}

// The text of all nodes of an info file, one blank line between nodes.
inline std::string info_to_text(std::string_view info) {
  std::string out;
  for (const TextSection& n : info_nodes(info)) {
    if (!out.empty()) out += '\n';
    out += n.text;
  }
  return out;
}

}  // namespace nr
