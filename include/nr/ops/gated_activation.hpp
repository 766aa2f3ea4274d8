// nr/ops/gated_activation.hpp — the fused core of a gated feed-forward block (Shazeer 2020):
//
//   silu_mul(gate, up) = silu(gate) * up     (SwiGLU: Llama, Mistral, ...)
//   gelu_mul(gate, up) = gelu(gate) * up     (GeGLU with tanh GELU: Gemma)
//   gate, up, y (..., F) same shape, F the hidden width of the block, in
//   FFN(x) = down( act(x W_gate^T) * (x W_up^T) ).
//
// One pass reads gate and up and writes y; the activation itself is never stored. The backward
// recomputes it, which costs one exp per element and saves a (B, T, F) tensor per block.
//
// Backward (accumulated with +=), G = dL/dy, saved: the inputs gate and up; with a = act(gate):
//   dgate += G * up * act'(gate)
//   dup   += G * a
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/ops/gelu.hpp"
#include "nr/ops/op_support.hpp"
#include "nr/ops/silu.hpp"

namespace nr::cpu {

// y[i] = act(gate[i]) * up[i] for i < n.
template <class Act>
inline void gated_forward(const float* gate, const float* up, float* y, int64_t n, Act act) {
#pragma omp parallel for if (n > nr::detail::parallel_grain)
  for (int64_t i = 0; i < n; ++i) y[i] = act.value(gate[i]) * up[i];
}

// dgate[i] += g[i] * up[i] * act'(gate[i]) and dup[i] += g[i] * act(gate[i]); either output may
// be null (that input needs no gradient). One loop per case, so that each vectorises.
template <class Act>
inline void gated_backward(const float* gate, const float* up, const float* g, float* dgate, float* dup, int64_t n,
                           Act act) {
  const bool parallel = n > nr::detail::parallel_grain;
  if (dgate && dup) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float a = act.value(gate[i]);
      dgate[i] += g[i] * up[i] * act.derivative(gate[i], a);
      dup[i] += g[i] * a;
    }
  } else if (dgate) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) dgate[i] += g[i] * up[i] * act.derivative(gate[i], act.value(gate[i]));
  } else if (dup) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) dup[i] += g[i] * act.value(gate[i]);
  }
}

}  // namespace nr::cpu

namespace nr {

namespace detail {

template <class Act>
inline Var gated_op(const Var& gate, const Var& up, const char* name, Act act) {
  expect_dense(gate, name, "gate");
  expect_dense(up, name, "up");
  if (!(gate.shape() == up.shape()))
    throw ShapeError(fmt::format("{}: gate {} and up {} must have the same shape", name, gate.shape().str(),
                                 up.shape().str()));
  Tensor y = Tensor::empty(gate.shape());  // (..., F)
  cpu::gated_forward(gate.value().data(), up.value().data(), y.data(), y.numel(), act);

  Var out(std::move(y), any_requires_grad(gate, up));
  if (out.requires_grad()) {
    active_tape().record([gate, up, out, act]() {
      const float* g = output_grad(out);
      if (!g) return;
      float* dgate = gate.requires_grad() ? gate.grad_buffer().data() : nullptr;
      float* dup = up.requires_grad() ? up.grad_buffer().data() : nullptr;
      cpu::gated_backward(gate.value().data(), up.value().data(), g, dgate, dup, gate.numel(), act);
    });
  }
  return out;
}

}  // namespace detail

// y (..., F) = silu(gate (..., F)) * up (..., F).
inline Var silu_mul(const Var& gate, const Var& up) { return detail::gated_op(gate, up, "silu_mul", pointwise::Silu{}); }

// y (..., F) = gelu_tanh(gate (..., F)) * up (..., F).
inline Var gelu_mul(const Var& gate, const Var& up) {
  return detail::gated_op(gate, up, "gelu_mul", pointwise::GeluTanh{});
}

}  // namespace nr
