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
#include <type_traits>

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

// dgate[i] (+)= g[i] * up[i] * act'(gate[i]) and dup[i] (+)= g[i] * act(gate[i]); either output may
// be null (that input needs no gradient). `overwrite_*`: write (=) instead of accumulating (+=),
// for a gradient buffer that was just allocated. One loop per case, so that each vectorises.
template <class Act>
inline void gated_backward(const float* gate, const float* up, const float* g, float* dgate, float* dup, int64_t n,
                           Act act, bool overwrite_gate = false, bool overwrite_up = false) {
  const bool parallel = n > nr::detail::parallel_grain;
  auto both = [&](auto og, auto ou) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float a = act.value(gate[i]);
      const float vg = g[i] * up[i] * act.derivative(gate[i], a), vu = g[i] * a;
      dgate[i] = decltype(og)::value ? vg : dgate[i] + vg;
      dup[i] = decltype(ou)::value ? vu : dup[i] + vu;
    }
  };
  using Yes = std::true_type;
  using No = std::false_type;
  if (dgate && dup) {
    if (overwrite_gate && overwrite_up) both(Yes{}, Yes{});
    else if (overwrite_gate) both(Yes{}, No{});
    else if (overwrite_up) both(No{}, Yes{});
    else both(No{}, No{});
  } else if (dgate) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float vg = g[i] * up[i] * act.derivative(gate[i], act.value(gate[i]));
      dgate[i] = overwrite_gate ? vg : dgate[i] + vg;
    }
  } else if (dup) {
#pragma omp parallel for if (parallel)
    for (int64_t i = 0; i < n; ++i) {
      const float vu = g[i] * act.value(gate[i]);
      dup[i] = overwrite_up ? vu : dup[i] + vu;
    }
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
      // A gradient that does not exist yet is written (=) rather than zero-filled and added to;
      // when gate and up are the same Var, the second contribution must accumulate.
      bool fresh_gate = false, fresh_up = false;
      float* dgate = gate.requires_grad() ? gate.grad_buffer_for_overwrite(fresh_gate).data() : nullptr;
      float* dup = nullptr;
      if (up.requires_grad()) dup = up.same_as(gate) ? dgate : up.grad_buffer_for_overwrite(fresh_up).data();
      if (dup == dgate && dup) {  // silu_mul(x, x): the two terms go into one buffer, in turn
        cpu::gated_backward(gate.value().data(), up.value().data(), g, dgate, nullptr, gate.numel(), act, fresh_gate);
        cpu::gated_backward(gate.value().data(), up.value().data(), g, nullptr, dup, gate.numel(), act, false, false);
        return;
      }
      cpu::gated_backward(gate.value().data(), up.value().data(), g, dgate, dup, gate.numel(), act, fresh_gate,
                          fresh_up);
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
