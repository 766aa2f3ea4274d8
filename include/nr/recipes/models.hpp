// nr/recipes/models.hpp — backbone types chosen at run time from a config: the dense Llama or
// Gemma-style backbone (by hidden_act) and the mixture-of-experts backbones of ModuleFormer
// (Sections 3.1-3.2), each handed to a generic lambda.
//
//   with_model(config, seed, f)                          nr::Llama (silu) or GemmaStyle (gelu)
//   with_moe_model(config, moe, "softmax", seed, f)      nr::MoeLlama: softmax attention + RoPE, SMoE FFN
//   with_moe_model(config, moe, "stick-breaking", ...)   nr::StickBreakingMoe (no RoPE), SMoE FFN
// config.json records a MoE architecture under "nr": "arch": "moe", "attention", "moe": the
// MoeConfig (io/moe_config_json.hpp), so that every command rebuilds the same type.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/io/moe_config_json.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/moe_model.hpp"

namespace nr::recipes {

// Creates the backbone type named by config.hidden_act and returns f(model).
template <class F>
decltype(auto) with_model(const ModelConfig& config, uint64_t seed, F&& f) {
  if (config.hidden_act == "silu") {
    Llama model(config, seed);
    return f(model);
  }
  LanguageModel<GemmaStyleBlock> model(config, seed);
  return f(model);
}

inline const std::vector<std::string>& attention_names() {
  static const std::vector<std::string> a = {"softmax", "stick-breaking"};
  return a;
}

// Whether config.json's "nr" object describes a mixture-of-experts model.
inline bool is_moe_checkpoint(const nlohmann::json& nr_fields) {
  return nr_fields.is_object() && nr_fields.contains("moe");
}

// The "arch" / "attention" / "moe" fields of config.json for a MoE model.
inline nlohmann::json moe_fields(const std::string& attention, const MoeConfig& moe, const ModelConfig& c) {
  return {{"arch", "moe"}, {"attention", attention}, {"moe", moe_config_to_json(moe, c)}};
}

// Builds the MoE model of (config, moe, attention) with random weights from `seed` and returns
// f(model); f must return the same type for both model types.
template <class F>
auto with_moe_model(const ModelConfig& config, const MoeConfig& moe, const std::string& attention, uint64_t seed,
                    F&& f) {
  if (config.hidden_act != "silu")
    throw ValueError(fmt::format("mixture-of-experts models use SiLU experts; this config has hidden_act '{}'",
                                 config.hidden_act));
  if (attention == "stick-breaking") {
    auto model = make_moe_model<StickBreakingMoe>(config, moe, seed);
    return f(model);
  }
  if (attention != "softmax")
    throw ValueError(fmt::format("unknown attention '{}' (softmax, stick-breaking)", attention));
  auto model = make_moe_model<MoeLlama>(config, moe, seed);
  return f(model);
}

// The MoeConfig and attention recorded in a checkpoint's "nr" object (`source` names the file).
struct MoeArch {
  MoeConfig moe;
  std::string attention = "softmax";
};
inline MoeArch moe_arch_of(const nlohmann::json& nr_fields, const ModelConfig& config, const std::string& source) {
  MoeArch a;
  a.moe = moe_config_from_json(nr_fields.at("moe"), config, source);
  const nlohmann::json att = nr_fields.value("attention", nlohmann::json("softmax"));
  if (!att.is_string() || std::find(attention_names().begin(), attention_names().end(), att.get<std::string>()) ==
                              attention_names().end())
    throw IoError(fmt::format("{}: \"attention\" must be \"softmax\" or \"stick-breaking\", got {}", source, att.dump()));
  a.attention = att.get<std::string>();
  return a;
}

}  // namespace nr::recipes
