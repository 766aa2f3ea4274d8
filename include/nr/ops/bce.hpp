// nr/ops/bce.hpp — binary cross-entropy on logits: the local loss of a sigmoid block gate that
// learns to tell original-domain tokens (target 0) from new-domain tokens (target 1).
//
//   bce_with_logits(z, t, w) = sum_r w_r sum_c l(z_rc, t_rc)  /  (C * sum_r w_r)
//   l(z, t) = -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))
//           = max(z, 0) - z t + log(1 + exp(-|z|))          (the stable form computed here)
//   z (..., C) logits, t (..., C) targets in [0, 1] (a Tensor: data, never differentiated),
//   w (R) optional per-row weights, R = z.numel() / C; without weights every row counts and the
//   loss is the plain mean over all elements (PyTorch's binary_cross_entropy_with_logits).
// The stable form never exponentiates a positive number, so logits of +-100 give finite values
// (l(100, 1) = 0, l(-100, 1) = 100). Sums accumulate in double. Weights follow row_weights.hpp:
// all-zero weights give a loss of exactly 0 with zero gradient.
//
// Backward (accumulated with +=), g = dL/dy, saved: z and copies of t and w:
//   dl/dz = sigmoid(z) - t
//   dz_rc += g * w_r * (sigmoid(z_rc) - t_rc) / (C * sum_r w_r)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"
#include "nr/ops/row_weights.hpp"
#include "nr/ops/sigmoid.hpp"

namespace nr::cpu {

// sum_r w[r] sum_c l(z[r, c], t[r, c]) for z, t (R, C) and w (R) (null: all 1), in double.
inline double weighted_bce_sum(const float* z, const float* t, const float* w, int64_t R, int64_t C) {
  double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float wr = w ? w[r] : 1.0f;
    if (wr == 0.0f) continue;
    double row = 0.0;
    for (int64_t c = r * C; c < (r + 1) * C; ++c)
      row += static_cast<double>(std::max(z[c], 0.0f) - z[c] * t[c] + std::log1p(std::exp(-std::abs(z[c]))));
    acc += static_cast<double>(wr) * row;
  }
  return acc;
}

// dz[r, c] += s * w[r] * (sigmoid(z[r, c]) - t[r, c]) for z, t, dz (R, C) and w (R) (null: all 1).
inline void weighted_bce_backward(const float* z, const float* t, const float* w, float* dz, int64_t R, int64_t C,
                                  float s) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float k = s * (w ? w[r] : 1.0f);
    if (k == 0.0f) continue;
    for (int64_t c = r * C; c < (r + 1) * C; ++c) dz[c] += k * (pointwise::sigmoid(z[c]) - t[c]);
  }
}

}  // namespace nr::cpu

namespace nr {

namespace detail {

// z (..., C), t (..., C) -> scalar (); w has R entries when weighted.
inline Var bce_impl(const Var& logits, const Tensor& targets, std::span<const float> w, bool weighted) {
  expect_dense(logits, "bce_with_logits", "logits");
  const Shape& s = logits.shape();
  if (!targets.defined()) throw Error("bce_with_logits: argument 'targets' is undefined");
  if (targets.device() != Device::cpu)
    throw DeviceError(fmt::format("bce_with_logits: targets live on {}; this op has no {} kernel in this build",
                                  device_name(targets.device()), device_name(targets.device())));
  if (!(targets.shape() == s))
    throw ShapeError(fmt::format("bce_with_logits: logits {} and targets {} must have the same shape", s.str(),
                                 targets.shape().str()));
  const double inv = row_mean_factor(w, weighted, s, "bce_with_logits");  // 1 / (C * sum_r w_r), or 0
  const int64_t C = s.back();
  const int64_t R = s.rows();
  const Tensor t = targets.clone();  // (..., C), contiguous and owned: the caller may reuse its buffer

  const float* wp = weighted ? w.data() : nullptr;
  const double loss = inv == 0.0 ? 0.0 : cpu::weighted_bce_sum(logits.value().data(), t.data(), wp, R, C) * inv;
  Var out(Tensor::scalar(static_cast<float>(loss)), any_requires_grad(logits));
  if (out.requires_grad()) {
    // Saved: the logits, the copy t of the targets and a copy of the weights.
    std::vector<float> saved(w.begin(), w.end());
    active_tape().record([logits, t, out, saved = std::move(saved), weighted, R, C, inv]() {
      const float* g = output_grad(out);  // ()
      if (!g) return;
      // dz_rc += g * w_r * (sigmoid(z_rc) - t_rc) / (C * sum_r w_r)   (inv = 0: a zero contribution)
      cpu::weighted_bce_backward(logits.value().data(), t.data(), weighted ? saved.data() : nullptr,
                                 logits.grad_buffer().data(), R, C, static_cast<float>(g[0] * inv));
    });
  }
  return out;
}

}  // namespace detail

// Scalar () = mean over all elements of the binary cross-entropy of logits (..., C) against
// targets (..., C).
inline Var bce_with_logits(const Var& logits, const Tensor& targets) {
  return detail::bce_impl(logits, targets, {}, false);
}

// Scalar () = the same mean over the rows r of the (R, C) view weighted by row_weights[r]
// (R entries); 0, with zero gradient, when every weight is 0.
inline Var bce_with_logits(const Var& logits, const Tensor& targets, std::span<const float> row_weights) {
  return detail::bce_impl(logits, targets, row_weights, true);
}

}  // namespace nr
