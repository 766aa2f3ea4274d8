// nr/recipes/methods/adapters.hpp — the adapter methods: a two-layer block y = W_out act(W_in x)
// (times a gate g(x) for gated adapters) beside the FFN of every layer (ext/adapter.hpp).
//
//   method          gate      init          local loss                          paper
//   adapter         none      he            -                                   vanilla adapters
//   gated-sigmoid   sigmoid   low-variance  BCE of the gate as a domain classifier (Table 6)
//   neutral         elu       low-variance  alpha * l1(adapter output) on original data  (Eq. 1)
// The gate, init, site and loss weights can be overridden (the ablations of Table 6); the width
// h comes from the budget when not given (ext/budget.hpp).
#pragma once

#include "nr/core/rng.hpp"
#include "nr/ext/adapter.hpp"
#include "nr/ext/budget.hpp"
#include "nr/nn/module.hpp"
#include "nr/recipes/method.hpp"
#include "nr/recipes/seeds.hpp"

namespace nr::recipes {

inline constexpr double default_neutral_alpha = 1.0;  // l1 weight of neutral residues
inline constexpr double default_sigmoid_bce = 1.0;    // BCE weight of gated-sigmoid

inline const std::vector<std::string>& adapter_fields() {
  static const std::vector<std::string> f = {"gate", "init", "site", "hidden", "alpha", "bce_weight"};
  return f;
}

namespace detail {
template <class Gate, class F>
auto build_adapter_with_gate(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
  AdapterLlama<Gate> model(config, seed);
  if (!spec.hidden) spec.hidden = adapter_hidden_for_budget(spec.extra, count_parameters(model), config, Gate::gated);
  Rng rng(derive_seed(seed, SeedStream::adapter));
  attach_adapters(model, spec.adapter_config(), rng);
  return f(model);
}
}  // namespace detail

// AdapterLlama<the spec's gate> with freshly initialised adapters (seed stream `adapter`).
template <class F>
auto build_adapter_model(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
  const std::string gate = spec.gate.value_or("none");
  if (gate == "elu") return detail::build_adapter_with_gate<EluGate>(spec, config, seed, f);
  if (gate == "sigmoid") return detail::build_adapter_with_gate<SigmoidGate>(spec, config, seed, f);
  if (gate == "none") return detail::build_adapter_with_gate<NoGate>(spec, config, seed, f);
  throw ValueError(fmt::format("unknown gate '{}' (elu, sigmoid, none)", gate));
}

struct AdapterMethod {
  static constexpr std::string_view name = "adapter";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "adapter", .label = "Vanilla adapters", .family = MethodFamily::adapter,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::AdapterLlama<NoGate>; adapters train (l1 with alpha)",
                              .fields = adapter_fields(),
                              .defaults = {.lr = 5e-3, .gate = "none", .init = "he", .site = "ffn-parallel",
                                           .alpha = 0.0, .bce_weight = 0.0}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_adapter_model(spec, config, seed, f);
  }
};

struct GatedSigmoidMethod {
  static constexpr std::string_view name = "gated-sigmoid";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "gated-sigmoid", .label = "Sigmoid adapters", .family = MethodFamily::adapter,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::AdapterLlama<SigmoidGate>; adapters + gate, BCE gate classifier",
                              .fields = adapter_fields(),
                              .defaults = {.lr = 5e-3, .gate = "sigmoid", .init = "low-variance",
                                           .site = "ffn-parallel", .alpha = 0.0, .bce_weight = default_sigmoid_bce}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_adapter_model(spec, config, seed, f);
  }
};

struct NeutralMethod {
  static constexpr std::string_view name = "neutral";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "neutral", .label = "Neutral residues", .family = MethodFamily::adapter,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::AdapterLlama<EluGate>; adapters + gate, l1 on original data",
                              .fields = adapter_fields(),
                              .defaults = {.lr = 5e-3, .gate = "elu", .init = "low-variance", .site = "ffn-parallel",
                                           .alpha = default_neutral_alpha, .bce_weight = 0.0}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_adapter_model(spec, config, seed, f);
  }
};

}  // namespace nr::recipes
