// nr/ext/backbone.hpp — loading a pretrained backbone into an extended model, and freezing it.
//
// An extended model has every parameter of its backbone, under the same Hugging Face names, plus
// new ones (adapters "model.layers.N.adapter.*", LoRA "*.lora_A.weight" / "*.lora_B.weight",
// experts...). Loading copies each backbone tensor into the parameter of the same name (shapes
// must agree) and leaves the new parameters as initialised. Every tensor of the file must find
// its parameter, and every parameter missing from the file must be a new one: anything else
// means the checkpoint is not this model's backbone, and the error names the tensor.
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/io/checkpoint.hpp"

namespace nr {

// Whether a parameter name belongs to an extension rather than to the backbone.
inline bool is_extension_parameter(const std::string& name) {
  return name.find(".adapter.") != std::string::npos || name.find(".lora_A.") != std::string::npos ||
         name.find(".lora_B.") != std::string::npos || name.find(".new_experts.") != std::string::npos;
}

// Copies backbone tensors (Hugging Face names, as from any file format) into `model`; returns the
// names of the new parameters. `source` names the file in errors.
template <Module M>
std::vector<std::string> load_backbone_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source,
                                               M& model) {
  std::set<std::string> used;
  std::vector<std::string> fresh;
  model.visit_parameters([&](const std::string& name, Var& p) {
    const auto it = tensors.find(name);
    if (it == tensors.end()) {
      if (!is_extension_parameter(name))
        throw IoError(fmt::format("{}: backbone tensor '{}' is missing", source, name));
      fresh.push_back(name);
      return;
    }
    if (!(it->second.shape() == p.shape()))
      throw IoError(fmt::format("{}: tensor '{}' has shape {} but the model expects {}", source, name,
                                it->second.shape().str(), p.shape().str()));
    p.value().copy_(it->second);
    used.insert(name);
  }, "");
  for (const auto& [name, t] : tensors)
    if (!used.count(name))
      throw IoError(fmt::format("{}: tensor '{}' of shape {} has no parameter in the extended model", source,
                                name, t.shape().str()));
  return fresh;
}

// Copies the backbone weights of the nr checkpoint `dir` (model.safetensors) into `model`.
template <Module M>
std::vector<std::string> load_backbone(const std::filesystem::path& dir, M& model) {
  const std::filesystem::path file = dir / model_file_name;
  return load_backbone_tensors(load_safetensors(file).tensors, file.string(), model);
}

// Freezes the backbone: only extension parameters stay trainable. Returns the trainable count.
template <Module M>
int64_t freeze_backbone(M& model) {
  int64_t trainable = 0;
  model.visit_parameters([&](const std::string& name, Var& p) {
    const bool train = is_extension_parameter(name);
    p.set_requires_grad(train);
    if (train) trainable += p.numel();
  }, "");
  return trainable;
}

}  // namespace nr
