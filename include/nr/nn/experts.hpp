// nr/nn/experts.hpp — a sparse mixture of gated feed-forward experts (SMoE), usable as the FFN
// of a Block (ModuleFormer, Section 3.1; pretraining losses Sections 4.1-4.2; new experts 4.3).
//
// For token vectors x (B, T, C), seen as N = B*T rows:
//   g(. | x)  = softmax(router(x))                       (N, E), nn/router.hpp
//   S(x)      = the k experts with the largest g(e | x)  (top-k, not differentiable)
//   y(x)      = sum_{e in S(x)} g(e | x) FFN_e(x)         FFN_e(x) = W_down,e (act(W_gate,e x) * W_up,e x)
// Each expert is a GatedFfn<Act> (SiLU by default) of hidden width h: W_gate,e, W_up,e (h, C) and
// W_down,e (C, h). The gates are the router probabilities as they are: the paper's TopK "sets all
// gates to zero except the top k" and the authors' code does not renormalise either.
// MoeConfig::normalize_top_k = true uses the softmax over the k selected logits instead (the
// selected gates then sum to 1, as in Mixtral). The output is differentiable with respect to x,
// the experts' weights and the router (through the selected gates); which experts are selected
// is not.
//
// Computation (no expert ever sees a token it was not chosen for):
//   1. dispatch: the N*k (token, slot) pairs sorted expert by expert (ExpertDispatch);
//   2. for each expert e with M_e > 0 tokens: x_e = gather_rows(x, tokens of e) (M_e, C),
//      y_e = FFN_e(x_e) (M_e, C) with ordinary matmuls;
//   3. Y = concat_rows(y_0, y_1, ...) (N*k, C), Y = scale_rows(Y, gates (N*k, 1)),
//      y = scatter_add_rows(Y, tokens, N) (N, C): each token sums its k weighted outputs.
//
// Auxiliary losses (weights in MoeConfig, pushed into ForwardContext::local_losses, computed on
// the full distribution g of all experts, nn/moe_losses.hpp): mi_weight * (H(e|x) - H(e)) for
// pretraining, concentration_weight * H(e) for fine-tuning, and for inserted experts
// routing_reg_weight * ||A'||_F^2.
//
// New experts (Section 4.3, ext/insert_experts.hpp adds them to a pretrained model): E' more
// experts in `new_experts`, scored by the new router rows A'. NewExpertsConfig::routing chooses
// between sharing the k slots with the old experts (Eq. 9 as written) and extra slots that leave
// the old experts' routing untouched (see nn/moe_config.hpp). Their W_down starts at zero.
//
// With ForwardContext::collect_stats, the layer adds to the histograms
//   "layer<l>.mlp.expert_tokens"       tokens routed to each expert (expert pruning reads it),
//   "layer<l>.mlp.expert_probability"  sum over tokens of g(e | x).
//
// Tensor names under the FFN's prefix ("model.layers.<l>.mlp."): router.* (router.hpp),
// experts.<e>.gate_proj.weight, experts.<e>.up_proj.weight, experts.<e>.down_proj.weight, and
// new_experts.<j>.{gate,up,down}_proj.weight for inserted experts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/nn/config.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/moe_config.hpp"
#include "nr/nn/moe_losses.hpp"
#include "nr/nn/router.hpp"
#include "nr/ops/concat_rows.hpp"
#include "nr/ops/gather_rows.hpp"
#include "nr/ops/reshape.hpp"
#include "nr/ops/row_scale.hpp"
#include "nr/ops/scatter_add_rows.hpp"

