// nr/ops/embedding.hpp — embedding lookup: one row of a table per token id.
//
//   out[n, c] = W[ids[n], c]
//
// Shapes: weight W (V, C) (V vocabulary rows of C channels); ids: nr::Indices of any shape S
// (usually (B, T)), N = numel(S) tokens; out S + (C,), e.g. (B, T, C).
// Ids outside [0, V) throw ValueError naming the id, its position and V.
//
// Backward (gradients ACCUMULATED with += into weight.grad), with G = dL/dout (N, C) and the
// saved ids (a copy of the N int32 values): each token adds its output gradient to the row it
// read,
//   dW[ids[n], c] += G[n, c]      for every token n,
// so a row used by several tokens receives the sum of their gradients and unused rows get 0.
// Repeated ids make a parallel loop over tokens racy; the kernel parallelises over blocks of
// columns instead (each thread owns whole columns of dW), which is race-free and deterministic.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// out (N, C) = rows ids (N,) of w (V, C). The ids are already range-checked.
inline void embedding_forward(float* out, const float* w, const int32_t* ids, int64_t N, int64_t C) {
#pragma omp parallel for if (N * C > detail::parallel_grain)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(out + n * C, w + static_cast<int64_t>(ids[n]) * C, static_cast<size_t>(C) * sizeof(float));
}

// dw (V, C) += scatter of g (N, C) to the rows ids (N,).
inline void embedding_backward(float* dw, const float* g, const int32_t* ids, int64_t N, int64_t C) {
  constexpr int64_t block = 64;  // columns per task: 256 bytes of each row
  const int64_t n_blocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) if (N * C > detail::parallel_grain && n_blocks > 1)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t c0 = b * block, c1 = std::min(C, c0 + block);
    for (int64_t n = 0; n < N; ++n) {
      float* dst = dw + static_cast<int64_t>(ids[n]) * C;
      const float* src = g + n * C;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace nr::cpu

namespace nr {

// weight (V, C), ids of shape S -> out S + (C,).
inline Var embedding(const Var& weight, const Indices& ids) {
  detail::expect_dense(weight, "embedding", "weight");
  const Shape& ws = weight.shape();
  if (ws.rank() != 2)
    throw ShapeError(fmt::format("embedding: weight {} must be (V, C); ids have shape {}", ws.str(), ids.shape.str()));
  if (ids.numel() != ids.shape.numel())
    throw ShapeError(fmt::format("embedding: ids hold {} values but claim shape {}", ids.numel(), ids.shape.str()));
  if (ids.shape.rank() >= Shape::max_rank)
    throw ShapeError(fmt::format("embedding: ids of shape {} with weight {} would give an output of rank {} > {}",
                                 ids.shape.str(), ws.str(), ids.shape.rank() + 1, Shape::max_rank));
  const int64_t V = ws[0], C = ws[1];
  ids.check_range(V, "embedding: token id");
  Shape out_shape = ids.shape;
  out_shape.push_back(C);
  const int64_t N = ids.numel();

  Tensor y = Tensor::empty(out_shape);
  cpu::embedding_forward(y.data(), weight.value().data(), ids.data.data(), N, C);

  Var out(std::move(y), any_requires_grad(weight));
  if (out.requires_grad()) {
    active_tape().record([weight, out, ids, N, C]() {
      const float* g = detail::output_grad(out);  // (N, C)
      if (!g) return;
      // Saved: the ids (N,) copied into the closure; the weight's values are not needed.
      cpu::embedding_backward(weight.grad_buffer().data(), g, ids.data.data(), N, C);
    });
  }
  return out;
}

}  // namespace nr
