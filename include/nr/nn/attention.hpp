// nr/nn/attention.hpp — causal self-attention with rotary positions and grouped-query heads.
//
//   q = x Wq^T (B, T, H*D),  k = x Wk^T, v = x Wv^T (B, T, Hkv*D)
//   q, k <- RoPE(q), RoPE(k)              (rotate-half convention, base rope_theta)
//   o = softmax(q k^T / sqrt(D) + causal mask) v   per head; query head h reads kv head
//       h / (H / Hkv)                      (ops/attention.hpp, fused)
//   y = o Wo^T (B, T, C)
// Parameter names follow Hugging Face Llama: q_proj, k_proj, v_proj, o_proj.
#pragma once

#include "nr/nn/config.hpp"
#include "nr/nn/linear.hpp"
#include "nr/ops/attention.hpp"
#include "nr/ops/rope.hpp"

namespace nr {

template <class LinearT = Linear>
struct Attention {
  LinearT q_proj, k_proj, v_proj, o_proj;
  int64_t n_heads = 0, n_kv_heads = 0;
  double rope_theta = 10000.0;

  Attention() = default;
  Attention(const ModelConfig& c, Rng& rng)
      : q_proj(c.hidden_size, c.num_attention_heads * c.head_dim(), rng),
        k_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        v_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        o_proj(c.num_attention_heads * c.head_dim(), c.hidden_size, rng),
        n_heads(c.num_attention_heads),
        n_kv_heads(c.num_key_value_heads),
        rope_theta(c.rope_theta) {}

  Var operator()(const Var& x, ForwardContext&) const {  // (B, T, C) -> (B, T, C)
    const Var q = rope(q_proj(x), n_heads, rope_theta);     // (B, T, H*D)
    const Var k = rope(k_proj(x), n_kv_heads, rope_theta);  // (B, T, Hkv*D)
    const Var v = v_proj(x);                                // (B, T, Hkv*D)
    return o_proj(causal_attention(q, k, v, n_heads, n_kv_heads));
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    q_proj.visit_parameters(f, prefix + "q_proj.");
    k_proj.visit_parameters(f, prefix + "k_proj.");
    v_proj.visit_parameters(f, prefix + "v_proj.");
    o_proj.visit_parameters(f, prefix + "o_proj.");
  }
};

}  // namespace nr
