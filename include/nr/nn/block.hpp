// nr/nn/block.hpp — one pre-norm transformer block.
//
//   h   = x + attn(norm1(x))
//   out = h + ffn(norm2(h))
// Attention and FFN are template parameters (any type callable as (Var, ForwardContext&) -> Var
// with visit_parameters), so a backbone's layers are chosen at compile time.
#pragma once

#include "nr/core/rng.hpp"
#include "nr/nn/config.hpp"
#include "nr/nn/rms_norm.hpp"
#include "nr/ops/elementwise.hpp"

namespace nr {

template <class M>
concept Layer = Module<M> && requires(const M& m, const Var& x, ForwardContext& ctx) {
  { m(x, ctx) } -> std::convertible_to<Var>;
};

template <Layer Attn, Layer Ffn>
struct Block {
  RMSNorm input_layernorm;           // norm1
  Attn self_attn;
  RMSNorm post_attention_layernorm;  // norm2
  Ffn mlp;

  Block() = default;
  Block(const ModelConfig& c, Rng& rng)
      : input_layernorm(c.hidden_size, c.rms_norm_eps),
        self_attn(c, rng),
        post_attention_layernorm(c.hidden_size, c.rms_norm_eps),
        mlp(c, rng) {}

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const Var h = x + self_attn(input_layernorm(x), ctx);
    return h + mlp(post_attention_layernorm(h), ctx);
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    input_layernorm.visit_parameters(f, prefix + "input_layernorm.");
    self_attn.visit_parameters(f, prefix + "self_attn.");
    post_attention_layernorm.visit_parameters(f, prefix + "post_attention_layernorm.");
    mlp.visit_parameters(f, prefix + "mlp.");
  }
};

}  // namespace nr
