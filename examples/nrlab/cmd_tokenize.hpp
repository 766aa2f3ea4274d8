// nrlab/cmd_tokenize.hpp — `nrlab tokenize`: the token ids of a text under a model's tokenizer.
//
//   nrlab tokenize --checkpoint X --text FILE      one JSON line {"ids": [...], "tokens": N, "bytes": B}
// X is a GGUF file (its BPE), a Hugging Face directory (its tokenizer.json) or an nr checkpoint
// (bytes): nr::recipes::model_tokenizer. No special tokens are added.
#pragma once

#include "common.hpp"

#include <nr/recipes/load.hpp>

namespace nrlab {

inline void register_tokenize_command(CLI::App& app) {
  auto checkpoint = std::make_shared<std::string>();
  auto text = std::make_shared<std::string>();
  CLI::App* c = app.add_subcommand("tokenize", "Token ids of a text file under a model's tokenizer");
  c->add_option("--checkpoint", *checkpoint, "GGUF file, Hugging Face directory or nr checkpoint")->required();
  c->add_option("--text", *text, "UTF-8 text file")->required();
  c->callback([checkpoint, text]() {
    const std::string content = nr::read_file(*text);
    const std::vector<int32_t> ids = nr::recipes::model_tokenizer(*checkpoint).encode(content);
    fmt::print("{}\n", nlohmann::json{{"ids", ids}, {"tokens", ids.size()}, {"bytes", content.size()}}.dump());
  });
}

}  // namespace nrlab
