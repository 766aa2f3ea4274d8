// nr/data/domain.hpp — loading one domain (a language or a kind of text) of a corpus.
//
// A corpus is a directory with one folder per domain; a domain folder holds `train.txt` and
// `valid.txt`, both non-empty UTF-8. `nrlab corpus --out DIR` builds one from Debian
// documentation (en, en-mix, en-ood, fr, de: see docs/corpus.md), but any folder laid out like
// that works: to add a language, put its text in DIR/xx/train.txt and DIR/xx/valid.txt.
//
//   nr::DomainText fr = nr::load_domain("corpus", "fr");   // fr.train, fr.valid
//   for (const std::string& name : nr::list_domains("corpus")) ...
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/data/utf8.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

struct DomainText {
  std::string name;   // folder name, e.g. "fr"
  std::string train;  // contents of train.txt
  std::string valid;  // contents of valid.txt
};

namespace detail {

inline std::string corpus_help(const std::filesystem::path& corpus_dir) {
  return fmt::format("build the corpus with `nrlab corpus --out {}`, or bring your own: any folder "
                     "{}/NAME holding train.txt and valid.txt in UTF-8 is a domain",
                     corpus_dir.string(), corpus_dir.string());
}

inline std::string read_domain_file(const std::filesystem::path& file, const std::filesystem::path& corpus_dir) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw IoError(fmt::format("{} is missing: {}", file.string(), corpus_help(corpus_dir)));
  std::string text = read_file(file);
  if (text.empty()) throw IoError(fmt::format("{} is empty: {}", file.string(), corpus_help(corpus_dir)));
  size_t bad = 0;
  if (!is_valid_utf8(text, &bad))
    throw IoError(fmt::format("{} is not valid UTF-8 (first invalid byte at offset {}): convert it, e.g. with "
                              "`iconv -f latin1 -t utf-8`",
                              file.string(), bad));
  return text;
}

}  // namespace detail

// The names of the domains of a corpus: its sub-folders that hold both train.txt and
// valid.txt, sorted. Throws nr::IoError when the directory is missing or holds no domain.
inline std::vector<std::string> list_domains(const std::filesystem::path& corpus_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(corpus_dir, ec))
    throw IoError(fmt::format("corpus directory {} does not exist: {}", corpus_dir.string(),
                              detail::corpus_help(corpus_dir)));
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(corpus_dir, ec)) {
    if (!e.is_directory()) continue;
    if (std::filesystem::is_regular_file(e.path() / "train.txt") && std::filesystem::is_regular_file(e.path() / "valid.txt"))
      names.push_back(e.path().filename().string());
  }
  if (ec) throw IoError(fmt::format("cannot list {}: {}", corpus_dir.string(), ec.message()));
  std::sort(names.begin(), names.end());
  if (names.empty())
    throw IoError(fmt::format("corpus directory {} holds no domain (no folder with train.txt and valid.txt): {}",
                              corpus_dir.string(), detail::corpus_help(corpus_dir)));
  return names;
}

// Loads DIR/NAME/train.txt and DIR/NAME/valid.txt. Throws nr::IoError naming the path when the
// folder or a file is missing, empty or not UTF-8, and says how to build or bring a corpus.
inline DomainText load_domain(const std::filesystem::path& corpus_dir, const std::string& name) {
  const std::filesystem::path dir = corpus_dir / name;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::vector<std::string> found;
    if (std::filesystem::is_directory(corpus_dir, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(corpus_dir, ec))
        if (e.is_directory() && std::filesystem::is_regular_file(e.path() / "train.txt") &&
            std::filesystem::is_regular_file(e.path() / "valid.txt"))
          found.push_back(e.path().filename().string());
    }
    std::sort(found.begin(), found.end());
    std::string known;
    for (const std::string& f : found) known += (known.empty() ? "" : ", ") + f;
    throw IoError(fmt::format("corpus domain folder {} does not exist{}: {}", dir.string(),
                              known.empty() ? "" : " (domains there: " + known + ")", detail::corpus_help(corpus_dir)));
  }
  DomainText d;
  d.name = name;
  d.train = detail::read_domain_file(dir / "train.txt", corpus_dir);
  d.valid = detail::read_domain_file(dir / "valid.txt", corpus_dir);
  return d;
}

}  // namespace nr
