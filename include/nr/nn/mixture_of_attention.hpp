// nr/nn/mixture_of_attention.hpp — a mixture of attention heads (MoA): attention experts with
// their own query and output projections and shared keys and values (ModuleFormer, Section 3.1,
// after Zhang et al. 2022; stick-breaking heads, Section 3.2).
//
// E_a attention experts; expert e owns W_q,e (He*D, C) and W_o,e (C, He*D), He query heads of
// size D = head_dim; all experts share W_k, W_v (Hkv*D, C). For x (B, T, C), N = B*T tokens:
//   g(. | x) = softmax(router(x))  (N, E_a),  S(x) = its top k_a experts    (nn/router.hpp)
//   K = x W_k^T, V = x W_v^T                                                 (B, T, Hkv*D)
//   for each token i and selected expert e:  q_{i,e} = W_q,e x_i             (He*D)
//   o_{i,e} = attention(q_{i,e}; K, V)   causal, over the keys j <= i       (He*D)
//   y_i = sum_{e in S(x_i)} g(e | x_i) W_o,e o_{i,e}                         (C)
// The attention is a kernel policy of nn/attention.hpp: stick-breaking by default
// (StickBreakingKernel, no position embedding, as in ModuleFormer); SoftmaxRopeKernel gives
// softmax attention with RoPE instead.
//
// Computation: the N*k (token, slot) pairs are dispatched expert by expert (as in Experts); the
// queries of all pairs are placed slot-major, row s*N + n, so that the k slots form k copies of
// the batch: Q (k*B, T, He*D). K and V are repeated for each slot (gather_rows) to (k*B, T,
// Hkv*D), and ONE attention call with He query and Hkv key/value heads (He a multiple of Hkv)
// computes every o_{i,e}: the query of slot s at token i only reads keys of its own sequence.
// The outputs go back expert by expert through W_o,e, weighted by their gates and summed per
// token with scatter_add_rows. Gates, auxiliary losses (mi_weight, concentration_weight) and
// normalize_top_k are those of Experts, on the attention router.
//
// With ForwardContext::kv_cache (generation, batch 1; nn/kv_cache.hpp) the shared keys and values
// of earlier tokens come from the cache: the new tokens' K, V are position-encoded at their
// absolute positions, appended, and the whole cached K, V (past + T steps) is repeated per slot.
//
// With ForwardContext::collect_stats the layer adds the histogram
// "layer<l>.self_attn.expert_tokens" (tokens routed to each attention expert).
//
// Tensor names under the attention's prefix ("model.layers.<l>.self_attn."): router.*,
// experts.<e>.q_proj.weight, experts.<e>.o_proj.weight, k_proj.weight, v_proj.weight.
#pragma once

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "nr/nn/attention.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/kv_cache.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/linear.hpp"
#include "nr/nn/moe_config.hpp"
#include "nr/nn/moe_losses.hpp"
#include "nr/nn/router.hpp"
#include "nr/nn/stick_breaking_attention.hpp"

namespace nr {

inline std::string attention_expert_tokens_stat_name(int64_t layer) {
  return fmt::format("layer{}.self_attn.expert_tokens", layer);
}

// One attention expert: its query and output projections.
struct AttentionExpert {
  Linear q_proj;  // (He*D, C)
  Linear o_proj;  // (C, He*D)

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    q_proj.visit_parameters(f, prefix + "q_proj.");
    o_proj.visit_parameters(f, prefix + "o_proj.");
  }
};

template <AttentionKernel Kernel = StickBreakingKernel>
struct MixtureOfAttention {
  Router router;
  std::vector<AttentionExpert> experts;  // E_a
  Linear k_proj, v_proj;                 // shared, (Hkv*D, C)
  int64_t top_k = 2;
  int64_t expert_heads = 0;  // He
  int64_t n_kv_heads = 0;    // Hkv
  double rope_theta = 10000.0;
  bool normalize_top_k = false;
  double mi_weight = 0.0;
  double concentration_weight = 0.0;
  int64_t layer = -1;

  MixtureOfAttention() = default;
  MixtureOfAttention(const ModelConfig& c, const MoeConfig& m, int64_t layer_index, Rng& rng)
      : top_k(m.attention_top_k),
        expert_heads(m.attention_heads_of(c)),
        n_kv_heads(c.num_key_value_heads),
        rope_theta(c.rope_theta),
        normalize_top_k(m.normalize_top_k),
        mi_weight(m.mi_weight),
        concentration_weight(m.concentration_weight),
        layer(layer_index) {
    m.validate(c);
    const int64_t C = c.hidden_size, D = c.head_dim();
    router = Router(m.router, C, m.router_hidden_of(c), m.attention_experts, rng);
    for (int64_t e = 0; e < m.attention_experts; ++e) {
      AttentionExpert ex;
      ex.q_proj = Linear(C, expert_heads * D, rng);
      ex.o_proj = Linear(expert_heads * D, C, rng);
      experts.push_back(std::move(ex));
    }
    k_proj = Linear(C, n_kv_heads * D, rng);
    v_proj = Linear(C, n_kv_heads * D, rng);
  }

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const Shape& xs = x.shape();
    if (xs.rank() != 3) throw ShapeError(fmt::format("MixtureOfAttention: input {} must be (B, T, C)", xs.str()));
    const int64_t B = xs[0], T = xs[1], C = xs[2], N = B * T, K = top_k, E = static_cast<int64_t>(experts.size());
    const int64_t HD = experts.front().q_proj.out_features(), KV = k_proj.out_features();
    if (N == 0) return Var(Tensor::zeros(xs));
    const Var x2 = reshape(x, Shape{N, C});

