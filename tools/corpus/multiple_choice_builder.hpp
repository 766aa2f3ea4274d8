// tools/corpus/multiple_choice_builder.hpp — parallel multiple-choice items from aligned documents.
//
// The Debian reference is translated paragraph by paragraph (po4a), so its chapters in English,
// French and German hold the same paragraphs in the same order. `nrlab corpus` keeps one text
// file per chapter and language under DIR/reference/<lang>/<chapter>.txt. An item is built from
// paragraph indices only, so the same item exists in every language, as the paper's translated
// benchmarks do:
//   context = paragraph i (its last `max_context_chars` characters, cut at a word boundary),
//   choices = the opening of paragraph i + 1 (the true continuation) and of three other
//             paragraphs of the same chapter (distractors), each cut to at most
//             `max_choice_chars` characters at a word boundary,
//   label   = the true choice's position, drawn at random.
// Paragraphs are usable when, in every language, they hold prose (at least `min_chars`
// characters, mostly letters) and, for translations, differ from the English text (an
// untranslated paragraph would make the item identical across languages). Chapters whose
// paragraph counts differ between languages are skipped. Everything is seeded: the same
// reference text gives the same items.
#pragma once

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/core/rng.hpp"
#include "nr/eval/multiple_choice.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

struct MultipleChoiceOptions {
  int64_t max_items = 200;
  int64_t min_chars = 60;
  int64_t max_context_chars = 240;
  int64_t max_choice_chars = 80;
  int choices = 4;
  uint64_t seed = 17;
};

namespace detail {

inline std::vector<std::string> split_paragraphs(const std::string& text) {
  std::vector<std::string> out;
  std::string cur, line;
  auto flush = [&]() {
    if (!cur.empty()) out.push_back(cur);
    cur.clear();
  };
  size_t i = 0;
  while (i <= text.size()) {
    const size_t nl = text.find('\n', i);
    line = text.substr(i, nl == std::string::npos ? std::string::npos : nl - i);
    const bool blank = line.find_first_not_of(" \t\r") == std::string::npos;
    if (blank) {
      flush();
    } else {
      const size_t a = line.find_first_not_of(" \t");
      if (!cur.empty()) cur += ' ';
      cur += line.substr(a);
    }
    if (nl == std::string::npos) break;
    i = nl + 1;
  }
  flush();
  return out;
}

// Prose: long enough, and at least 75 % of its bytes are letters (any UTF-8 lead/continuation
// byte counts as a letter), spaces or common punctuation.
inline bool is_prose(const std::string& p, int64_t min_chars) {
  if (static_cast<int64_t>(p.size()) < min_chars) return false;
  int64_t good = 0;
  for (unsigned char c : p) good += std::isalpha(c) || c >= 0x80 || c == ' ' || c == ',' || c == '.' || c == '\'';
  return good * 4 >= static_cast<int64_t>(p.size()) * 3;
}

// The first `n` characters of s cut back to a word boundary.
inline std::string head_words(const std::string& s, int64_t n) {
  if (static_cast<int64_t>(s.size()) <= n) return s;
  size_t cut = s.rfind(' ', static_cast<size_t>(n));
  if (cut == std::string::npos || cut < static_cast<size_t>(n / 2)) cut = static_cast<size_t>(n);
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
  return s.substr(0, cut);
}

// The last `n` characters of s, starting at a word boundary.
inline std::string tail_words(const std::string& s, int64_t n) {
  if (static_cast<int64_t>(s.size()) <= n) return s;
  size_t start = s.size() - static_cast<size_t>(n);
  const size_t sp = s.find(' ', start);
  if (sp != std::string::npos && sp < s.size() - 1) start = sp + 1;
  while (start < s.size() && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) ++start;
  return s.substr(start);
}

}  // namespace detail

