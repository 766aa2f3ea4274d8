// nr/io/hf_directory.hpp — a Hugging Face Llama model directory as a PretrainedModel.
//
// A directory that transformers' save_pretrained writes (or one downloaded from the Hub) holds
//   config.json                      the LlamaConfig (io/model_config_json.hpp reads it)
//   model.safetensors                all the weights in one file, or
//   model.safetensors.index.json     for sharded weights: {"metadata": {...},
//                                      "weight_map": {"<tensor name>": "<shard file name>", ...}}
//   model-00001-of-0000N.safetensors the shards the weight map names
//   tokenizer.json, generation_config.json, ...   (not read here)
// Tensors may be F32, F16 or BF16 (io/safetensors.hpp widens them to F32 exactly).
//
// What is accepted: model_type "llama" (or none), hidden_act "silu", plain RoPE, no biases,
// head_dim = hidden_size / num_attention_heads (the config reader refuses the rest, because nr
// would silently compute something else). With tie_word_embeddings the output head reads
// "model.embed_tokens.weight": an "lm_head.weight" that some writers add is dropped when it
// equals the embedding and refused when it differs (the two cannot both be honoured).
//
// When both model.safetensors and the index exist, model.safetensors is read (as transformers
// does). The index is treated as hostile: every shard must be a plain file name in the same
// directory (no folder, no "..", not absolute), every listed tensor must be listed once (a name
// given twice in weight_map is refused, where a JSON parser would keep the last) and found in
// the shard it is mapped to and in no other shard, and every tensor of a shard must be listed.
// Every problem throws nr::IoError naming the file and the problem (NumericError for a NaN or
// Inf weight, from the safetensors reader).
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/json_text.hpp"
#include "nr/io/model_config_json.hpp"
#include "nr/io/pretrained.hpp"
#include "nr/io/safetensors.hpp"

namespace nr {

inline constexpr const char* hf_config_file_name = "config.json";
inline constexpr const char* hf_weights_file_name = "model.safetensors";
inline constexpr const char* hf_index_file_name = "model.safetensors.index.json";

namespace detail {

inline bool is_regular_file_noexcept(const std::filesystem::path& p) {
  std::error_code ec;
  return std::filesystem::is_regular_file(p, ec);
}

// Parses model.safetensors.index.json text into tensor -> shard file name. `where` names the
// file in messages.
inline std::map<std::string, std::string> parse_hf_index(std::string_view text, const std::string& where) {
  // Duplicate keys are an error; nlohmann would silently keep the last one.
  const nlohmann::json root = parse_json_unique_keys(
      text, where, json_max_depth, [](const std::vector<std::string>& path, const std::string& key) {
        if (path == std::vector<std::string>{"weight_map"}) return fmt::format("tensor '{}' is listed twice in weight_map", key);
        return fmt::format("key '{}' appears twice", key);
      });
  if (!root.is_object()) throw IoError(fmt::format("{}: the document is a JSON {}, not an object", where, root.type_name()));
  const auto wm = root.find("weight_map");
  if (wm == root.end()) throw IoError(fmt::format("{}: no \"weight_map\" object", where));
  if (!wm->is_object())
    throw IoError(fmt::format("{}: \"weight_map\" is a JSON {}, not an object", where, wm->type_name()));
  if (wm->empty()) throw IoError(fmt::format("{}: \"weight_map\" lists no tensor", where));
  std::map<std::string, std::string> map;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      throw IoError(fmt::format("{}: tensor '{}' maps to a JSON {}, not a shard file name", where, it.key(),
                                it.value().type_name()));
    const std::string shard = it.value().get<std::string>();
    // A plain file name in the index's own directory: nothing that could reach elsewhere.
    const bool plain = !shard.empty() && shard != "." && shard != ".." &&
                       shard.find_first_of(std::string_view("/\\:\0", 4)) == std::string::npos;
    if (!plain)
      throw IoError(fmt::format("{}: tensor '{}' maps to shard '{}', which is not a plain file name in the "
                                "directory of the index (no folders, no '..')",
                                where, it.key(), shard));
    map.emplace(it.key(), shard);
  }
  return map;
}

}  // namespace detail

// True when `dir` is a directory with a config.json and either model.safetensors or
// model.safetensors.index.json (what load_hf_directory needs). Never throws.
inline bool is_hf_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return false;
  return detail::is_regular_file_noexcept(dir / hf_config_file_name) &&
         (detail::is_regular_file_noexcept(dir / hf_weights_file_name) ||
          detail::is_regular_file_noexcept(dir / hf_index_file_name));
}

