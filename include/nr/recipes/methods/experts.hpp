// nr/recipes/methods/experts.hpp — `experts` (ModuleFormer, Section 4.3): E' new SiLU experts of
// width h beside the dense FFN of every layer, routed top-k' by a router whose row 0 stands for
// the old FFN (ext/new_experts.hpp); the new experts and the router train, the router's new rows
// under the regularisation lambda ||A'||_F^2 (Eq. 10). Over a mixture-of-experts backbone the
// new experts are inserted into its expert layers instead (recipes/extend.hpp,
// ext/insert_experts.hpp).
#pragma once

#include <cmath>

#include "nr/core/rng.hpp"
#include "nr/ext/budget.hpp"
#include "nr/ext/new_experts.hpp"
#include "nr/nn/module.hpp"
#include "nr/recipes/method.hpp"
#include "nr/recipes/seeds.hpp"

namespace nr::recipes {

inline constexpr int64_t default_new_experts = 4;  // E' beside a dense FFN
inline constexpr int64_t default_new_top_k = 1;    // k'
inline constexpr double default_route_reg = 0.01;  // lambda of Eq. 10

// Width h of each of the E' new experts beside a dense FFN so that the new parameters (per
// layer: norm C, router D_emb C + (1 + E') D_emb, experts E' 3 C h) make `extra` of the backbone.
inline int64_t new_expert_hidden_for_budget(double extra, int64_t backbone_params, const ModelConfig& c,
                                            NewExpertsAdapterConfig cfg) {
  check_extra_fraction(extra);
  const double C = static_cast<double>(c.hidden_size);
  cfg.hidden = 0;
  const double fixed = static_cast<double>(NewExperts<>::parameter_count(c.hidden_size, cfg));
  const double per_layer = extra * static_cast<double>(backbone_params) / static_cast<double>(c.num_hidden_layers);
  const int64_t h = std::llround((per_layer - fixed) / (3.0 * C * static_cast<double>(cfg.num_experts)));
  if (h < 1)
    throw ValueError(fmt::format("extra {} leaves no hidden unit for {} new experts per layer (their router and "
                                 "norm alone take {} parameters per layer); raise extra or lower experts",
                                 extra, cfg.num_experts, static_cast<int64_t>(fixed)));
  return h;
}

struct ExpertsMethod {
  static constexpr std::string_view name = "experts";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "experts", .label = "New experts", .family = MethodFamily::experts,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::NewExpertsLlama; new experts + their router, routing regularisation",
                              .fields = {"experts", "top_k", "hidden", "route_reg", "concentration"},
                              .defaults = {.lr = 5e-3, .top_k = default_new_top_k, .route_reg = default_route_reg,
                                           .concentration = 0.0}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    NewExpertsLlama<> model(config, seed);
    if (!spec.experts) spec.experts = default_new_experts;
    if (spec.top_k.value_or(1) > *spec.experts)
      throw ValueError(fmt::format("top_k {} exceeds experts {}", *spec.top_k, *spec.experts));
    if (!spec.hidden)
      spec.hidden = new_expert_hidden_for_budget(spec.extra, count_parameters(model), config, spec.new_experts_config());
    Rng rng(derive_seed(seed, SeedStream::new_experts));
    attach_new_experts(model, spec.new_experts_config(), rng);
    return f(model);
  }
};

}  // namespace nr::recipes
