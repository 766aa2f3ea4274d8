// nr/ops/gather_rows.hpp — pick rows of a matrix by index (the "dispatch" of token routing).
//
//   y[m, c] = x[idx[m], c]          x (N, C), idx (M,) with values in [0, N), y (M, C)
//
// Rows may be picked any number of times (or never). A mixture of experts (ModuleFormer, Section
// 3.1) uses it to collect the tokens routed to one expert: x holds the N = B*T token vectors, idx
// the tokens of that expert.
// Its mirror image, scatter_add_rows (scatter_add_rows.hpp), sends the expert outputs back.
//
// Shape errors (x not 2-D, idx not 1-D) throw ShapeError naming both shapes; an index outside
// [0, N) throws ValueError naming the index, its position and N (as embedding does for token ids).
//
// Backward (gradients ACCUMULATED with += into x.grad), with G = dL/dy (M, C) and the saved
// indices (a copy of the M int32 values):
//   dx[idx[m], c] += G[m, c]        for every m,
// so a row picked twice receives the sum of both gradients and a row never picked gets 0. As in
// the embedding backward, repeated indices make a parallel loop over m racy: the kernel splits the
// columns into blocks, each owned by one thread (race-free and deterministic).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// y (M, C) = rows idx (M,) of x (N, C); indices already range-checked.
inline void gather_rows_forward(const float* x, const int32_t* idx, float* y, int64_t M, int64_t C) {
#pragma omp parallel for if (M * C > nr::detail::parallel_grain)
  for (int64_t m = 0; m < M; ++m)
    std::memcpy(y + m * C, x + static_cast<int64_t>(idx[m]) * C, static_cast<size_t>(C) * sizeof(float));
}

// dst (N, C) row idx[m] += src (M, C) row m, for every m. Parallel over blocks of columns, so two
// threads never write the same element even when indices repeat. Shared by gather_rows' backward
// and scatter_add_rows' forward.
inline void scatter_add_rows_acc(const float* src, const int32_t* idx, float* dst, int64_t M, int64_t C) {
  constexpr int64_t block = 64;  // columns per task
  const int64_t n_blocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) if (M * C > nr::detail::parallel_grain && n_blocks > 1)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t c0 = b * block, c1 = std::min(C, c0 + block);
    for (int64_t m = 0; m < M; ++m) {
      float* d = dst + static_cast<int64_t>(idx[m]) * C;
      const float* s = src + m * C;
      for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
    }
  }
}

}  // namespace nr::cpu

namespace nr::detail {

// The checks shared by gather_rows and scatter_add_rows: `table` is the (N, C) side, `rows_of`
// the (M, C) side; idx must be 1-D with M values in [0, N).
inline void check_row_indices(const char* op, const Shape& table, const Indices& idx, int64_t N) {
  if (idx.shape.rank() != 1 || idx.numel() != idx.shape.numel())
    throw ShapeError(fmt::format("{}: indices of shape {} must be 1-D (M,), with {} values; the rows are {}", op,
                                 idx.shape.str(), idx.numel(), table.str()));
  for (int64_t m = 0; m < idx.numel(); ++m) {
    const int32_t v = idx[m];
    if (v < 0 || v >= N)
      throw ValueError(fmt::format("{}: row index {} at position {} is outside [0, {}) (rows {})", op, v, m, N,
                                   table.str()));
  }
}

}  // namespace nr::detail

namespace nr {

// y (M, C) = x (N, C) rows idx (M,).
inline Var gather_rows(const Var& x, const Indices& idx) {
  detail::expect_dense(x, "gather_rows", "x");
  const Shape& xs = x.shape();
  if (xs.rank() != 2)
    throw ShapeError(fmt::format("gather_rows: x of shape {} must be 2-D (N, C); indices have shape {}", xs.str(),
                                 idx.shape.str()));
  const int64_t N = xs[0], C = xs[1], M = idx.numel();
  detail::check_row_indices("gather_rows", xs, idx, N);

  Tensor y = Tensor::empty(Shape{M, C});
  cpu::gather_rows_forward(x.value().data(), idx.data.data(), y.data(), M, C);

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    active_tape().record([x, out, idx, M, C]() {
      const float* g = detail::output_grad(out);  // (M, C)
      if (!g) return;
      // Saved: the indices (copied into the closure). dx[idx[m]] += G[m].
      cpu::scatter_add_rows_acc(g, idx.data.data(), x.grad_buffer().data(), M, C);
    });
  }
  return out;
}

}  // namespace nr