// Items per language, built from DIR/<lang>/<chapter>.txt for every language of `langs` (the
// first one is the reference for detecting untranslated paragraphs).
inline std::map<std::string, std::vector<ChoiceItem>> build_parallel_multiple_choice(
    const std::filesystem::path& reference_dir, const std::vector<std::string>& langs, const MultipleChoiceOptions& o = {}) {
  namespace fs = std::filesystem;
  if (langs.empty()) throw ValueError("multiple-choice builder: no language given");
  std::vector<std::string> chapters;
  const fs::path first = reference_dir / langs.front();
  if (!fs::is_directory(first))
    throw IoError(fmt::format("multiple-choice builder: '{}' is missing; build the corpus with `nrlab corpus`", first.string()));
  for (const auto& e : fs::directory_iterator(first))
    if (e.path().extension() == ".txt") chapters.push_back(e.path().filename().string());
  std::sort(chapters.begin(), chapters.end());

  struct Candidate {
    size_t chapter;
    size_t index;
  };
  std::vector<std::vector<std::vector<std::string>>> paras(chapters.size());  // [chapter][lang][paragraph]
  std::vector<Candidate> candidates;
  std::vector<std::vector<size_t>> usable(chapters.size());
  for (size_t c = 0; c < chapters.size(); ++c) {
    bool aligned = true;
    for (const std::string& lang : langs) {
      const fs::path file = reference_dir / lang / chapters[c];
      if (!fs::exists(file)) {
        aligned = false;
        break;
      }
      paras[c].push_back(detail::split_paragraphs(read_file(file)));
      if (paras[c].back().size() != paras[c].front().size()) aligned = false;
    }
    if (!aligned) continue;
    const size_t n = paras[c].front().size();
    std::vector<char> ok(n, 1);
    for (size_t i = 0; i < n; ++i)
      for (size_t l = 0; l < langs.size() && ok[i]; ++l) {
        const std::string& p = paras[c][l][i];
        ok[i] = detail::is_prose(p, o.min_chars) && (l == 0 || p != paras[c][0][i]);
      }
    for (size_t i = 0; i < n; ++i)
      if (ok[i]) usable[c].push_back(i);
    for (size_t i = 0; i + 1 < n; ++i)
      if (ok[i] && ok[i + 1]) candidates.push_back({c, i});
  }

  Rng rng(o.seed);
  // Deterministic shuffle of the candidates, then take the first max_items that have enough
  // distractors in their chapter.
  for (size_t i = candidates.size(); i > 1; --i) std::swap(candidates[i - 1], candidates[static_cast<size_t>(rng.randint(static_cast<int64_t>(i)))]);
  std::map<std::string, std::vector<ChoiceItem>> items;
  for (const Candidate& cand : candidates) {
    if (static_cast<int64_t>(items[langs.front()].size()) >= o.max_items) break;
    const std::vector<size_t>& pool = usable[cand.chapter];
    std::vector<size_t> others;
    for (size_t j : pool)
      if (j != cand.index && j != cand.index + 1) others.push_back(j);
    if (static_cast<int>(others.size()) < o.choices - 1) continue;
    std::vector<size_t> picks{cand.index + 1};
    while (static_cast<int>(picks.size()) < o.choices) {
      const size_t j = others[static_cast<size_t>(rng.randint(static_cast<int64_t>(others.size())))];
      if (std::find(picks.begin(), picks.end(), j) == picks.end()) picks.push_back(j);
    }
    const int label = static_cast<int>(rng.randint(o.choices));
    std::swap(picks[0], picks[static_cast<size_t>(label)]);
    for (size_t l = 0; l < langs.size(); ++l) {
      const std::vector<std::string>& p = paras[cand.chapter][l];
      ChoiceItem item;
      item.context = detail::tail_words(p[cand.index], o.max_context_chars);
      for (size_t j : picks) item.choices.push_back(detail::head_words(p[j], o.max_choice_chars));
      item.label = label;
      items[langs[l]].push_back(std::move(item));
    }
  }
  return items;
}

inline nlohmann::json choice_item_to_json(const ChoiceItem& it) {
  return {{"context", it.context}, {"choices", it.choices}, {"label", it.label}};
}

// One JSON object per line: {"context": ..., "choices": [...], "label": k}.
inline void save_choice_items(const std::filesystem::path& file, const std::vector<ChoiceItem>& items) {
  std::string out;
  for (const ChoiceItem& it : items) out += choice_item_to_json(it).dump() + "\n";
  write_file_atomic(file, out);
}

inline std::vector<ChoiceItem> load_choice_items(const std::filesystem::path& file) {
  const std::string text = read_file(file);
  std::vector<ChoiceItem> items;
  size_t line_no = 0, i = 0;
  while (i < text.size()) {
    size_t nl = text.find('\n', i);
    if (nl == std::string::npos) nl = text.size();
    ++line_no;
    const std::string line = text.substr(i, nl - i);
    i = nl + 1;
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      ChoiceItem it;
      it.context = j.at("context").get<std::string>();
      it.choices = j.at("choices").get<std::vector<std::string>>();
      it.label = j.at("label").get<int>();
      if (it.choices.size() < 2 || it.label < 0 || it.label >= static_cast<int>(it.choices.size()))
        throw IoError("bad choices or label");
      items.push_back(std::move(it));
    } catch (const std::exception& e) {
      throw IoError(fmt::format("{}:{}: not a multiple-choice item ({})", file.string(), line_no, e.what()));
    }
  }
  return items;
}

}  // namespace nr
