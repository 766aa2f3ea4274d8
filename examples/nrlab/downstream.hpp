// nrlab/downstream.hpp — the downstream benchmark of nrlab: parallel multiple-choice items in
// English, French and German, built once from the aligned Debian Reference of a corpus, and
// their evaluation (the paper's "tasks", Section 4.1 "Evaluation benchmarks").
//
//   DIR/reference/{en,fr,de}/CHAPTER.txt   (written by `nrlab corpus`)
//        -> nr::build_parallel_multiple_choice  (paragraph i = context, opening of paragraph i+1
//                                                = true choice, three other paragraphs of the
//                                                chapter = distractors; same item in every
//                                                language)
//        -> DIR/mc/{en,fr,de}.jsonl + DIR/mc/info.json
// Scoring (nr/eval/multiple_choice.hpp, as lm-evaluation-harness): each choice is scored as the
// continuation of the context; acc = argmax of the summed log-likelihood, acc_norm = argmax of
// the log-likelihood per character (the paper's "normalization"); chance = mean 1 / #choices.
// k-shot prefixes k solved items of the same language. docs/results.md describes the items.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <nr/data/multiple_choice_builder.hpp>
#include <nr/eval/multiple_choice.hpp>
#include <nr/io/atomic_file.hpp>

namespace nrlab {

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

// Builds the parallel items from DIR/reference and writes DIR/mc/<lang>.jsonl (one JSON object
// per line: context, choices, label) and DIR/mc/info.json (the options and counts). Returns
// info.json's content.
inline nlohmann::json write_mc_items(const std::filesystem::path& corpus, const nr::MultipleChoiceOptions& o = {}) {
  const std::map<std::string, std::vector<nr::ChoiceItem>> items =
      nr::build_parallel_multiple_choice(corpus / "reference", mc_languages(), o);
  std::filesystem::create_directories(corpus / mc_dir_name);
  nlohmann::json counts = nlohmann::json::object();
  for (const std::string& lang : mc_languages()) {
    const auto it = items.find(lang);
    if (it == items.end() || it->second.empty())
      throw nr::IoError(fmt::format("multiple-choice items: no item could be built for '{}' from {}", lang,
                                    (corpus / "reference").string()));
    nr::save_choice_items(corpus / mc_dir_name / (lang + ".jsonl"), it->second);
    counts[lang] = it->second.size();
  }
  const nlohmann::json info = {{"source", "reference/{en,fr,de} (Debian Reference, aligned paragraphs)"},
                               {"languages", mc_languages()},
                               {"items", counts},
                               {"choices", o.choices},
                               {"max_items", o.max_items},
                               {"min_chars", o.min_chars},
                               {"max_context_chars", o.max_context_chars},
                               {"max_choice_chars", o.max_choice_chars},
                               {"seed", o.seed}};
  nr::write_file_atomic(corpus / mc_dir_name / "info.json", info.dump(2) + "\n");
  return info;
}

// The items of each language of `langs` from DIR/mc, the first `max_items` of each (0 = all).
inline std::map<std::string, std::vector<nr::ChoiceItem>> load_mc_items(const std::filesystem::path& mc_dir,
                                                                        const std::vector<std::string>& langs,
                                                                        int64_t max_items) {
  std::map<std::string, std::vector<nr::ChoiceItem>> sets;
  for (const std::string& lang : langs) {
    const std::filesystem::path file = mc_dir / (lang + ".jsonl");
    if (!std::filesystem::exists(file))
      throw nr::IoError(fmt::format("{} is missing: build the items with `nrlab corpus` (or `nrlab reproduce`, which "
                                    "builds them when missing)", file.string()));
    std::vector<nr::ChoiceItem> items = nr::load_choice_items(file);
    if (max_items > 0 && static_cast<int64_t>(items.size()) > max_items) items.resize(static_cast<size_t>(max_items));
    sets[lang] = std::move(items);
  }
  return sets;
}

// Multiple-choice results of `model` on each language, for each number of shots:
//   {"en": {"0": {"acc", "acc_norm", "chance", "items"}, ..., "acc_norm": mean over the shots,
//           "chance": ...}, ...}
template <class Model>
nlohmann::json evaluate_mc(const Model& model, const std::map<std::string, std::vector<nr::ChoiceItem>>& sets,
                           const std::vector<int>& shots, int64_t ctx) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [lang, items] : sets) {
    nlohmann::json j = nlohmann::json::object();
    double sum = 0.0, chance = 0.0;
    for (int k : shots) {
      const nr::MultipleChoiceResult r = nr::evaluate_multiple_choice(model, items, k, ctx);
      j[std::to_string(k)] = {{"acc", r.acc}, {"acc_norm", r.acc_norm}, {"chance", r.chance}, {"items", r.items}};
      sum += r.acc_norm;
      chance = r.chance;
    }
    j["acc_norm"] = shots.empty() ? 0.0 : sum / static_cast<double>(shots.size());
    j["chance"] = chance;
    out[lang] = j;
  }
  return out;
}

}  // namespace nrlab
