// nr/io/checkpoint.hpp — checkpoint directories: save, load, resume.
//
// A checkpoint directory holds
//   model.safetensors           the weights, Hugging Face Llama tensor names, F32;
//   config.json                 the Hugging Face style model config (plus nr's own fields
//                               under "nr": the extension method and its settings);
//   training_state.safetensors  everything needed to resume, in ONE file: the weights again,
//                               the AdamW moments ("optimizer.<param>.exp_avg" / ".exp_avg_sq")
//                               and the step in the metadata.
// Every file is written atomically (temporary file + rename), so a run killed at any moment
// leaves either the previous or the new version of each file, never a torn one. Resuming reads
// only training_state.safetensors, which is self-consistent by construction; model.safetensors
// is for users and other tools.
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/io/model_config_json.hpp"
#include "nr/io/safetensors.hpp"
#include "nr/nn/module.hpp"
#include "nr/optim/adamw.hpp"

namespace nr {

namespace fs = std::filesystem;

inline constexpr const char* model_file_name = "model.safetensors";
inline constexpr const char* config_file_name = "config.json";
inline constexpr const char* training_state_file_name = "training_state.safetensors";

// Copies tensors into a module's parameters by name. Every parameter must be present with the
// same shape; with `allow_extra` false, a tensor the module does not have is an error too.
// Errors name the file, the tensor and both shapes.
template <Module M>
void assign_parameters(M& model, const std::map<std::string, Tensor>& tensors, const std::string& source,
                       bool allow_extra = false, const std::string& prefix = "") {
  std::set<std::string> used;
  std::vector<std::string> missing;
  model.visit_parameters([&](const std::string& name, Var& p) {
    const auto it = tensors.find(prefix + name);
    if (it == tensors.end()) {
      missing.push_back(name);
      return;
    }
    if (!(it->second.shape() == p.shape()))
      throw IoError(fmt::format("{}: tensor '{}' has shape {} but the model expects {}", source, it->first,
                                it->second.shape().str(), p.shape().str()));
    p.value().copy_(it->second);
    used.insert(it->first);
  }, "");
  if (!missing.empty())
    throw IoError(fmt::format("{}: tensor '{}' is missing ({} of the model's parameters are absent)", source,
                              prefix + missing.front(), missing.size()));
  if (!allow_extra)
    for (const auto& [name, t] : tensors)
      if (name.rfind(prefix, 0) == 0 && !used.count(name))
        throw IoError(fmt::format("{}: unexpected tensor '{}' of shape {} (the model has no such parameter)", source,
                                  name, t.shape().str()));
}

template <Module M>
std::vector<std::pair<std::string, Tensor>> parameter_tensors(M& model, const std::string& prefix = "",
                                                              bool trainable_only = false) {
  std::vector<std::pair<std::string, Tensor>> out;
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (!trainable_only || p.requires_grad()) out.emplace_back(prefix + name, p.value());
  }, "");
  return out;
}

// Writes model.safetensors and config.json into `dir` (created if needed); `nr_fields` (a JSON
// object: the method and its settings) is stored under the config's "nr" key.
template <Module M>
void save_model(const fs::path& dir, M& model, const ModelConfig& config, const nlohmann::json& nr_fields = nlohmann::json::object()) {
  fs::create_directories(dir);
  save_safetensors(dir / model_file_name, parameter_tensors(model), {{"format", "pt"}});
  save_config_json(dir / config_file_name, config,
                   nr_fields.empty() ? nlohmann::json::object() : nlohmann::json{{"nr", nr_fields}});
}

// Reads model.safetensors of `dir` into `model` (whose shapes must match).
template <Module M>
void load_model_weights(const fs::path& dir, M& model, bool allow_extra = false) {
  const fs::path file = dir / model_file_name;
  const SafetensorsFile st = load_safetensors(file);
  assign_parameters(model, st.tensors, file.string(), allow_extra);
}

// Writes training_state.safetensors: weights, AdamW moments, step.
// Writes a complete checkpoint: model.safetensors and config.json first, training_state last.
// The order matters when a run is killed mid-save: resuming trusts training_state's step, so it
// must never get ahead of the model file (a resumed run at its last step would then exit without
// rewriting a stale model.safetensors). Extra files of the caller (an adapter file) go between,
// through `before_state`.
// With `trainable_only`, the training state holds the trainable weights only (metadata
// "weights": "trainable"): the frozen ones are the backbone's, which a resume loads first anyway,
// and a real backbone would double the file (SmolLM2: 540 MB of FP32 weights that never change).
template <Module M, class BeforeState = void (*)()>
void save_checkpoint(const fs::path& dir, M& model, const ModelConfig& config, const nlohmann::json& nr_fields,
                     AdamW& opt, int64_t step, const std::map<std::string, std::string>& state_metadata = {},
                     BeforeState&& before_state = [] {}, bool trainable_only = false) {
  save_model(dir, model, config, nr_fields);
  before_state();
  save_training_state(dir, model, opt, step, state_metadata, trainable_only);
}

