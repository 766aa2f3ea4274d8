// nrlab/downstream.hpp — nrlab's downstream benchmark items: parallel multiple-choice items in
// English, French and German, built once from the aligned Debian Reference of a corpus (the
// corpus tooling), read and scored by nr/recipes/downstream.hpp.
//
//   DIR/reference/{en,fr,de}/CHAPTER.txt   (written by `nrlab corpus`)
//        -> nr::build_parallel_multiple_choice  (paragraph i = context, opening of paragraph i+1
//                                                = true choice, three other paragraphs of the
//                                                chapter = distractors; same item in every
//                                                language)
//        -> DIR/mc/{en,fr,de}.jsonl + DIR/mc/info.json
#pragma once

#include <filesystem>

#include "corpus/multiple_choice_builder.hpp"
#include <nr/recipes/downstream.hpp>

namespace nrlab {

using nr::recipes::mc_dir_name;
using nr::recipes::mc_languages;

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

}  // namespace nrlab
