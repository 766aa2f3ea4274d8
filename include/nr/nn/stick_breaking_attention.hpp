// nr/nn/stick_breaking_attention.hpp — self-attention with stick-breaking weights and no
// position embedding (ModuleFormer, Section 3.2).
//
//   q = x Wq^T (B, T, H*D),  k = x Wk^T, v = x Wv^T (B, T, Hkv*D)
//   o = stick_breaking_attention(q, k, v)     (ops/stick_breaking_attention.hpp)
//   y = o Wo^T (B, T, C)
// StickBreakingKernel is the kernel policy of SelfAttention (nn/attention.hpp), and
// StickBreakingAttention<LinearT> a drop-in for Attention<> as the Attn of a Block: the same
// parameter names (q_proj, k_proj, v_proj, o_proj) and shapes, so a checkpoint of one loads into
// the other, but no RoPE: the stick-breaking process attends to the most recent matching key,
// which encodes positions by itself ("negating the need for explicit modeling of position",
// Section 3.2). rope_theta of the ModelConfig is therefore unused. The Transformer-XL style cache
// of the previous batch's keys and values that the paper uses during pretraining is not
// implemented: each training window stands alone. (Generation's KV cache works as for softmax
// attention: keys carry no position, so caching them is exact.)
#pragma once

#include "nr/nn/attention.hpp"
#include "nr/ops/stick_breaking_attention.hpp"

namespace nr {

struct StickBreakingKernel {
  static constexpr const char* name = "stick_breaking";
  static Var encode_positions(const Var& x, int64_t /*heads*/, double /*rope_theta*/, int64_t /*offset*/) { return x; }
  static Var attend(const Var& q, const Var& k, const Var& v, int64_t H, int64_t Hkv, int64_t past) {
    return stick_breaking_attention(q, k, v, H, Hkv, past);
  }
};

template <class LinearT = Linear>
using StickBreakingAttention = SelfAttention<StickBreakingKernel, LinearT>;

}  // namespace nr
