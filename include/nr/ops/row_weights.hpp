// nr/ops/row_weights.hpp — optional per-row weights of the local losses (l1_mean,
// bce_with_logits).
//
// A loss input x (..., C) is viewed as rows (R, C), R = x.numel() / C: one row per token when
// x is (B, T, C). A weight w_r >= 0 per row selects (1) or drops (0) that row; the loss is the
// mean over the selected elements,
//   sum_r w_r sum_c loss_rc / (C * sum_r w_r),
// and exactly 0, with zero gradient, when no element is selected (sum_r w_r = 0 or C = 0). Rows
// with weight 0 are skipped entirely, so whatever they hold never reaches the loss.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"

namespace nr::detail {

// The factor 1 / (C * sum_r w_r) of a weighted row mean (all w_r = 1 when `weighted` is false),
// or 0 when nothing is selected. Checks that w has one finite, non-negative entry per row; the
// messages name the op and the input shape.
inline double row_mean_factor(std::span<const float> w, bool weighted, const Shape& s, const char* op) {
  if (s.rank() < 1) throw ShapeError(fmt::format("{}: input {} needs at least one dimension (..., C)", op, s.str()));
  const int64_t C = s.back();
  const int64_t R = s.rows();
  double total = static_cast<double>(R);
  if (weighted) {
    if (static_cast<int64_t>(w.size()) != R)
      throw ShapeError(fmt::format("{}: {} row weights for input {} with {} rows of {} (one weight per row)", op,
                                   w.size(), s.str(), R, C));
    total = 0.0;
    for (size_t r = 0; r < w.size(); ++r) {
      if (!std::isfinite(w[r]) || w[r] < 0.0f)
        throw ValueError(fmt::format("{}: row weight {} is {}; weights must be finite and >= 0", op, r, w[r]));
      total += static_cast<double>(w[r]);
    }
  }
  const double count = static_cast<double>(C) * total;
  return count > 0.0 ? 1.0 / count : 0.0;
}

}  // namespace nr::detail
