// nr/nn/stick_breaking_attention.hpp — self-attention with stick-breaking weights and no
// position embedding (ModuleFormer, Section 3.2).
//
//   q = x Wq^T (B, T, H*D),  k = x Wk^T, v = x Wv^T (B, T, Hkv*D)
//   o = stick_breaking_attention(q, k, v)     (ops/stick_breaking_attention.hpp)
//   y = o Wo^T (B, T, C)
// A drop-in for Attention<> as the Attn of a Block: the same parameter names (q_proj, k_proj,
// v_proj, o_proj) and shapes, so a checkpoint of one loads into the other, but no RoPE: the
// stick-breaking process attends to the most recent matching key, which encodes positions by
// itself ("negating the need for explicit modeling of position", Section 3.2). rope_theta of the
// ModelConfig is therefore unused. The Transformer-XL style cache of the previous batch's keys
// and values that the paper uses during pretraining is not implemented: each window stands alone.
#pragma once

#include "nr/nn/config.hpp"
#include "nr/nn/linear.hpp"
#include "nr/ops/stick_breaking_attention.hpp"

namespace nr {

template <class LinearT = Linear>
struct StickBreakingAttention {
  LinearT q_proj, k_proj, v_proj, o_proj;
  int64_t n_heads = 0, n_kv_heads = 0;

  StickBreakingAttention() = default;
  StickBreakingAttention(const ModelConfig& c, Rng& rng)
      : q_proj(c.hidden_size, c.num_attention_heads * c.head_dim(), rng),
        k_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        v_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        o_proj(c.num_attention_heads * c.head_dim(), c.hidden_size, rng),
        n_heads(c.num_attention_heads),
        n_kv_heads(c.num_key_value_heads) {}

  Var operator()(const Var& x, ForwardContext&) const {  // (B, T, C) -> (B, T, C)
    return o_proj(stick_breaking_attention(q_proj(x), k_proj(x), v_proj(x), n_heads, n_kv_heads));
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    q_proj.visit_parameters(f, prefix + "q_proj.");
    k_proj.visit_parameters(f, prefix + "k_proj.");
    v_proj.visit_parameters(f, prefix + "v_proj.");
    o_proj.visit_parameters(f, prefix + "o_proj.");
  }
};

}  // namespace nr
