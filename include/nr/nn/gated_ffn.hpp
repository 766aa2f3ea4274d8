// nr/nn/gated_ffn.hpp — the gated feed-forward block of Llama (SiLU) and Gemma (GELU).
//
//   y = down( act(gate(x)) * up(x) )      x (B, T, C), gate/up: C -> F, down: F -> C
// act(g) * u is one fused op (ops/gated_activation.hpp). The activation is a policy type so the
// choice is made at compile time: GatedFfn<Silu> (Llama), GatedFfn<GeluTanh> (Gemma).
#pragma once

#include "nr/nn/config.hpp"
#include "nr/nn/linear.hpp"
#include "nr/ops/gated_activation.hpp"

namespace nr {

struct Silu {
  static constexpr const char* hf_name = "silu";
  static Var gated(const Var& gate, const Var& up) { return silu_mul(gate, up); }
};
struct GeluTanh {
  static constexpr const char* hf_name = "gelu_pytorch_tanh";
  static Var gated(const Var& gate, const Var& up) { return gelu_mul(gate, up); }
};

template <class Act = Silu, class LinearT = Linear>
struct GatedFfn {
  // The ModelConfig::hidden_act this FFN computes; LanguageModel's constructor compares them.
  static constexpr const char* hidden_act = Act::hf_name;
  LinearT gate_proj, up_proj, down_proj;

  GatedFfn() = default;
  GatedFfn(int64_t dim, int64_t hidden, Rng& rng)
      : gate_proj(dim, hidden, rng), up_proj(dim, hidden, rng), down_proj(hidden, dim, rng) {}
  GatedFfn(const ModelConfig& c, Rng& rng) : GatedFfn(c.hidden_size, c.intermediate_size, rng) {}

  Var operator()(const Var& x, ForwardContext&) const {  // (B, T, C) -> (B, T, C)
    return down_proj(Act::gated(gate_proj(x), up_proj(x)));
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    gate_proj.visit_parameters(f, prefix + "gate_proj.");
    up_proj.visit_parameters(f, prefix + "up_proj.");
    down_proj.visit_parameters(f, prefix + "down_proj.");
  }
};

}  // namespace nr
