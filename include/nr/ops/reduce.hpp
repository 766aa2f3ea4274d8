// nr/ops/reduce.hpp — reductions of a whole tensor to a scalar.
//
//   sum(a)  = sum_i a_i                 a (...) any shape  ->  scalar of shape ()
//   mean(a) = sum(a) / n,  n = a.numel()
// The sum accumulates in double, so a mean over millions of float elements keeps the float
// precision of its result.
//
// Backward (accumulated with +=), g = dL/dy (a scalar); nothing is saved but the element count:
//   sum:   da_i += g
//   mean:  da_i += g / n
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// sum_i x[i] for i < n, in double.
inline double sum(const float* x, int64_t n) {
  double acc = 0.0;
#pragma omp parallel for reduction(+ : acc) if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]);
  return acc;
}

// d[i] += v for i < n.
inline void add_constant(float* d, float v, int64_t n) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) d[i] += v;
}

}  // namespace nr::cpu

namespace nr {

namespace detail {

// sum(a) * factor as a scalar Var (); backward da += g * factor.
inline Var scaled_sum(const Var& a, double factor, const char* name) {
  expect_dense(a, name, "a");
  const int64_t n = a.numel();
  Var out(Tensor::scalar(static_cast<float>(cpu::sum(a.value().data(), n) * factor)), any_requires_grad(a));
  if (out.requires_grad()) {
    active_tape().record([a, out, n, factor]() {
      const float* g = output_grad(out);  // ()
      if (!g) return;
      cpu::add_constant(a.grad_buffer().data(), static_cast<float>(g[0] * factor), n);
    });
  }
  return out;
}

}  // namespace detail

// Scalar () = sum of every element of a (...).
inline Var sum(const Var& a) { return detail::scaled_sum(a, 1.0, "sum"); }

// Scalar () = mean of every element of a (...); a must not be empty.
inline Var mean(const Var& a) {
  if (a.numel() == 0) throw ShapeError(fmt::format("mean: cannot average the empty shape {}", a.shape().str()));
  return detail::scaled_sum(a, 1.0 / static_cast<double>(a.numel()), "mean");
}

}  // namespace nr
