// nrlab/moe_backbone.hpp — mixture-of-experts backbones as run-time choices over compile-time
// types (ModuleFormer, Sections 3.1-3.2).
//
//   nrlab pretrain --arch moe --attention softmax          nr::MoeLlama: softmax attention with
//                                                          RoPE, SMoE FFN
//   nrlab pretrain --arch moe --attention stick-breaking   nr::StickBreakingMoe: stick-breaking
//                                                          attention (no RoPE), SMoE FFN
// The SMoE FFN of every block holds E experts of hidden width h of which the top k run per token
// (--experts, --top-k, --expert-hidden; h defaults to intermediate_size / k, the active FFN width
// of the dense model). config.json records the architecture under "nr":
//   "arch": "moe", "attention": "softmax" | "stick-breaking", "moe": { the MoeConfig }
// (io/moe_config_json.hpp), so that eval, extend (--method experts inserts new experts into the
// expert layers), prune and a resumed pretrain rebuild the same type, with per-layer expert counts
// after pruning and inserted experts after extension.
#pragma once

#include <nr/io/moe_config_json.hpp>
#include <nr/nn/moe_model.hpp>

#include "common.hpp"

namespace nrlab {

inline const std::vector<std::string>& attention_names() {
  static const std::vector<std::string> a = {"softmax", "stick-breaking"};
  return a;
}

// Whether config.json's "nr" object describes a mixture-of-experts model.
inline bool is_moe_checkpoint(const nlohmann::json& nr_fields) {
  return nr_fields.is_object() && nr_fields.contains("moe");
}

// The "arch" / "attention" / "moe" fields of config.json for a MoE model.
inline nlohmann::json moe_fields(const std::string& attention, const nr::MoeConfig& moe, const nr::ModelConfig& c) {
  return {{"arch", "moe"}, {"attention", attention}, {"moe", nr::moe_config_to_json(moe, c)}};
}

// Builds the MoE model of (config, moe, attention) with random weights from `seed` and calls
// f(model); f must return int for both model types.
template <class F>
int with_moe_model(const nr::ModelConfig& config, const nr::MoeConfig& moe, const std::string& attention, uint64_t seed,
                   F&& f) {
  if (config.hidden_act != "silu")
    throw nr::ValueError(fmt::format("mixture-of-experts models use SiLU experts; this config has hidden_act '{}'",
                                     config.hidden_act));
  if (attention == "softmax") {
    auto model = nr::make_moe_model<nr::MoeLlama>(config, moe, seed);
    return f(model);
  }
  if (attention == "stick-breaking") {
    auto model = nr::make_moe_model<nr::StickBreakingMoe>(config, moe, seed);
    return f(model);
  }
  throw nr::ValueError(fmt::format("unknown attention '{}' (softmax, stick-breaking)", attention));
}

// The MoeConfig and attention recorded in a checkpoint's "nr" object (`source` names the file).
struct MoeArch {
  nr::MoeConfig moe;
  std::string attention = "softmax";
};
inline MoeArch moe_arch_of(const nlohmann::json& nr_fields, const nr::ModelConfig& config, const std::string& source) {
  MoeArch a;
  a.moe = nr::moe_config_from_json(nr_fields.at("moe"), config, source);
  const nlohmann::json att = nr_fields.value("attention", nlohmann::json("softmax"));
  if (!att.is_string() || std::find(attention_names().begin(), attention_names().end(), att.get<std::string>()) ==
                              attention_names().end())
    throw nr::IoError(fmt::format("{}: \"attention\" must be \"softmax\" or \"stick-breaking\", got {}", source, att.dump()));
  a.attention = att.get<std::string>();
  return a;
}

}  // namespace nrlab
