// nr/io/moe_config_json.hpp — nr::MoeConfig in config.json, and saving / loading MoE models.
//
// A mixture-of-experts checkpoint is an ordinary checkpoint directory (io/checkpoint.hpp) whose
// config.json carries the MoeConfig under "nr" -> "moe":
//   "nr": { ..., "moe": { "num_experts": 8, "top_k": 2, "expert_hidden": 176, "router": "mlp",
//           "router_hidden": 128, "normalize_top_k": false, "mi_weight": 0.0,
//           "concentration_weight": 0.0, "attention_experts": 4, "attention_top_k": 2,
//           "attention_expert_heads": 4, "layer_experts": [8, 5, 6, 8],
//           "new_experts": { "count": 0, "routing": "shared_top_k", "top_k": 1,
//                            "routing_reg_weight": 0.0, "init_std": 0.02 } } }
// Defaults resolved against the ModelConfig (expert_hidden, router_hidden, attention_expert_heads)
// are written resolved, so the file states the actual sizes. Reading: missing keys keep
// MoeConfig's defaults; a key of the wrong type, an unknown router or routing name, or a config
// that fails MoeConfig::validate throws IoError naming the file and the field.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/io/checkpoint.hpp"
#include "nr/io/model_config_json.hpp"
#include "nr/nn/moe_config.hpp"

namespace nr {

inline nlohmann::json moe_config_to_json(const MoeConfig& m, const ModelConfig& c) {
  m.validate(c);
  nlohmann::json j = nlohmann::json::object();
  j["num_experts"] = m.num_experts;
  j["top_k"] = m.top_k;
  j["expert_hidden"] = m.hidden_of(c);
  j["router"] = router_kind_name(m.router);
  j["router_hidden"] = m.router_hidden_of(c);
  j["normalize_top_k"] = m.normalize_top_k;
  j["mi_weight"] = m.mi_weight;
  j["concentration_weight"] = m.concentration_weight;
  j["attention_experts"] = m.attention_experts;
  j["attention_top_k"] = m.attention_top_k;
  j["attention_expert_heads"] = m.attention_heads_of(c);
  j["layer_experts"] = m.layer_experts;
  j["new_experts"] = {{"count", m.new_experts.count},
                      {"routing", new_expert_routing_name(m.new_experts.routing)},
                      {"top_k", m.new_experts.top_k},
                      {"routing_reg_weight", m.new_experts.routing_reg_weight},
                      {"init_std", m.new_experts.init_std}};
  return j;
}

inline MoeConfig moe_config_from_json(const nlohmann::json& j, const ModelConfig& c, const std::string& source) {
  if (!j.is_object())
    throw IoError(fmt::format("config file '{}': \"moe\" is a JSON {}, not an object", source, j.type_name()));
  const detail::ConfigFieldReader r(j, source);
  MoeConfig m;
  r.read("num_experts", m.num_experts, false);
  r.read("top_k", m.top_k, false);
  r.read("expert_hidden", m.expert_hidden, false);
  r.read("router_hidden", m.router_hidden, false);
  r.read("normalize_top_k", m.normalize_top_k, false);
  r.read("mi_weight", m.mi_weight, false);
  r.read("concentration_weight", m.concentration_weight, false);
  r.read("attention_experts", m.attention_experts, false);
  r.read("attention_top_k", m.attention_top_k, false);
  r.read("attention_expert_heads", m.attention_expert_heads, false);
  try {
    std::string router = router_kind_name(m.router);
    r.read("router", router, false);
    m.router = router_kind_from_name(router);
    if (const nlohmann::json* le = r.find("layer_experts", false)) {
      if (!le->is_array()) throw r.wrong_type("layer_experts", *le, "an array of integers");
      for (const nlohmann::json& v : *le) {
        if (!v.is_number_integer()) throw r.wrong_type("layer_experts", *le, "an array of integers");
        m.layer_experts.push_back(v.get<int64_t>());
      }
    }
    if (const nlohmann::json* ne = r.find("new_experts", false)) {
      if (!ne->is_object()) throw r.wrong_type("new_experts", *ne, "an object");
      const detail::ConfigFieldReader rn(*ne, source);
      rn.read("count", m.new_experts.count, false);
      std::string routing = new_expert_routing_name(m.new_experts.routing);
      rn.read("routing", routing, false);
      m.new_experts.routing = new_expert_routing_from_name(routing);
      rn.read("top_k", m.new_experts.top_k, false);
      rn.read("routing_reg_weight", m.new_experts.routing_reg_weight, false);
      rn.read("init_std", m.new_experts.init_std, false);
    }
    m.validate(c);
  } catch (const ValueError& e) {
    throw IoError(fmt::format("config file '{}': \"moe\": {}", source, e.what()));
  }
  return m;
}

// save_model with the MoeConfig stored under "nr" -> "moe" (next to the other nr_fields).
template <Module M>
void save_moe_model(const fs::path& dir, M& model, const ModelConfig& config, const MoeConfig& moe,
                    nlohmann::json nr_fields = nlohmann::json::object()) {
  nr_fields["moe"] = moe_config_to_json(moe, config);
  save_model(dir, model, config, nr_fields);
}

// The MoeConfig of a checkpoint directory's config.json (IoError when it has none).
inline MoeConfig load_moe_config(const fs::path& dir) {
  const fs::path file = dir / config_file_name;
  const ConfigJsonDocument doc = load_config_json_document(file);
  const auto nr_it = doc.json.find("nr");
  if (nr_it == doc.json.end() || !nr_it->is_object() || !nr_it->contains("moe"))
    throw IoError(fmt::format("config file '{}': no \"nr\" -> \"moe\" object: not a mixture-of-experts checkpoint",
                              file.string()));
  return moe_config_from_json(nr_it->at("moe"), doc.config, file.string());
}

}  // namespace nr
