// nr/recipes/downstream.hpp — the downstream benchmark of the recipes: parallel multiple-choice items in
// English, French and German, built once from the aligned Debian Reference of a corpus, and
// their evaluation (the paper's "tasks", Section 4.1 "Evaluation benchmarks").
//
//   DIR/reference/{en,fr,de}/CHAPTER.txt   (written by `nrlab corpus`)
//        -> build_parallel_multiple_choice  (paragraph i = context, opening of paragraph i+1
//                                                = true choice, three other paragraphs of the
//                                                chapter = distractors; same item in every
//                                                language)
//        -> DIR/mc/{en,fr,de}.jsonl + DIR/mc/info.json
// Scoring (nr/eval/multiple_choice.hpp, as lm-evaluation-harness): each choice is scored as the
// continuation of the context; acc = argmax of the summed log-likelihood, acc_norm = argmax of
// the log-likelihood per character (the paper's "normalization"); chance = mean 1 / #choices.
// k-shot prefixes k solved items of the same language. docs/results.md describes the items.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include "nr/eval/multiple_choice.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr::recipes {

inline constexpr const char* mc_dir_name = "mc";

inline const std::vector<std::string>& mc_languages() {
  static const std::vector<std::string> langs = {"en", "fr", "de"};
  return langs;
}

// DIR/mc holds a file for every language.
inline bool has_mc_items(const std::filesystem::path& corpus) {
  for (const std::string& lang : mc_languages())
    if (!std::filesystem::exists(corpus / mc_dir_name / (lang + ".jsonl"))) return false;
  return true;
}

// The items of one DIR/mc/<lang>.jsonl file: one JSON object per line, {context, choices, label}.
inline std::vector<ChoiceItem> load_mc_file(const std::filesystem::path& file) {
  const std::string text = read_file(file);
  std::vector<ChoiceItem> items;
  std::istringstream lines(text);
  size_t line_no = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_no;
    if (line.empty()) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      ChoiceItem it;
      it.context = j.at("context").get<std::string>();
      it.choices = j.at("choices").get<std::vector<std::string>>();
      it.label = j.at("label").get<int>();
      if (it.choices.size() < 2 || it.label < 0 || it.label >= static_cast<int>(it.choices.size()))
        throw IoError("fewer than 2 choices, or a label out of range");
      items.push_back(std::move(it));
    } catch (const std::exception& e) {
      throw IoError(fmt::format("{}:{}: not a multiple-choice item ({})", file.string(), line_no, e.what()));
    }
  }
  return items;
}

// The items of each language of `langs` from DIR/mc, the first `max_items` of each (0 = all).
inline std::map<std::string, std::vector<ChoiceItem>> load_mc_items(const std::filesystem::path& mc_dir,
                                                                        const std::vector<std::string>& langs,
                                                                        int64_t max_items) {
  std::map<std::string, std::vector<ChoiceItem>> sets;
  for (const std::string& lang : langs) {
    const std::filesystem::path file = mc_dir / (lang + ".jsonl");
    if (!std::filesystem::exists(file))
      throw IoError(fmt::format("{} is missing: build the items with `nrlab corpus` (or `nrlab reproduce`, which "
                                    "builds them when missing)", file.string()));
    std::vector<ChoiceItem> items = load_mc_file(file);
    if (max_items > 0 && static_cast<int64_t>(items.size()) > max_items) items.resize(static_cast<size_t>(max_items));
    sets[lang] = std::move(items);
  }
  return sets;
}

// Multiple-choice results of `model` on each language, for each number of shots:
//   {"en": {"0": {"acc", "acc_norm", "acc_stderr", "acc_norm_stderr", "chance", "items"}, ...,
//           "acc", "acc_norm": means over the shots, "chance": ...}, ...}
// (tables.hpp mc_stderr gives the standard error of the mean from the per-shot entries.)
// `tokenizer` is the model's: context and continuation are tokenised as lm-evaluation-harness does
// (eval/multiple_choice.hpp).
template <class Model, Tokenizer Tok = ByteTokenizer>
nlohmann::json evaluate_mc(const Model& model, const std::map<std::string, std::vector<ChoiceItem>>& sets,
                           const std::vector<int>& shots, int64_t ctx, const Tok& tokenizer = {}) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [lang, items] : sets) {
    nlohmann::json j = nlohmann::json::object();
    double sum = 0.0, sum_acc = 0.0, chance = 0.0;
    for (int k : shots) {
      const MultipleChoiceResult r = evaluate_multiple_choice(model, tokenizer, items, k, ctx);
      j[std::to_string(k)] = {{"acc", r.acc},       {"acc_norm", r.acc_norm}, {"acc_stderr", r.acc_stderr},
                              {"acc_norm_stderr", r.acc_norm_stderr}, {"chance", r.chance}, {"items", r.items}};
      sum += r.acc_norm;
      sum_acc += r.acc;
      chance = r.chance;
    }
    const double n_shots = std::max<double>(1.0, static_cast<double>(shots.size()));
    j["acc_norm"] = sum / n_shots;
    j["acc"] = sum_acc / n_shots;
    j["chance"] = chance;
    out[lang] = j;
  }
  return out;
}

}  // namespace nr::recipes
