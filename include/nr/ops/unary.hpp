// nr/ops/unary.hpp — the machinery shared by every pointwise op y = f(x).
//
//   y_i = f(x_i)                         x, y (...) any shape, same shape
//   dx_i += g_i * f'(x_i, y_i)           g = dL/dy
//
// A pointwise function is a small struct (see sigmoid.hpp, silu.hpp, gelu.hpp, elu.hpp, l1.hpp)
// holding any parameters it has (ELU's alpha) and two members:
//   float value(float x) const                 f(x)
//   float derivative(float x, float y) const   f'(x), given x and y = f(x)
// Each derivative reads whichever of x and y is cheaper: sigmoid' = y (1 - y) needs only y,
// silu' needs x. Both are at hand in the backward without extra memory, because the closure
// keeps the input Var (x) and the output Var (y) alive anyway; nothing else is saved.
//
// The structs live in nr::pointwise and are plain scalar math, so a CUDA kernel can reuse them;
// the loops over raw arrays live in nr::cpu, as the kernels of every other op.
#pragma once

#include <cstdint>

#include "nr/autograd/tape.hpp"
#include "nr/autograd/var.hpp"
#include "nr/core/tensor.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// y[i] = fn.value(x[i]) for i < n.
template <class Fn>
inline void unary_forward(const float* x, float* y, int64_t n, Fn fn) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) y[i] = fn.value(x[i]);
}

// dx[i] += g[i] * fn.derivative(x[i], y[i]) for i < n (accumulates).
template <class Fn>
inline void unary_backward(const float* x, const float* y, const float* g, float* dx, int64_t n, Fn fn) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) dx[i] += g[i] * fn.derivative(x[i], y[i]);
}

}  // namespace nr::cpu

namespace nr::detail {

// Applies the pointwise function fn to x (...) and records its backward; `name` is the op's name
// in error messages. Returns y (...), same shape as x.
template <class Fn>
inline Var unary_op(const Var& x, const char* name, Fn fn) {
  expect_dense(x, name, "x");
  Tensor y = Tensor::empty(x.shape());  // (...)
  cpu::unary_forward(x.value().data(), y.data(), x.numel(), fn);

  Var out(std::move(y), any_requires_grad(x));
  if (out.requires_grad()) {
    // Saved: x (the input Var) and out (its value is y). Backward: dx += g * f'(x, y).
    active_tape().record([x, out, fn]() {
      const float* g = output_grad(out);
      if (!g) return;
      cpu::unary_backward(x.value().data(), out.value().data(), g, x.grad_buffer().data(), x.numel(), fn);
    });
  }
  return out;
}

}  // namespace nr::detail
