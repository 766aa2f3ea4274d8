// nr/optim/clip.hpp — global-norm gradient clipping.
//
//   norm = sqrt(sum over parameters of sum(g^2));  if norm > max_norm: g *= max_norm / norm
// Returns the norm before clipping (logged as "grad norm"); a non-finite norm is returned as is
// and nothing is scaled, so the caller can detect it and decide.
#pragma once

#include <cmath>
#include <vector>

#include "nr/optim/adamw.hpp"

namespace nr {

inline double clip_grad_norm(std::vector<AdamW::Slot>& slots, double max_norm) {
  double sq = 0.0;
  for (AdamW::Slot& s : slots) {
    if (!s.param.has_grad()) continue;
    const float* g = s.param.grad().data();
    const int64_t n = s.param.numel();
    double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) if (n > detail::parallel_grain)
    for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(g[i]) * g[i];
    sq += acc;
  }
  const double norm = std::sqrt(sq);
  if (max_norm > 0.0 && std::isfinite(norm) && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / norm);
    for (AdamW::Slot& s : slots) {
      if (!s.param.has_grad()) continue;
      float* g = s.param.grad_buffer().data();
      for (int64_t i = 0; i < s.param.numel(); ++i) g[i] *= scale;
    }
  }
  return norm;
}

}  // namespace nr
