// nr/ops/softmax.hpp — softmax over the last dimension.
//
//   y[r, c] = exp(x[r, c] - m[r]) / sum_j exp(x[r, j] - m[r]),   m[r] = max_j x[r, j]
//
// Subtracting the row maximum changes nothing mathematically and keeps exp from overflowing
// (the largest term is exp(0) = 1). The row sum is accumulated in double.
// Shapes: x (..., C) seen as R = x.rows() rows of C entries; y (..., C) like x.
//
// Backward (gradients ACCUMULATED with += into x.grad), with G = dL/dy (R, C) and the saved
// output y (R, C) (the input is not needed). Per row, dy_c/dx_k = y_c ([c == k] - y_k), so
//   dx[k] += sum_c G[c] y_c ([c == k] - y_k)
//          = y_k G[k]                  (the diagonal term)
//          - y_k sum_c G[c] y_c        (every output shares the normaliser)
//          = y_k (G[k] - sum_c G[c] y_c).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// y (R, C) = softmax of each row of x (R, C).
inline void softmax_forward(float* y, const float* x, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    float m = xr[0];
    for (int64_t c = 1; c < C; ++c) m = std::max(m, xr[c]);
    double sum = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      yr[c] = std::exp(xr[c] - m);
      sum += yr[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
  }
}

// dx (R, C) += y (G - sum(G y)) row by row.
inline void softmax_backward(float* dx, const float* g, const float* y, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* gr = g + r * C;
    const float* yr = y + r * C;
    float* dxr = dx + r * C;
    double dot = 0.0;  // sum_c G[c] y_c
    for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(gr[c]) * yr[c];
    const float d = static_cast<float>(dot);
    for (int64_t c = 0; c < C; ++c) dxr[c] += yr[c] * (gr[c] - d);
  }
}

}  // namespace nr::cpu

namespace nr {

// x (..., C) -> y (..., C), each row along the last dimension summing to 1.
inline Var softmax(const Var& x) {
  detail::expect_dense(x, "softmax", "x");
  const Shape& xs = x.shape();
  if (xs.rank() < 1 || xs.back() == 0)
    throw ShapeError(fmt::format("softmax: input {} needs at least one dimension and a non-empty last dimension", xs.str()));
  const int64_t C = xs.back();
  const int64_t R = xs.rows();

  Tensor y = Tensor::empty(xs);
  cpu::softmax_forward(y.data(), x.value().data(), R, C);

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out, R, C]() {
      const float* g = detail::output_grad(out);  // (R, C)
      if (!g) return;
      // Saved: the output y itself (out.value()).
      cpu::softmax_backward(x.grad_buffer().data(), g, out.value().data(), R, C);
    });
  }
  return out;
}

}  // namespace nr