// Reads a Hugging Face Llama directory: config + every tensor as F32 under its HF name.
inline PretrainedModel load_hf_directory(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw IoError(fmt::format("Hugging Face model directory '{}': {}", dir.string(),
                              fs::exists(dir, ec) ? "not a directory" : "does not exist"));
  PretrainedModel m;
  m.source = dir.string();

  // ---- config.json ---------------------------------------------------------------------------
  const fs::path config_path = dir / hf_config_file_name;
  if (!detail::is_regular_file_noexcept(config_path))
    throw IoError(fmt::format("Hugging Face model directory '{}': no {}", dir.string(), hf_config_file_name));
  const ConfigJsonDocument doc = load_config_json_document(config_path);
  m.config = doc.config;
  if (const auto t = doc.json.find("model_type"); t != doc.json.end() && !t->is_null() &&
                                                  !(t->is_string() && t->get<std::string>() == "llama"))
    throw IoError(fmt::format("config file '{}': model_type {} is not supported (nr reads Llama models: \"llama\")",
                              config_path.string(), t->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  if (m.config.hidden_act != "silu")
    throw IoError(fmt::format("config file '{}': hidden_act '{}' is not supported for a Llama model (only \"silu\")",
                              config_path.string(), m.config.hidden_act));

  // ---- the weights -----------------------------------------------------------------------------
  const fs::path single = dir / hf_weights_file_name;
  const fs::path index_path = dir / hf_index_file_name;
  if (detail::is_regular_file_noexcept(single)) {
    m.tensors = load_safetensors(single).tensors;
  } else if (detail::is_regular_file_noexcept(index_path)) {
    const std::string where = fmt::format("safetensors index '{}'", index_path.string());
    const std::map<std::string, std::string> weight_map = detail::parse_hf_index(read_file(index_path), where);
    std::map<std::string, std::vector<std::string>> by_shard;  // shard -> the tensors mapped to it
    for (const auto& [tensor, shard] : weight_map) by_shard[shard].push_back(tensor);
    for (const auto& [shard, listed] : by_shard)  // every shard there before reading any
      if (!detail::is_regular_file_noexcept(dir / shard))
        throw IoError(fmt::format("{}: shard '{}' (holding '{}' and {} more tensor(s)) is missing from '{}'", where,
                                  shard, listed.front(), listed.size() - 1, dir.string()));
    for (const auto& [shard, listed] : by_shard) {
      SafetensorsFile file = load_safetensors(dir / shard);
      for (const std::string& tensor : listed)
        if (!file.contains(tensor))
          throw IoError(fmt::format("{}: tensor '{}' is mapped to shard '{}', which does not hold it", where, tensor,
                                    shard));
      for (auto& [name, t] : file.tensors) {
        const auto it = weight_map.find(name);
        if (it == weight_map.end())
          throw IoError(fmt::format("{}: shard '{}' holds tensor '{}', which weight_map does not list", where, shard,
                                    name));
        if (it->second != shard)
          throw IoError(fmt::format("{}: tensor '{}' is in shard '{}' too, but weight_map maps it to '{}'", where,
                                    name, shard, it->second));
        m.tensors.emplace(name, std::move(t));
      }
    }
  } else {
    throw IoError(fmt::format("Hugging Face model directory '{}': neither {} nor {}", dir.string(),
                              hf_weights_file_name, hf_index_file_name));
  }

  // ---- tied embeddings ---------------------------------------------------------------------------
  if (m.config.tie_word_embeddings) {
    const auto head = m.tensors.find("lm_head.weight");
    const auto embed = m.tensors.find("model.embed_tokens.weight");
    if (head != m.tensors.end()) {
      bool same = embed != m.tensors.end() && head->second.shape() == embed->second.shape();
      if (same) {
        const Tensor a = head->second.contiguous(), b = embed->second.contiguous();  // (V, C) both
        same = std::equal(a.data(), a.data() + a.numel(), b.data());
      }
      if (!same)
        throw IoError(fmt::format("Hugging Face model directory '{}': tie_word_embeddings is true but "
                                  "'lm_head.weight' differs from 'model.embed_tokens.weight'",
                                  dir.string()));
      m.tensors.erase(head);
    }
  } else if (!m.tensors.count("lm_head.weight")) {
    throw IoError(fmt::format("Hugging Face model directory '{}': no 'lm_head.weight' and tie_word_embeddings is "
                              "false",
                              dir.string()));
  }
  return m;
}

}  // namespace nr
