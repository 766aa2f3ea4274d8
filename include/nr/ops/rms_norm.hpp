// nr/ops/rms_norm.hpp — root-mean-square normalisation, as in Llama (Hugging Face LlamaRMSNorm).
//
//   rstd[r]    = 1 / sqrt(mean_c x[r, c]^2 + eps)
//   y[r, c]    = x[r, c] * rstd[r] * w[c]
//
// Shapes: x (..., C) seen as R = x.rows() rows of C channels; weight (C,); y (..., C) like x;
// rstd (R,) is allocated by the op and saved for backward. The mean of squares is accumulated in
// double, everything else is float (Hugging Face upcasts to float32 for the same reason).
//
// Backward (gradients ACCUMULATED with += into x.grad and weight.grad), with G = dL/dy (R, C)
// and the saved tensors x (R, C), weight (C,) and rstd (R,). Per row, writing r = rstd[r]:
//   y_c = w_c x_c r,   dr/dx_k = -r^3 x_k / C   (from r = (sum_j x_j^2 / C + eps)^(-1/2))
//   dw[c] += sum_r G[r, c] x[r, c] r                               (the product rule's w term)
//   dx[k] += r G[k] w[k]                                           (direct path through x_k)
//          - r^3 x[k] / C * sum_j G[j] w[j] x[j]                   (path through rstd)
// A frozen weight (requires_grad false) costs nothing in backward; a frozen x skips dx.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>
#include <omp.h>

#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// y (R, C) = x (R, C) * rstd (R,) * w (C,); writes rstd.
inline void rms_norm_forward(float* y, float* rstd, const float* x, const float* w, int64_t R, int64_t C, float eps) {
#pragma omp parallel for if (R * C > detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const float s = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(C) + static_cast<double>(eps)));
    rstd[r] = s;
    for (int64_t c = 0; c < C; ++c) yr[c] = (xr[c] * s) * w[c];
  }
}

// dx (R, C) += ..., dw (C,) += ... as in the header comment; either may be null (not wanted).
inline void rms_norm_backward(float* dx, float* dw, const float* g, const float* x, const float* w, const float* rstd,
                              int64_t R, int64_t C) {
  const bool parallel = R * C > detail::parallel_grain;
  if (dx) {
#pragma omp parallel for if (parallel)
    for (int64_t r = 0; r < R; ++r) {
      const float* gr = g + r * C;
      const float* xr = x + r * C;
      float* dxr = dx + r * C;
      const float s = rstd[r];
      double dot = 0.0;  // sum_j G[j] w[j] x[j]
      for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(gr[c]) * w[c] * xr[c];
      const float k = static_cast<float>(static_cast<double>(s) * s * s * dot / static_cast<double>(C));  // r^3 dot / C
      for (int64_t c = 0; c < C; ++c) dxr[c] += s * gr[c] * w[c] - k * xr[c];
    }
  }
  if (dw) {
    // A reduction over rows: each thread sums its (static) share of rows into its own partial
    // row, and the partial rows are added in thread order, so the result does not depend on
    // scheduling (it is deterministic for a given thread count).
    const int nt = parallel ? omp_get_max_threads() : 1;
    std::vector<float> partial(static_cast<size_t>(nt) * static_cast<size_t>(C), 0.0f);
#pragma omp parallel num_threads(nt) if (parallel)
    {
      float* p = partial.data() + static_cast<int64_t>(omp_get_thread_num()) * C;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < R; ++r) {
        const float* gr = g + r * C;
        const float* xr = x + r * C;
        const float s = rstd[r];
        for (int64_t c = 0; c < C; ++c) p[c] += gr[c] * xr[c] * s;
      }
    }
    for (int t = 0; t < nt; ++t) {
      const float* p = partial.data() + static_cast<int64_t>(t) * C;
      for (int64_t c = 0; c < C; ++c) dw[c] += p[c];
    }
  }
}

}  // namespace nr::cpu

namespace nr {

// x (..., C), weight (C,) -> y (..., C). eps must be >= 0 (Llama uses 1e-5 or 1e-6).
inline Var rms_norm(const Var& x, const Var& weight, double eps) {
  detail::expect_dense(x, "rms_norm", "x");
  detail::expect_dense(weight, "rms_norm", "weight");
  const Shape& xs = x.shape();
  const Shape& ws = weight.shape();
  if (xs.rank() < 1 || ws.rank() != 1 || xs.back() != ws[0] || ws[0] == 0)
    throw ShapeError(fmt::format("rms_norm: input {} does not fit weight {} (expected x (..., C) and weight (C,) with C > 0)",
                                 xs.str(), ws.str()));
  if (!(eps >= 0.0) || !std::isfinite(eps))
    throw ValueError(fmt::format("rms_norm: eps must be a finite number >= 0, got {}", eps));
  const int64_t C = xs.back();
  const int64_t R = xs.rows();

  Tensor y = Tensor::empty(xs);
  Tensor rstd = Tensor::empty(Shape{R});  // (R,)
  cpu::rms_norm_forward(y.data(), rstd.data(), x.value().data(), weight.value().data(), R, C, static_cast<float>(eps));

  Var out(std::move(y), any_requires_grad(x, weight));
  if (out.requires_grad()) {
    active_tape().record([x, weight, out, rstd, R, C]() {
      const float* g = detail::output_grad(out);  // (R, C)
      if (!g) return;
      float* dx = x.requires_grad() ? x.grad_buffer().data() : nullptr;            // (R, C)
      float* dw = weight.requires_grad() ? weight.grad_buffer().data() : nullptr;  // (C,)
      cpu::rms_norm_backward(dx, dw, g, x.value().data(), weight.value().data(), rstd.data(), R, C);
    });
  }
  return out;
}

}  // namespace nr
