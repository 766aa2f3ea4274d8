// tools/corpus/corpus_sources.hpp — finding and rendering the documents of one corpus domain.
//
// A domain's sources are unpacked Debian packages (and, for some domains, files already
// installed on this machine). They are listed as *units* — one man page, one info manual with
// all its parts, one HTML chapter — and each unit renders into one or more named *documents*:
//
//   man pages         usr/share/man/[LOCALE/]manN/PAGE[.gz]    -> one document "manN/PAGE"
//   info manuals      usr/share/info/**/NAME.info[-N][.gz]      -> one document per node "NAME/NODE"
//   Debian Reference  usr/share/debian-reference/STEM.LANG.html -> one per DocBook section "STEM/NNN"
//   Debian Handbook   usr/share/doc/debian-handbook/html/LOCALE/STEM.html
//                                                               -> one per DocBook section "STEM/NNN"
//
// render_in_order() renders units on several threads but hands the results over strictly in
// unit order, so that the corpus does not depend on thread timing.
#pragma once

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "corpus/html_text.hpp"
#include "corpus/subprocess.hpp"
#include "corpus/text_render.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

enum class SourceKind {
  man_pages,         // usr/share/man/**/manN/*.N[.gz], one document per page
  info_manuals,      // usr/share/info/**/*.info[-N][.gz], one document per node
  debian_reference,  // usr/share/debian-reference/*.LANG.html, one document per section
  debian_handbook,   // usr/share/doc/debian-handbook/html/LOCALE/*.html, one document per section
};

// Where the Debian Administrator's Handbook keeps its HTML, under a package root.
inline constexpr const char* debian_handbook_html_dir = "usr/share/doc/debian-handbook/html";

// The handbook's pages are Publican output: besides DocBook's own markup, every page opens with
// a banner ("Download the ebook"), a title bar of two logos and a navigation list ("Prev",
// "Next"), and closes with another navigation list. Those are dropped with the usual DocBook
// navigation and tables of contents.
inline HtmlTextOptions debian_handbook_html_options() {
  HtmlTextOptions o;
  o.skip_classes.push_back("docnav");
  o.skip_ids = {"banner", "title"};
  return o;
}

namespace detail {

// One unit of rendering: a man page, an info manual (all its parts), an HTML chapter.
struct SourceUnit {
  std::string key;                           // "man1/ls.1", "coreutils", "ch01"
  int tier = 0;                              // 0: fetched package, 1: installed on this machine
  std::string origin;                        // package name or installed directory
  std::vector<std::filesystem::path> files;  // in reading order
};

inline bool is_plain_file(const std::filesystem::directory_entry& e) {
  std::error_code ec;
  return e.symlink_status(ec).type() == std::filesystem::file_type::regular;
}

inline std::vector<std::filesystem::directory_entry> sorted_entries(const std::filesystem::path& dir) {
  std::vector<std::filesystem::directory_entry> v;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) v.push_back(e);
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.path() < b.path(); });
  return v;
}

// True when a man locale directory ("fr", "fr.UTF-8", "pt_BR", "de_DE@euro") holds pages in
// `language` ("fr", "pt-br", "de"): compared case-insensitively, '_' read as '-', ignoring a
// ".codeset" or "@modifier" suffix; a bare language also matches its regional variants.
inline bool man_locale_matches(std::string_view locale, std::string_view language) {
  std::string l;
  for (char c : locale.substr(0, locale.find_first_of(".@")))
    l += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return l == language || (l.size() > language.size() && l.starts_with(language) && l[language.size()] == '-');
}

// Man pages under `base` (…/usr/share/man) in `language`: for English ("en" or ""), the manN/
// directories; for any other language, LOCALE/manN/ where LOCALE matches it. Symbolic links
// (aliases) are skipped; keys are "manN/page.N", the same in every language.
inline void list_man_pages(const std::filesystem::path& base, const std::string& language, int tier,
                           const std::string& origin, std::vector<SourceUnit>& units) {
  auto section = [&](const std::filesystem::path& dir) {
    for (const auto& e : sorted_entries(dir)) {
      if (!is_plain_file(e)) continue;
      std::string page = e.path().filename().string();
      if (page.ends_with(".gz")) page.resize(page.size() - 3);
      units.push_back({dir.filename().string() + "/" + page, tier, origin, {e.path()}});
    }
  };
  const bool english = language.empty() || language == "en";
  for (const auto& e : sorted_entries(base)) {
    if (!e.is_directory()) continue;
    const std::string name = e.path().filename().string();
    if (name.starts_with("man")) {
      if (english) section(e.path());
    } else if (!english && man_locale_matches(name, language)) {
      for (const auto& s : sorted_entries(e.path()))
        if (s.is_directory() && s.path().filename().string().starts_with("man")) section(s.path());
    }
  }
}

