// nr/ops/scatter_add_rows.hpp — add rows into a zero matrix at given row positions (the
// "combine" of token routing).
//
//   y[n, c] = sum over m with idx[m] = n of x[m, c]      x (M, C), idx (M,) in [0, N), y (N, C)
//
// Rows of y that no index names are 0. A mixture of experts (ModuleFormer, Section 3.1) uses it
// to bring the (weighted) expert outputs back to their tokens: each token receives the sum of its
// k experts' outputs.
// It is the transpose of gather_rows (gather_rows.hpp): gather_rows(., idx) and
// scatter_add_rows(., idx, N) are adjoint linear maps.
//
// Shape errors (x not 2-D, idx not 1-D with M values, N negative) throw ShapeError naming the
// shapes; an index outside [0, N) throws ValueError naming the index, its position and N.
//
// Backward (gradients ACCUMULATED with += into x.grad), with G = dL/dy (N, C) and the saved
// indices (a copy of the M int32 values): each row of x reads the gradient of the row it went to,
//   dx[m, c] += G[idx[m], c]
// (a gather: every m writes its own row, so the loop over m is race-free).
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/ops/gather_rows.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// dx (M, C) += rows idx (M,) of g (N, C).
inline void gather_rows_acc(const float* g, const int32_t* idx, float* dx, int64_t M, int64_t C) {
#pragma omp parallel for if (M * C > nr::detail::parallel_grain)
  for (int64_t m = 0; m < M; ++m) {
    const float* s = g + static_cast<int64_t>(idx[m]) * C;
    float* d = dx + m * C;
    for (int64_t c = 0; c < C; ++c) d[c] += s[c];
  }
}

}  // namespace nr::cpu

namespace nr {

// y (N, C): the rows of x (M, C) added into row idx[m] of a zero (N, C) matrix.
inline Var scatter_add_rows(const Var& x, const Indices& idx, int64_t N) {
  detail::expect_dense(x, "scatter_add_rows", "x");
  const Shape& xs = x.shape();
  if (xs.rank() != 2)
    throw ShapeError(fmt::format("scatter_add_rows: x of shape {} must be 2-D (M, C); indices have shape {}",
                                 xs.str(), idx.shape.str()));
  if (N < 0) throw ShapeError(fmt::format("scatter_add_rows: negative row count N = {} for x {}", N, xs.str()));
  const int64_t M = xs[0], C = xs[1];
  if (idx.numel() != M || idx.shape.rank() != 1)
    throw ShapeError(fmt::format("scatter_add_rows: indices of shape {} do not give one row position per row of x {}",
                                 idx.shape.str(), xs.str()));
  detail::check_row_indices("scatter_add_rows", Shape{N, C}, idx, N);

  Tensor y = Tensor::zeros(Shape{N, C});
  cpu::scatter_add_rows_acc(x.value().data(), idx.data.data(), y.data(), M, C);

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out, idx, M, C]() {
      const float* g = detail::output_grad(out);  // (N, C)
      if (!g) return;
      // Saved: the indices (copied into the closure). dx[m] += G[idx[m]].
      cpu::gather_rows_acc(g, idx.data.data(), x.grad_buffer().data(), M, C);
    });
  }
  return out;
}

}  // namespace nr
