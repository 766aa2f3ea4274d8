// nr/ops/row_scale.hpp — multiply each row of a tensor by its own scalar.
//
//   y[r, c] = x[r, c] * s[r]        x (..., C), s (..., 1) with the same leading dims, y like x
//
// This is how a per-token gate scales a block's output: s (B, T, 1) gates x (B, T, C).
// Backward (accumulated with +=), G = dL/dy, saved: x and s:
//   dx[r, c] += G[r, c] * s[r]
//   ds[r]    += sum_c G[r, c] x[r, c]      (summed in double)
#pragma once

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr {

namespace cpu {

inline void row_scale_forward(const float* x, const float* s, float* y, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * s[r];
}

// dx and ds may each be null (that input needs no gradient).
inline void row_scale_backward(const float* g, const float* x, const float* s, float* dx, float* ds, int64_t R,
                               int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r) {
    const float* gr = g + r * C;
    if (dx)
      for (int64_t c = 0; c < C; ++c) dx[r * C + c] += gr[c] * s[r];
    if (ds) {
      double acc = 0.0;
      for (int64_t c = 0; c < C; ++c) acc += static_cast<double>(gr[c]) * x[r * C + c];
      ds[r] += static_cast<float>(acc);
    }
  }
}

}  // namespace cpu

inline Var scale_rows(const Var& x, const Var& s) {
  detail::expect_dense(x, "scale_rows", "x");
  detail::expect_dense(s, "scale_rows", "s");
  const Shape& xs = x.shape();
  const Shape& ss = s.shape();
  bool ok = xs.rank() >= 1 && ss.rank() == xs.rank() && ss.back() == 1;
  for (int i = 0; ok && i + 1 < xs.rank(); ++i) ok = xs[i] == ss[i];
  if (!ok)
    throw ShapeError(fmt::format("scale_rows: scales {} do not fit input {} (expected the input's leading "
                                 "dimensions followed by 1)", ss.str(), xs.str()));
  const int64_t C = xs.back(), R = xs.rows();
  Tensor y = Tensor::empty(xs);
  cpu::row_scale_forward(x.value().data(), s.value().data(), y.data(), R, C);
  Var out(std::move(y), any_requires_grad(x, s));
  if (out.requires_grad())
    active_tape().record([x, s, out, R, C]() {
      const float* g = detail::output_grad(out);
      if (!g) return;
      cpu::row_scale_backward(g, x.value().data(), s.value().data(),
                              x.requires_grad() ? x.grad_buffer().data() : nullptr,
                              s.requires_grad() ? s.grad_buffer().data() : nullptr, R, C);
    });
  return out;
}

}  // namespace nr
