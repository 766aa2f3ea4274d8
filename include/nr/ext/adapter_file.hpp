// nr/ext/adapter_file.hpp — an extension's weights alone: adapter_model.safetensors + adapter_config.json.
//
// A backbone extended with LoRA or adapters is its backbone plus a few new tensors. Those alone
// go into a directory, the way PEFT stores its adapters:
//   DIR/adapter_model.safetensors   the extension parameters (is_extension_parameter), F32
//   DIR/adapter_config.json         a JSON object with at least "peft_type"
// For LoRA (peft_type "LORA") the files follow PEFT, so that `PeftModel.from_pretrained(llama,
// DIR)` reads them: tensor names are "base_model.model." + nr's name, e.g.
//   base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight   (r, in)
//   base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight   (out, r)
// and the config holds PEFT's LoraConfig fields (r, lora_alpha, target_modules...: written by
// the caller, see lora_adapter_config). Adapters and gated adapters have no PEFT equivalent:
// peft_type "NR_ADAPTER", tensors under nr's names ("model.layers.N.adapter.up_proj.weight"),
// and a config naming the gate, width and site, enough to rebuild the model type.
//
// Loading is strict: every extension parameter of the model must be in the file with its shape,
// and every tensor of the file must be an extension parameter of the model. Errors (IoError)
// name the file and the tensor. The backbone is loaded separately (load_backbone).
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/ext/adapter.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/lora.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/json_text.hpp"
#include "nr/io/safetensors.hpp"
#include "nr/nn/module.hpp"

namespace nr {

inline constexpr const char* adapter_file_name = "adapter_model.safetensors";
inline constexpr const char* adapter_config_file_name = "adapter_config.json";

// The prefix of tensor names in the file: PEFT's "base_model.model." for LoRA, none otherwise.
inline std::string adapter_tensor_prefix(const nlohmann::json& config) {
  return config.value("peft_type", "") == "LORA" ? "base_model.model." : "";
}

// The adapter_config.json PEFT writes for a LoRA of `cfg` on the backbone at `base_model`.
inline nlohmann::json lora_adapter_config(const LoraConfig& cfg, const std::string& base_model) {
  const bool integral_alpha = std::floor(cfg.alpha) == cfg.alpha && std::abs(cfg.alpha) < 1e15;
  return nlohmann::json{
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", cfg.rank},
      {"lora_alpha", integral_alpha ? nlohmann::json(static_cast<int64_t>(cfg.alpha)) : nlohmann::json(cfg.alpha)},
      {"target_modules", cfg.targets},
      {"lora_dropout", 0.0},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"base_model_name_or_path", base_model},
      {"init_lora_weights", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
      {"revision", nullptr},
      {"use_rslora", false},
      {"use_dora", false},
  };
}

// Names of adapter settings as written in adapter_config.json and on nrlab's command line.
inline std::string site_name(ExtensionSite s) {
  switch (s) {
    case ExtensionSite::attention_parallel: return "attention-parallel";
    case ExtensionSite::ffn_parallel: return "ffn-parallel";
    case ExtensionSite::ffn_serial: return "ffn-serial";
    case ExtensionSite::none: break;
  }
  return "none";
}
inline ExtensionSite parse_site(const std::string& s) {
  for (ExtensionSite v : {ExtensionSite::ffn_parallel, ExtensionSite::ffn_serial, ExtensionSite::attention_parallel})
    if (s == site_name(v)) return v;
  throw ValueError(fmt::format("unknown adapter site '{}' (ffn-parallel, ffn-serial, attention-parallel)", s));
}
inline std::string init_name(AdapterInit i) { return i == AdapterInit::he ? "he" : "low-variance"; }
inline AdapterInit parse_init(const std::string& s) {
  if (s == "he") return AdapterInit::he;
  if (s == "low-variance") return AdapterInit::low_variance;
  throw ValueError(fmt::format("unknown adapter initialisation '{}' (he, low-variance)", s));
}

// The adapter_config.json of adapters with gate `Gate` (NoGate, EluGate, SigmoidGate): enough
// to rebuild the model type (gate, hidden, site) plus the training settings, for the record.
template <class Gate>
nlohmann::json nr_adapter_config(const AdapterConfig& cfg, const std::string& base_model) {
  return nlohmann::json{
      {"peft_type", "NR_ADAPTER"},
      {"task_type", "CAUSAL_LM"},
      {"gate", Gate::name},
      {"hidden", cfg.hidden},
      {"site", site_name(cfg.site)},
      {"init", init_name(cfg.init)},
      {"l1_weight", cfg.l1_weight},
      {"bce_weight", cfg.bce_weight},
      {"base_model_name_or_path", base_model},
  };
}

// Writes the extension parameters of `model` and `config` (a JSON object with a string
// "peft_type") into `dir`, created if needed. Throws ValueError when the model has no extension
// parameter or the config is not such an object.
template <Module M>
void save_adapter_file(const std::filesystem::path& dir, M& model, const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("peft_type") || !config["peft_type"].is_string())
    throw ValueError(fmt::format("save_adapter_file {}: the config must be a JSON object with a string \"peft_type\"",
                                 dir.string()));
  const std::string prefix = adapter_tensor_prefix(config);
  std::vector<std::pair<std::string, Tensor>> tensors;
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (is_extension_parameter(name)) tensors.emplace_back(prefix + name, p.value());
  }, "");
  if (tensors.empty())
    throw ValueError(fmt::format("save_adapter_file {}: the model has no extension parameter (LoRA or adapter) to save",
                                 dir.string()));
  std::filesystem::create_directories(dir);
  save_safetensors(dir / adapter_file_name, tensors, {{"format", "pt"}});
  write_file_atomic(dir / adapter_config_file_name, config.dump(2) + "\n");
}