template <Module M>
void save_training_state(const fs::path& dir, M& model, AdamW& opt, int64_t step,
                         const std::map<std::string, std::string>& extra_metadata = {}, bool trainable_only = false) {
  fs::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors = parameter_tensors(model, "", trainable_only);
  for (AdamW::Slot& s : opt.slots()) {
    tensors.emplace_back("optimizer." + s.name + ".exp_avg", s.exp_avg);
    tensors.emplace_back("optimizer." + s.name + ".exp_avg_sq", s.exp_avg_sq);
  }
  std::map<std::string, std::string> meta = extra_metadata;
  meta["step"] = std::to_string(step);
  meta["optimizer_step"] = std::to_string(opt.step_count());
  meta["format"] = "nr-training-state-1";
  if (trainable_only) meta["weights"] = "trainable";
  save_safetensors(dir / training_state_file_name, tensors, meta);
}

inline bool has_training_state(const fs::path& dir) { return fs::exists(dir / training_state_file_name); }

// Restores weights, moments and step from training_state.safetensors; returns the step. Strict:
// every parameter (every trainable one for a "weights": "trainable" state; the frozen ones keep
// the values the model has) and every moment of a trained parameter must be there with its
// shape, nothing else may be, and "step" / "optimizer_step" must be non-negative integers;
// IoError names the file and the tensor or key otherwise.
template <Module M>
int64_t load_training_state(const fs::path& dir, M& model, AdamW& opt) {
  const fs::path file = dir / training_state_file_name;
  const SafetensorsFile st = load_safetensors(file);
  std::map<std::string, Tensor> weights, moments;
  for (const auto& [name, t] : st.tensors) (name.rfind("optimizer.", 0) == 0 ? moments : weights).emplace(name, t);
  // The whole string must be a non-negative decimal integer: std::stoll took "12x" for 12 and
  // let a negative step through (found by tests/test_hostile_checkpoints.cpp).
  auto meta_int = [&](const char* key) -> int64_t {
    const auto it = st.metadata.find(key);
    if (it == st.metadata.end()) throw IoError(fmt::format("{}: metadata '{}' is missing", file.string(), key));
    const std::string& text = it->second;
    int64_t value = -1;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < 0)
      throw IoError(fmt::format("{}: metadata '{}' is not a non-negative integer: '{}'", file.string(), key, text));
    return value;
  };
  const int64_t step = meta_int("step");
  const int64_t optimizer_step = meta_int("optimizer_step");
  const auto kind = st.metadata.find("weights");
  if (kind == st.metadata.end()) {
    assign_parameters(model, weights, file.string());
  } else if (kind->second == "trainable") {
    std::set<std::string> trained;
    model.visit_parameters([&](const std::string& name, Var& p) {
      if (!p.requires_grad()) return;
      const auto it = weights.find(name);
      if (it == weights.end()) throw IoError(fmt::format("{}: trainable tensor '{}' is missing", file.string(), name));
      if (!(it->second.shape() == p.shape()))
        throw IoError(fmt::format("{}: tensor '{}' has shape {} but the model expects {}", file.string(), name,
                                  it->second.shape().str(), p.shape().str()));
      p.value().copy_(it->second);
      trained.insert(name);
    }, "");
    for (const auto& [name, t] : weights)
      if (!trained.count(name))
        throw IoError(fmt::format("{}: unexpected tensor '{}' of shape {} (no trainable parameter of that name)",
                                  file.string(), name, t.shape().str()));
  } else {
    throw IoError(fmt::format("{}: metadata 'weights' is '{}', expected 'trainable' or absent", file.string(), kind->second));
  }
  std::set<std::string> used;
  for (AdamW::Slot& s : opt.slots()) {
    for (auto [suffix, target] : {std::pair<const char*, Tensor*>{".exp_avg", &s.exp_avg}, {".exp_avg_sq", &s.exp_avg_sq}}) {
      const std::string key = "optimizer." + s.name + suffix;
      const auto it = moments.find(key);
      if (it == moments.end()) throw IoError(fmt::format("{}: optimizer tensor '{}' is missing", file.string(), key));
      if (!(it->second.shape() == target->shape()))
        throw IoError(fmt::format("{}: optimizer tensor '{}' has shape {}, expected {}", file.string(), key,
                                  it->second.shape().str(), target->shape().str()));
      target->copy_(it->second);
      used.insert(key);
    }
  }
  // Moments of a parameter the optimizer does not train mean the file is from another setup
  // (another model or other trainable parameters): refuse, as for weights.
  for (const auto& [name, t] : moments)
    if (!used.count(name))
      throw IoError(fmt::format("{}: unexpected optimizer tensor '{}' of shape {} (no trainable parameter of that name)",
                                file.string(), name, t.shape().str()));
  opt.set_step_count(optimizer_step);
  return step;
}

}  // namespace nr
