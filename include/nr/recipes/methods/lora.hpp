// nr/recipes/methods/lora.hpp — `lora`: rank-r updates y = x W^T + (alpha / r) (x A^T) B^T of the
// target projections (default: the FFN's gate, up and down), W frozen (ext/lora.hpp).
// The rank comes from the budget when not given: the r whose A and B make `extra` of the
// backbone's parameters (ext/budget.hpp); lora_alpha defaults to 2 r (scaling 2).
#pragma once

#include "nr/core/rng.hpp"
#include "nr/ext/budget.hpp"
#include "nr/ext/lora.hpp"
#include "nr/nn/module.hpp"
#include "nr/recipes/method.hpp"
#include "nr/recipes/seeds.hpp"

namespace nr::recipes {

inline const std::vector<std::string>& default_lora_targets() {
  static const std::vector<std::string> t = {"gate_proj", "up_proj", "down_proj"};
  return t;
}

// Builds LoraModel (LoraLlama or MiguLoraLlama) over `config`, sizes the rank from spec.extra when
// it is empty, enables LoRA from the `lora` seed stream and calls f(model).
template <class LoraModel, class F>
auto build_lora_model(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
  LoraModel model(config, seed);
  if (!spec.rank) {
    LoraConfig probe = spec.lora_config();
    probe.rank = 1;
    probe.validate();
    spec.rank = lora_rank_for_budget(spec.extra, count_parameters(model), lora_params_per_rank(model, probe));
  }
  if (!spec.lora_alpha) spec.lora_alpha = 2.0 * static_cast<double>(*spec.rank);
  Rng rng(derive_seed(seed, SeedStream::lora));
  enable_lora(model, spec.lora_config(), rng);
  return f(model);
}

struct LoraMethod {
  static constexpr std::string_view name = "lora";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "lora", .label = "LoRA", .family = MethodFamily::lora,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::LoraLlama + enable_lora; lora_A, lora_B train",
                              .fields = {"rank", "lora_alpha", "lora_targets"},
                              .defaults = {.lr = 3e-3, .lora_targets = default_lora_targets()}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_lora_model<LoraLlama>(spec, config, seed, f);
  }
};

}  // namespace nr::recipes