    const Var f = router.features(x2);
    const Var logits = router.logits(f, false);  // (N, E_a)
    const Var probs = softmax(logits);
    std::vector<int32_t> choice(static_cast<size_t>(N * K));
    select_top_k(probs.value(), K, 0, E, choice, K, 0);
    const ExpertDispatch d = make_dispatch(std::move(choice), N, K, E);
    const Var gates = gather_rows(slot_gates(normalize_top_k ? logits : probs, d, 0, K, normalize_top_k), d.pair);

    // Slot-major row s*N + n of every dispatched pair.
    std::vector<int32_t> slot_row(static_cast<size_t>(N * K));
    for (int64_t r = 0; r < N * K; ++r) {
      const int64_t p = d.pair[r];
      slot_row[static_cast<size_t>(r)] = static_cast<int32_t>((p % K) * N + p / K);
    }
    const Indices slot_rows(std::move(slot_row), Shape{N * K});

    // Queries of every (token, expert) pair, placed slot-major: (k*B, T, He*D).
    std::vector<Var> queries;
    for (int64_t e = 0; e < E; ++e)
      if (d.rows_of(e) > 0) queries.push_back(experts[static_cast<size_t>(e)].q_proj(gather_rows(x2, d.slice(d.token, e))));
    const Var q = reshape(scatter_add_rows(concat_rows(queries), slot_rows, N * K), Shape{K * B, T, HD});
    // Shared keys and values, one copy per slot: (k*B, Tk, Hkv*D), Tk = past + T. Without a cache
    // the positions are encoded after the copy (past = 0, Tk = T); a cache stores encoded keys.
    KvCache* cache = ctx.kv_cache;
    const int64_t past = cache ? cache->past() : 0, Tk = past + T, Nk = B * Tk;
    Var k = k_proj(x), v = v_proj(x);  // (B, T, Hkv*D)
    if (cache) std::tie(k, v) = cache->append(Kernel::encode_positions(k, n_kv_heads, rope_theta, past), v);
    if (K > 1) {
      std::vector<int32_t> rep(static_cast<size_t>(Nk * K));
      for (int64_t i = 0; i < Nk * K; ++i) rep[static_cast<size_t>(i)] = static_cast<int32_t>(i % Nk);
      const Indices repeat(std::move(rep), Shape{Nk * K});
      k = reshape(gather_rows(reshape(k, Shape{Nk, KV}), repeat), Shape{K * B, Tk, KV});
      v = reshape(gather_rows(reshape(v, Shape{Nk, KV}), repeat), Shape{K * B, Tk, KV});
    }
    const Var qe = Kernel::encode_positions(q, expert_heads, rope_theta, past);
    if (!cache) k = Kernel::encode_positions(k, n_kv_heads, rope_theta, 0);
    const Var o = reshape(Kernel::attend(qe, k, v, expert_heads, n_kv_heads, past), Shape{N * K, HD});

    std::vector<Var> outputs;
    for (int64_t e = 0; e < E; ++e)
      if (d.rows_of(e) > 0) outputs.push_back(experts[static_cast<size_t>(e)].o_proj(gather_rows(o, d.slice(slot_rows, e))));
    const Var y = scatter_add_rows(scale_rows(concat_rows(outputs), gates), d.token, N);

    if (mi_weight > 0.0) ctx.local_losses.push_back(mutual_information_loss(probs) * static_cast<float>(mi_weight));
    if (concentration_weight > 0.0)
      ctx.local_losses.push_back(load_concentration_loss(probs) * static_cast<float>(concentration_weight));
    if (ctx.collect_stats) ctx.add_histogram(attention_expert_tokens_stat_name(layer), d.loads());
    return reshape(y, xs);
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    router.visit_parameters(f, prefix + "router.");
    for (size_t e = 0; e < experts.size(); ++e) experts[e].visit_parameters(f, prefix + "experts." + std::to_string(e) + ".");
    k_proj.visit_parameters(f, prefix + "k_proj.");
    v_proj.visit_parameters(f, prefix + "v_proj.");
  }
};

// A full ModuleFormer block: stick-breaking attention experts and SiLU feed-forward experts.
using ModuleFormerBlock = Block<MixtureOfAttention<StickBreakingKernel>, Experts<Silu>>;
using ModuleFormer = LanguageModel<ModuleFormerBlock>;

}  // namespace nr