namespace nr {

inline std::string expert_tokens_stat_name(int64_t layer) { return fmt::format("layer{}.mlp.expert_tokens", layer); }
inline std::string expert_probability_stat_name(int64_t layer) {
  return fmt::format("layer{}.mlp.expert_probability", layer);
}

// Runs each expert on its block of dispatched rows and combines: y (N, C) = scatter_add_rows(
// scale_rows(concat_rows(expert_e(gather_rows(x, tokens of e))), gates), tokens, N).
// x (N, C); gates (N*K, 1) in the dispatch's expert-major order; expert_at(e) returns expert e.
template <class ExpertAt>
Var run_dispatched_experts(const Var& x, const ExpertDispatch& d, const Var& gates, ExpertAt&& expert_at,
                           ForwardContext& ctx) {
  std::vector<Var> outputs;
  for (int64_t e = 0; e < d.experts; ++e) {
    if (d.rows_of(e) == 0) continue;  // no token chose it: no work, no gradient
    outputs.push_back(expert_at(e)(gather_rows(x, d.slice(d.token, e)), ctx));  // (M_e, C)
  }
  if (outputs.empty()) return Var(Tensor::zeros(Shape{d.tokens, x.shape().back()}));
  return scatter_add_rows(scale_rows(concat_rows(outputs), gates), d.token, d.tokens);
}

// The column sums of probs (N, E) as doubles (for ForwardContext histograms).
inline std::vector<double> column_sums(const Tensor& probs) {
  const int64_t N = probs.shape()[0], E = probs.shape()[1];
  std::vector<double> s(static_cast<size_t>(E), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t e = 0; e < E; ++e) s[static_cast<size_t>(e)] += probs.data()[n * E + e];
  return s;
}

template <class Act = Silu>
struct Experts {
  using Expert = GatedFfn<Act>;
  static constexpr const char* hidden_act = Act::hf_name;  // compared with ModelConfig::hidden_act

  Router router;
  std::vector<Expert> experts;      // E experts, each (h, C) gate/up and (C, h) down
  std::vector<Expert> new_experts;  // E' inserted experts
  int64_t top_k = 2;
  bool normalize_top_k = false;
  double mi_weight = 0.0;
  double concentration_weight = 0.0;
  NewExpertsConfig new_config;  // how new experts are routed and regularised
  int64_t layer = -1;           // block index, names the statistics

  Experts() = default;
  // Layer `layer_index` of a model of config c: E = m.experts_in_layer(layer_index) experts of
  // width m.hidden_of(c), plus m.new_experts.count inserted ones (for loading such a checkpoint).
  Experts(const ModelConfig& c, const MoeConfig& m, int64_t layer_index, Rng& rng)
      : top_k(m.top_k),
        normalize_top_k(m.normalize_top_k),
        mi_weight(m.mi_weight),
        concentration_weight(m.concentration_weight),
        layer(layer_index) {
    m.validate(c);
    const int64_t E = m.experts_in_layer(layer_index);
    router = Router(m.router, c.hidden_size, m.router_hidden_of(c), E, rng);
    for (int64_t e = 0; e < E; ++e) experts.emplace_back(c.hidden_size, m.hidden_of(c), rng);
    if (m.new_experts.count > 0) add_new_experts(m.new_experts, rng);
  }

  int64_t num_experts() const { return static_cast<int64_t>(experts.size() + new_experts.size()); }
  int64_t hidden() const { return experts.front().gate_proj.out_features(); }

  // Appends cfg.count experts with W_gate, W_up ~ N(0, init_std^2) and W_down = 0, and as many
  // rows of A' ~ N(0, init_std^2) to the router. Their output is zero until W_down trains.
  void add_new_experts(const NewExpertsConfig& cfg, Rng& rng) {
    if (cfg.count < 1) throw ValueError(fmt::format("Experts: cannot add {} new experts", cfg.count));
    const int64_t C = experts.front().gate_proj.in_features(), h = hidden();
    for (int64_t j = 0; j < cfg.count; ++j) {
      Expert ex;
      ex.gate_proj = Linear(C, h, rng, cfg.init_std);
      ex.up_proj = Linear(C, h, rng, cfg.init_std);
      ex.down_proj = Linear(h, C, rng, 0.0);
      ex.down_proj.weight.value().zero_();
      new_experts.push_back(std::move(ex));
    }
    router.add_new_experts(cfg.count, cfg.init_std, rng);
    new_config = cfg;
    new_config.count = static_cast<int64_t>(new_experts.size());
    if (new_config.routing == NewExpertRouting::extra_slots &&
        (new_config.top_k < 1 || new_config.top_k > new_config.count))
      throw ValueError(fmt::format("Experts: new-expert top_k {} must be in [1, {}]", new_config.top_k, new_config.count));
  }

