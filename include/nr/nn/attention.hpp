// nr/nn/attention.hpp — self-attention: projections, grouped-query heads and the output
// projection, around a kernel policy that decides how positions enter and how a query weighs the
// keys.
//
//   q = x Wq^T (B, T, H*D),  k = x Wk^T, v = x Wv^T (B, T, Hkv*D)
//   q, k <- Kernel::encode_positions(q), (k)       RoPE at absolute positions, or nothing
//   o = Kernel::attend(q, k, v)   (B, T, H*D)      per head, causal; query head h reads kv head
//                                                   h / (H / Hkv) (ops/attention_heads.hpp)
//   y = o Wo^T (B, T, C)
// Kernels (the AttentionKernel concept below):
//   SoftmaxRopeKernel     softmax(q k^T / sqrt(D) + causal mask) v, RoPE (rotate-half, base
//                         rope_theta): Llama's attention, nr::Attention<LinearT>
//   StickBreakingKernel   stick-breaking weights, no position encoding (ModuleFormer):
//                         nr::StickBreakingAttention<LinearT>, nn/stick_breaking_attention.hpp
// MixtureOfAttention (nn/mixture_of_attention.hpp) takes the same kernels.
// Parameter names follow Hugging Face Llama: q_proj, k_proj, v_proj, o_proj, for every kernel, so
// a checkpoint of one loads into the other.
//
// Generation: when ForwardContext::kv_cache is set (nn/kv_cache.hpp), x holds the T tokens that
// follow the past = kv_cache->past() cached ones: q and k are encoded at positions past .. past +
// T - 1, k and v are appended to this layer's cache, and the queries attend to all past + T keys.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <tuple>

#include "nr/nn/config.hpp"
#include "nr/nn/kv_cache.hpp"
#include "nr/nn/linear.hpp"
#include "nr/ops/attention.hpp"
#include "nr/ops/rope.hpp"

namespace nr {

// A kernel: how positions enter, and the causal attention itself.
//   encode_positions(x (B', T, heads*D), heads, rope_theta, offset) -> (B', T, heads*D): time t
//     is absolute position offset + t;
//   attend(q (B', T, H*D), k, v (B', past + T, Hkv*D), H, Hkv, past) -> (B', T, H*D): query row
//     i is position past + i and sees the keys j <= past + i.
template <class K>
concept AttentionKernel = requires(const Var& x, int64_t n, double theta) {
  { K::name } -> std::convertible_to<const char*>;
  { K::encode_positions(x, n, theta, n) } -> std::same_as<Var>;
  { K::attend(x, x, x, n, n, n) } -> std::same_as<Var>;
};

// Softmax attention with rotary position embeddings (ops/rope.hpp, ops/attention.hpp).
struct SoftmaxRopeKernel {
  static constexpr const char* name = "softmax_rope";
  static Var encode_positions(const Var& x, int64_t heads, double rope_theta, int64_t offset) {
    return rope(x, heads, rope_theta, offset);
  }
  static Var attend(const Var& q, const Var& k, const Var& v, int64_t H, int64_t Hkv, int64_t past) {
    return causal_attention(q, k, v, H, Hkv, past);
  }
};

template <AttentionKernel Kernel, class LinearT = Linear>
struct SelfAttention {
  using kernel_type = Kernel;

  LinearT q_proj, k_proj, v_proj, o_proj;  // (H*D, C), (Hkv*D, C), (Hkv*D, C), (C, H*D)
  int64_t n_heads = 0, n_kv_heads = 0;     // H, Hkv
  double rope_theta = 10000.0;             // read by kernels that encode positions with RoPE

  SelfAttention() = default;
  SelfAttention(const ModelConfig& c, Rng& rng)
      : q_proj(c.hidden_size, c.num_attention_heads * c.head_dim(), rng),
        k_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        v_proj(c.hidden_size, c.num_key_value_heads * c.head_dim(), rng),
        o_proj(c.num_attention_heads * c.head_dim(), c.hidden_size, rng),
        n_heads(c.num_attention_heads),
        n_kv_heads(c.num_key_value_heads),
        rope_theta(c.rope_theta) {}

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    KvCache* cache = ctx.kv_cache;
    const int64_t past = cache ? cache->past() : 0;
    const Var q = Kernel::encode_positions(q_proj(x), n_heads, rope_theta, past);  // (B, T, H*D)
    Var k = Kernel::encode_positions(k_proj(x), n_kv_heads, rope_theta, past);     // (B, T, Hkv*D)
    Var v = v_proj(x);                                                             // (B, T, Hkv*D)
    if (cache) std::tie(k, v) = cache->append(k, v);  // (1, past + T, Hkv*D) each
    return o_proj(Kernel::attend(q, k, v, n_heads, n_kv_heads, past));
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    q_proj.visit_parameters(f, prefix + "q_proj.");
    k_proj.visit_parameters(f, prefix + "k_proj.");
    v_proj.visit_parameters(f, prefix + "v_proj.");
    o_proj.visit_parameters(f, prefix + "o_proj.");
  }
};

// Llama's attention: softmax with RoPE, projections of type LinearT (Linear, LoraLinear, ...).
template <class LinearT = Linear>
using Attention = SelfAttention<SoftmaxRopeKernel, LinearT>;

}  // namespace nr
