// nr/ext/budget.hpp — sizing an extension from a capacity budget.
//
// The neutral-residues paper compares methods at a fixed fraction of extra trainable weights
// (20 % by default, 5-50 % in Table 3). Given the fraction `extra` of the backbone's parameter
// count P, these helpers return the adapter hidden width h or the LoRA rank r whose new
// parameters come closest to extra * P, never less than 1:
//   adapters:  L * (C + 3 C h [+ C for a block gate])  = extra * P   -> h
//   LoRA:      r * sum over targeted projections of (in + out)  = extra * P   -> r
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/nn/config.hpp"

namespace nr {

inline void check_extra_fraction(double extra) {
  if (!(extra > 0.0) || !std::isfinite(extra))
    throw ValueError(fmt::format("capacity budget: --extra must be a positive fraction of the backbone, got {}", extra));
}

// Hidden width of per-layer adapters; `gated` adds the C weights of a block gate per layer.
inline int64_t adapter_hidden_for_budget(double extra, int64_t backbone_params, const ModelConfig& c, bool gated) {
  check_extra_fraction(extra);
  const double C = static_cast<double>(c.hidden_size), L = static_cast<double>(c.num_hidden_layers);
  const double per_layer = extra * static_cast<double>(backbone_params) / L - C - (gated ? C : 0.0);
  return std::max<int64_t>(1, std::llround(per_layer / (3.0 * C)));
}

// LoRA rank, given the sum over targeted projections of (in + out), i.e. parameters per rank.
inline int64_t lora_rank_for_budget(double extra, int64_t backbone_params, int64_t params_per_rank) {
  check_extra_fraction(extra);
  if (params_per_rank <= 0) throw ValueError("capacity budget: LoRA targets no projection");
  return std::max<int64_t>(1, std::llround(extra * static_cast<double>(backbone_params) / static_cast<double>(params_per_rank)));
}

}  // namespace nr