  // Keeps the old experts whose flag is set (in order) and the matching rows of A; the survivors
  // are renumbered 0, 1, ... (expert pruning, ext/expert_pruning.hpp).
  void keep_experts(const std::vector<uint8_t>& keep) {
    if (keep.size() != experts.size())
      throw ValueError(fmt::format("Experts: {} keep flags for {} experts", keep.size(), experts.size()));
    std::vector<Expert> kept;
    std::vector<int64_t> rows;
    for (size_t e = 0; e < keep.size(); ++e)
      if (keep[e]) {
        kept.push_back(std::move(experts[e]));
        rows.push_back(static_cast<int64_t>(e));
      }
    if (static_cast<int64_t>(kept.size()) < top_k)
      throw ValueError(fmt::format("Experts: keeping {} experts leaves fewer than top_k = {}", kept.size(), top_k));
    const int64_t W = router.feature_width();
    Tensor a = Tensor::empty(Shape{static_cast<int64_t>(rows.size()), W});
    for (size_t i = 0; i < rows.size(); ++i)
      std::copy_n(router.expert_embedding.value().data() + rows[i] * W, W, a.data() + static_cast<int64_t>(i) * W);
    router.expert_embedding = Var(std::move(a), router.expert_embedding.requires_grad());
    experts = std::move(kept);
  }

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const Shape xs = x.shape();
    const int64_t C = xs.back(), N = xs.rows();
    if (N == 0) return Var(Tensor::zeros(xs));
    const Var x2 = reshape(x, Shape{N, C});
    const int64_t E = static_cast<int64_t>(experts.size()), E_all = num_experts();
    const bool extra = E_all > E && new_config.routing == NewExpertRouting::extra_slots;

    const Var f = router.features(x2);           // (N, D_emb)
    const Var logits_all = router.logits(f, true);  // (N, E + E')
    const Var probs_all = softmax(logits_all);
    // The distribution of the first k slots: all experts (shared), or the old ones only (extra).
    const Var logits_k = extra ? router.logits(f, false) : logits_all;
    const Var probs_k = extra ? softmax(logits_k) : probs_all;
    const int64_t k_new = extra ? new_config.top_k : 0, K = top_k + k_new;

    std::vector<int32_t> choice(static_cast<size_t>(N * K));
    select_top_k(probs_k.value(), top_k, 0, extra ? E : E_all, choice, K, 0);
    if (extra) select_top_k(probs_all.value(), k_new, E, E_all, choice, K, top_k);
    const ExpertDispatch d = make_dispatch(std::move(choice), N, K, E_all);

    // Gates, token-major: the k first slots, then (extra) the k_new new-expert slots.
    Var g = slot_gates(normalize_top_k ? logits_k : probs_k, d, 0, top_k, normalize_top_k);  // (N*k, 1)
    if (extra) g = concat_rows({g, slot_gates(probs_all, d, top_k, K, false)});              // + (N*k_new, 1)
    std::vector<int32_t> where(static_cast<size_t>(N * K));  // expert-major row -> row of g
    for (int64_t r = 0; r < N * K; ++r) {
      const int64_t p = d.pair[r], n = p / K, s = p % K;
      where[static_cast<size_t>(r)] =
          static_cast<int32_t>(s < top_k ? n * top_k + s : N * top_k + n * k_new + (s - top_k));
    }
    const Var gates = gather_rows(g, Indices(std::move(where), Shape{N * K}));  // (N*K, 1)

    if (mi_weight > 0.0) ctx.local_losses.push_back(mutual_information_loss(probs_all) * static_cast<float>(mi_weight));
    if (concentration_weight > 0.0)
      ctx.local_losses.push_back(load_concentration_loss(probs_all) * static_cast<float>(concentration_weight));
    if (E_all > E && new_config.routing_reg_weight > 0.0)
      ctx.local_losses.push_back(routing_regularization(router.new_expert_embedding) *
                                 static_cast<float>(new_config.routing_reg_weight));
    if (ctx.collect_stats) {
      ctx.add_histogram(expert_tokens_stat_name(layer), d.loads());
      ctx.add_histogram(expert_probability_stat_name(layer), column_sums(probs_all.value()));
    }

    const Var y = run_dispatched_experts(x2, d, gates, [&](int64_t e) -> const Expert& {
      return e < E ? experts[static_cast<size_t>(e)] : new_experts[static_cast<size_t>(e - E)];
    }, ctx);
    return reshape(y, xs);
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    router.visit_parameters(f, prefix + "router.");
    for (size_t e = 0; e < experts.size(); ++e) experts[e].visit_parameters(f, prefix + "experts." + std::to_string(e) + ".");
    for (size_t j = 0; j < new_experts.size(); ++j)
      new_experts[j].visit_parameters(f, prefix + "new_experts." + std::to_string(j) + ".");
  }
};

}  // namespace nr