// Parses adapter_config.json text; IoError naming `source_name` when it is not JSON (NUL bytes
// and absurd nesting included, io/json_text.hpp), not an object or has no string "peft_type".
inline nlohmann::json parse_adapter_config(std::string_view text, const std::string& source_name) {
  nlohmann::json j = parse_json_text(text, source_name);
  if (!j.is_object() || !j.contains("peft_type") || !j["peft_type"].is_string())
    throw IoError(fmt::format("{}: expected a JSON object with a string \"peft_type\"", source_name));
  return j;
}

// Reads DIR/adapter_config.json (see parse_adapter_config); IoError when it is missing.
inline nlohmann::json load_adapter_config(const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / adapter_config_file_name;
  if (!std::filesystem::is_regular_file(file))
    throw IoError(fmt::format("{} is missing: not an adapter directory (nrlab extend writes one for lora and adapter "
                              "methods)", file.string()));
  return parse_adapter_config(read_file(file), file.string());
}

// Copies DIR/adapter_model.safetensors into the extension parameters of `model` (built with the
// same extension shapes); returns the adapter config. Strict about names and shapes.
template <Module M>
nlohmann::json load_adapter_file(const std::filesystem::path& dir, M& model) {
  const nlohmann::json config = load_adapter_config(dir);
  const std::string prefix = adapter_tensor_prefix(config);
  const std::filesystem::path file = dir / adapter_file_name;
  const SafetensorsFile st = load_safetensors(file);
  std::set<std::string> used;
  int64_t expected = 0;
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (!is_extension_parameter(name)) return;
    ++expected;
    const std::string key = prefix + name;
    const auto it = st.tensors.find(key);
    if (it == st.tensors.end())
      throw IoError(fmt::format("{}: tensor '{}' is missing (the model's extension has it, shape {})", file.string(),
                                key, p.shape().str()));
    if (!(it->second.shape() == p.shape()))
      throw IoError(fmt::format("{}: tensor '{}' has shape {} but the model expects {}", file.string(), key,
                                it->second.shape().str(), p.shape().str()));
    p.value().copy_(it->second);
    used.insert(key);
  }, "");
  if (expected == 0)
    throw ValueError(fmt::format("load_adapter_file {}: the model has no extension parameter to load into",
                                 file.string()));
  for (const auto& [name, t] : st.tensors)
    if (!used.count(name))
      throw IoError(fmt::format("{}: tensor '{}' of shape {} is not an extension parameter of the model{}", file.string(),
                                name, t.shape().str(),
                                name.rfind(prefix, 0) == 0 ? "" : fmt::format(" (names must start with '{}')", prefix)));
  return config;
}

}  // namespace nr
