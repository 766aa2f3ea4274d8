// nr/recipes/methods/migu.hpp — MIGU (Du et al., 2024): the projections record their output
// magnitudes in the forward pass, and before every optimizer step a mask keeps the update of the
// rows with the largest magnitudes only, masking a fraction T of each weight's rows
// (optim/gradient_mask.hpp). `migu-finetune` masks full finetuning, `migu-lora` LoRA's A and B.
#pragma once

#include "nr/ext/migu.hpp"
#include "nr/recipes/methods/lora.hpp"

namespace nr::recipes {

inline constexpr double default_migu_threshold = 0.7;  // T, the paper's best setting

struct MiguFinetuneMethod {
  static constexpr std::string_view name = "migu-finetune";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "migu-finetune", .label = "MIGU finetuning", .family = MethodFamily::full,
                              .trains_backbone = true, .migu = true,
                              .summary = "nr::MiguLlama + MiguMask; every weight, top (1 - T) rows of each",
                              .fields = {"migu_threshold"},
                              .defaults = {.lr = 1e-3, .migu_threshold = default_migu_threshold}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec&, const ModelConfig& config, uint64_t seed, F&& f) {
    MiguLlama model(config, seed);
    return f(model);
  }
};

struct MiguLoraMethod {
  static constexpr std::string_view name = "migu-lora";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "migu-lora", .label = "MIGU LoRA", .family = MethodFamily::lora,
                              .trains_backbone = false, .migu = true,
                              .summary = "nr::MiguLoraLlama + enable_lora + MiguMask; lora_A, lora_B, top (1 - T) rows",
                              .fields = {"rank", "lora_alpha", "lora_targets", "migu_threshold"},
                              .defaults = {.lr = 3e-3, .lora_targets = default_lora_targets(),
                                           .migu_threshold = default_migu_threshold}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_lora_model<MiguLoraLlama>(spec, config, seed, f);
  }
};

// Whether the model's projections record output magnitudes for a MIGU gradient mask.
template <class Model>
constexpr bool is_migu_model() {
  return std::is_same_v<Model, MiguLlama> || std::is_same_v<Model, MiguLoraLlama>;
}

}  // namespace nr::recipes
