// nr/ops/l1.hpp — absolute value, and the l1 sparsity loss of neutral residues.
//
//   abs(x) = |x|                                          x, y (...) any shape
//
//   l1_mean(x, w) = sum_r w_r sum_c |x_rc|  /  (C * sum_r w_r)
//   x (..., C) viewed as rows (R, C), R = x.numel() / C; w (R) optional per-row weights >= 0.
// Without weights every row counts (w_r = 1): the mean of |x| over all elements. With weights,
// only the selected rows count: neutral residues apply the l1 loss to the adapter's output only
// on tokens of original-domain sequences (w_r = 1 there, 0 on new-domain tokens). When every
// weight is 0 (a batch with no original-domain token) the loss is exactly 0 and so is its
// gradient (see row_weights.hpp). The sums accumulate in double.
//
// Backward (accumulated with +=), g = dL/dy, saved: the input x (and a copy of w):
//   abs:      dx += g * sign(x)                       (subgradient 0 at x = 0)
//   l1_mean:  dx_rc += g * w_r * sign(x_rc) / (C * sum_r w_r)      (0 when sum_r w_r = 0)
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "nr/ops/op_support.hpp"
#include "nr/ops/row_weights.hpp"
#include "nr/ops/unary.hpp"

namespace nr {

namespace pointwise {

struct Abs {
  float value(float x) const { return std::abs(x); }
  float derivative(float x, float /*y*/) const { return static_cast<float>((x > 0.0f) - (x < 0.0f)); }
};

}  // namespace pointwise

// y (...) = |x (...)|.
inline Var abs(const Var& x) { return detail::unary_op(x, "abs", pointwise::Abs{}); }

}  // namespace nr

namespace nr::cpu {

// sum_r w[r] sum_c |x[r, c]| for x (R, C) and w (R) (null: all 1), in double.
inline double weighted_abs_sum(const float* x, const float* w, int64_t R, int64_t C) {
  double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float wr = w ? w[r] : 1.0f;
    if (wr == 0.0f) continue;
    const float* xr = x + r * C;
    double row = 0.0;
    for (int64_t c = 0; c < C; ++c) row += std::abs(xr[c]);
    acc += static_cast<double>(wr) * row;
  }
  return acc;
}

// dx[r, c] += s * w[r] * sign(x[r, c]) for x, dx (R, C) and w (R) (null: all 1).
inline void weighted_sign_acc(const float* x, const float* w, float* dx, int64_t R, int64_t C, float s) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float k = s * (w ? w[r] : 1.0f);
    if (k == 0.0f) continue;
    const float* xr = x + r * C;
    float* dr = dx + r * C;
    for (int64_t c = 0; c < C; ++c) dr[c] += k * static_cast<float>((xr[c] > 0.0f) - (xr[c] < 0.0f));
  }
}

}  // namespace nr::cpu

namespace nr {

namespace detail {

// x (..., C) -> scalar (); w has R entries when weighted.
inline Var l1_mean_impl(const Var& x, std::span<const float> w, bool weighted) {
  expect_dense(x, "l1_mean", "x");
  const Shape& s = x.shape();
  const double inv = row_mean_factor(w, weighted, s, "l1_mean");  // 1 / (C * sum_r w_r), or 0
  const int64_t C = s.back();
  const int64_t R = s.rows();

  const float* wp = weighted ? w.data() : nullptr;
  const double loss = inv == 0.0 ? 0.0 : cpu::weighted_abs_sum(x.value().data(), wp, R, C) * inv;
  Var out(Tensor::scalar(static_cast<float>(loss)), any_requires_grad(x));
  if (out.requires_grad()) {
    // Saved: x and a copy of the weights (the caller's buffer may change before backward).
    std::vector<float> saved(w.begin(), w.end());
    active_tape().record([x, out, saved = std::move(saved), weighted, R, C, inv]() {
      const float* g = output_grad(out);  // ()
      if (!g) return;
      // dx_rc += g * w_r * sign(x_rc) / (C * sum_r w_r)   (inv = 0: dx gets a zero contribution)
      cpu::weighted_sign_acc(x.value().data(), weighted ? saved.data() : nullptr, x.grad_buffer().data(), R, C,
                             static_cast<float>(g[0] * inv));
    });
  }
  return out;
}

}  // namespace detail

// Scalar () = mean of |x| over all elements of x (..., C).
inline Var l1_mean(const Var& x) { return detail::l1_mean_impl(x, {}, false); }

// Scalar () = mean of |x| over the rows r of x (..., C) weighted by row_weights[r] (R entries,
// R = x.numel() / C); 0, with zero gradient, when every weight is 0.
inline Var l1_mean(const Var& x, std::span<const float> row_weights) {
  return detail::l1_mean_impl(x, row_weights, true);
}

}  // namespace nr