// Info manuals under `base` (…/usr/share/info), searched recursively; a manual's parts
// (NAME.info, NAME.info-1, NAME.info-2, ...) are read in that order; the key is NAME.
inline void list_info_manuals(const std::filesystem::path& base, int tier, const std::string& origin,
                              std::vector<SourceUnit>& units) {
  std::map<std::string, std::vector<std::pair<int, std::filesystem::path>>> manuals;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(base, ec); !ec && it != std::filesystem::end(it);
       it.increment(ec)) {
    if (!is_plain_file(*it)) continue;
    std::string f = it->path().filename().string();
    if (f.ends_with(".gz")) f.resize(f.size() - 3);
    const size_t at = f.rfind(".info");
    if (at == std::string::npos || at == 0) continue;
    const std::string rest = f.substr(at + 5);
    int part = 0;
    if (!rest.empty()) {
      if (rest[0] != '-' || rest.size() < 2 || rest.find_first_not_of("0123456789", 1) != std::string::npos) continue;
      part = std::stoi(rest.substr(1));
    }
    manuals[f.substr(0, at)].push_back({part, it->path()});
  }
  for (auto& [name, parts] : manuals) {
    std::sort(parts.begin(), parts.end());
    SourceUnit u{name, tier, origin, {}};
    for (const auto& p : parts) u.files.push_back(p.second);
    units.push_back(std::move(u));
  }
}

// Debian Reference chapters of one language: …/usr/share/debian-reference/STEM.LANG.html,
// except the index (a table of contents). The key is STEM ("ch01", "pr01", "apa").
inline void list_reference_chapters(const std::filesystem::path& dir, const std::string& lang,
                                     const std::string& origin, std::vector<SourceUnit>& units) {
  const std::string suffix = "." + lang + ".html";
  for (const auto& e : sorted_entries(dir)) {
    const std::string f = e.path().filename().string();
    if (!is_plain_file(e) || !f.ends_with(suffix)) continue;
    const std::string stem = f.substr(0, f.size() - suffix.size());
    if (stem == "index") continue;
    units.push_back({stem, 0, origin, {e.path()}});
  }
}

// Debian Handbook pages of one language: DIR/LOCALE/STEM.html for every LOCALE directory that
// matches `language` (man_locale_matches: "fr-FR" for "fr"), except the index (a table of
// contents). The key is STEM ("sect.apt-get", "apt"): the same in every language, so a page's
// sections fall on the same side of the split in every language.
inline void list_handbook_pages(const std::filesystem::path& dir, const std::string& language, int tier,
                                const std::string& origin, std::vector<SourceUnit>& units) {
  for (const auto& locale : sorted_entries(dir)) {
    if (!locale.is_directory() || !man_locale_matches(locale.path().filename().string(), language)) continue;
    for (const auto& e : sorted_entries(locale.path())) {
      const std::string f = e.path().filename().string();
      if (!is_plain_file(e) || !f.ends_with(".html") || f == "index.html") continue;
      units.push_back({f.substr(0, f.size() - 5), tier, origin, {e.path()}});
    }
  }
}

// A DocBook HTML page cut into its sections: documents "KEY/NNN" (NNN counts every piece, empty
// ones included, so that a section keeps its number whatever the text of the others).
inline std::vector<TextSection> html_sections(const std::string& key, std::string_view html,
                                              const HtmlTextOptions& options) {
  std::vector<TextSection> docs;
  int index = 0;
  for (std::string_view piece : split_html_before(html, "<div class=\"section\">")) {
    std::string text = html_to_text(piece, options);
    if (!text.empty()) docs.push_back({fmt::format("{}/{:03}", key, index), std::move(text)});
    ++index;
  }
  return docs;
}

// Renders one unit into named documents.
inline std::vector<TextSection> render_unit(SourceKind kind, const SourceUnit& u) {
  std::vector<TextSection> docs;
  if (kind == SourceKind::man_pages) {
    std::string text = render_man_file(u.files.at(0));
    if (!text.empty()) docs.push_back({u.key, std::move(text)});
  } else if (kind == SourceKind::info_manuals) {
    int index = 0;
    for (const std::filesystem::path& f : u.files)
      for (TextSection& n : info_nodes(read_maybe_gzip(f))) {
        const std::string node = n.name.empty() ? fmt::format("#{}", index) : n.name;
        docs.push_back({u.key + "/" + node, std::move(n.text)});
        ++index;
      }
  } else if (kind == SourceKind::debian_handbook) {
    docs = html_sections(u.key, read_file(u.files.at(0)), debian_handbook_html_options());
  } else {
    docs = html_sections(u.key, read_file(u.files.at(0)), HtmlTextOptions{});
  }
  return docs;
}

// Renders units[0..n) with `jobs` threads, windows of a few units per thread, and hands the
// results to `consume` strictly in unit order; stops as soon as consume returns false. A unit
// whose rendering throws is handed over with its error message instead of documents.
template <class Consume>
void render_in_order(SourceKind kind, const std::vector<SourceUnit>& units, int jobs, Consume consume) {
  const size_t threads = static_cast<size_t>(std::max(1, jobs));
  const size_t window = threads * 8;
  for (size_t begin = 0; begin < units.size(); begin += window) {
    const size_t end = std::min(units.size(), begin + window);
    std::vector<std::vector<TextSection>> docs(end - begin);
    std::vector<std::string> errors(end - begin);
    std::atomic<size_t> next{begin};
    auto worker = [&] {
      for (size_t i = next++; i < end; i = next++) {
        try {
          docs[i - begin] = render_unit(kind, units[i]);
        } catch (const std::exception& e) {
          errors[i - begin] = e.what();
        }
      }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < std::min(threads, end - begin); ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    for (size_t i = begin; i < end; ++i)
      if (!consume(units[i], docs[i - begin], errors[i - begin])) return;
  }
}

}  // namespace detail

}  // namespace nr
