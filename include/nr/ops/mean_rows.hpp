// nr/ops/mean_rows.hpp — the mean of the rows of a matrix (a column mean).
//
//   y[c] = (1 / R) sum_r x[r, c]        x (..., C) seen as R = x.rows() rows,  y (C,)
//
// A mixture of experts uses it for the marginal routing distribution over a batch,
// p(e) = (1 / N) sum_x g(e | x) (ModuleFormer, Section 4.1). The sums accumulate in double.
// An input with no rows (R = 0) or no dimension throws ShapeError naming its shape.
//
// Backward (gradients ACCUMULATED with += into x.grad), with g = dL/dy (C,); nothing is saved but
// R and C:
//   dx[r, c] += g[c] / R
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/ops/elementwise.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// dx[r, c] += s * g[c] for dx (R, C), g (C).
inline void add_row_to_all(const float* g, float s, float* dx, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > nr::detail::parallel_grain)
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) dx[r * C + c] += s * g[c];
}

}  // namespace nr::cpu

namespace nr {

// y (C,) = mean over the rows of x (..., C).
inline Var mean_rows(const Var& x) {
  detail::expect_dense(x, "mean_rows", "x");
  const Shape& xs = x.shape();
  if (xs.rank() < 1 || xs.rows() == 0 || xs.back() == 0)
    throw ShapeError(fmt::format("mean_rows: input {} needs at least one row of at least one column", xs.str()));
  const int64_t C = xs.back(), R = xs.rows();

  Tensor y = Tensor::zeros(Shape{C});
  cpu::column_sum_acc(x.value().data(), nullptr, y.data(), R, C, static_cast<float>(1.0 / static_cast<double>(R)));

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out, R, C]() {
      const float* g = detail::output_grad(out);  // (C,)
      if (!g) return;
      cpu::add_row_to_all(g, static_cast<float>(1.0 / static_cast<double>(R)), x.grad_buffer().data(), R, C);
    });
  }
  return out;
}

}  // namespace nr
