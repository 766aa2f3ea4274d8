// nr/ops/concat_rows.hpp — stack matrices with the same number of columns on top of each other.
//
//   y = [x_0; x_1; ...; x_{n-1}]      x_i (M_i, C)  ->  y (M, C),  M = sum_i M_i
//   row r of y is row r - o_i of x_i, where o_i = M_0 + ... + M_{i-1} is x_i's offset
//
// Inputs with zero rows are allowed (an expert that received no token). A mixture of experts uses
// it twice: to put the outputs of all experts in one (N*k, C) matrix before weighting and
// scattering them back, and to build the router's expert-embedding matrix [A; A'] from a frozen
// old part A and a trainable new part A' (the "partially trainable router" of ModuleFormer,
// Section 4.3).
//
// Errors: an empty list, an input that is not 2-D, or inputs with different C throw ShapeError
// naming every input shape.
//
// Backward (gradients ACCUMULATED with += into each x_i.grad that requires grad), with
// G = dL/dy (M, C): each input reads its own block of rows, nothing else is saved:
//   dx_i[r, c] += G[o_i + r, c]
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/ops/elementwise.hpp"
#include "nr/ops/op_support.hpp"

namespace nr {

// y (sum M_i, C) = the inputs x_i (M_i, C) stacked in order.
inline Var concat_rows(const std::vector<Var>& xs) {
  auto shapes = [&]() {
    std::string s;
    for (size_t i = 0; i < xs.size(); ++i) s += (i ? ", " : "") + xs[i].shape().str();
    return s;
  };
  if (xs.empty()) throw ShapeError("concat_rows: no input given");
  for (size_t i = 0; i < xs.size(); ++i) detail::expect_dense(xs[i], "concat_rows", "x");
  for (const Var& x : xs)
    if (x.shape().rank() != 2 || x.shape()[1] != xs[0].shape().back())
      throw ShapeError(fmt::format("concat_rows: inputs {} must all be 2-D (M_i, C) with the same C", shapes()));
  const int64_t C = xs[0].shape()[1];
  std::vector<int64_t> offsets;  // o_i, in rows
  int64_t M = 0;
  for (const Var& x : xs) {
    offsets.push_back(M);
    M += x.shape()[0];
  }

  Tensor y = Tensor::empty(Shape{M, C});
  for (size_t i = 0; i < xs.size(); ++i)
    if (xs[i].numel() > 0)
      std::memcpy(y.data() + offsets[i] * C, xs[i].value().data(), static_cast<size_t>(xs[i].numel()) * sizeof(float));

  bool record = false;
  for (const Var& x : xs) record = record || any_requires_grad(x);
  Var out(std::move(y), record);
  if (record) {
    active_tape().record([xs, out, offsets, C]() {
      const float* g = detail::output_grad(out);  // (M, C)
      if (!g) return;
      for (size_t i = 0; i < xs.size(); ++i)  // dx_i += G[o_i : o_i + M_i]
        if (xs[i].requires_grad() && xs[i].numel() > 0)
          cpu::axpy(1.0f, g + offsets[i] * C, xs[i].grad_buffer().data(), xs[i].numel());
    });
  }
  return out;
}

}  // namespace nr
