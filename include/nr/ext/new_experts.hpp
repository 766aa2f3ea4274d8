// nr/ext/new_experts.hpp — new experts beside the FFN of a dense backbone: ModuleFormer's
// expert insertion (Section 4.3) for a model that had no experts, as a Block extension.
//
// The dense FFN stays as it is (frozen, weight 1); the extension adds a routed mixture of E' new
// SiLU-gated experts next to it. Its router scores the E' new experts AND one extra row that
// stands for the old FFN, in one softmax, so the old FFN competes for the probability mass:
//   n      = RMSNorm(x)                                           x (B, T, C), the extension input
//   f      = gelu(W n)          (D_emb)                           (mlp router; f = n when linear)
//   q      = softmax([a_0; A'] f)   (1 + E')                      a_0 (1, D_emb): the old FFN's row
//   S      = the top k' of the new experts by q_j (j >= 1)
//   ext(x) = sum_{j in S} q_j FFN'_j(n)
// and the Block adds ext to the residual stream beside the FFN (site ffn_parallel, default):
//   out = h + FFN(norm2(h)) + ext(h).
// How the router decides between the old FFN and the new experts: q_0 is the probability it
// gives to "the old FFN alone is enough" and 1 - q_0 = sum_j q_j the mass it gives to new
// experts; the new experts' outputs are added with their own q_j (at most 1 - q_0 in total for
// the selected ones), while the old FFN always contributes fully. A token whose a_0 . f logit
// dominates gets (almost) nothing added; the routing regularisation lambda ||A'||_F^2 (Eq. 10)
// keeps the new rows small and so keeps q_0 large unless the data pays for the new experts.
//
// Identity at initialisation: each new expert's W_down starts at zero, so ext(x) = 0 exactly and
// the extended model computes the backbone's logits bit for bit. W, a_0, A', W_gate and W_up
// start N(0, init_std^2) and the norm gain at 1. Everything here is new, hence trainable; the
// backbone is frozen by freeze_backbone (ext/backbone.hpp).
//
// Tensor names under "model.layers.<l>.adapter." (Block's extension prefix): norm.weight,
// router.input_proj.weight, router.expert_embedding.weight (a_0),
// router.new_experts.expert_embedding.weight (A'), new_experts.<j>.{gate,up,down}_proj.weight.
// With ForwardContext::collect_stats: the histogram "layer<l>.adapter.expert_tokens" and, per
// domain of ForwardContext::original, the stat "layer<l>.<original|new>.new_expert_mass" (mean of
// 1 - q_0 over tokens).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/nn/block.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/moe_losses.hpp"
#include "nr/nn/rms_norm.hpp"
#include "nr/nn/router.hpp"

namespace nr {

struct NewExpertsAdapterConfig {
  int64_t num_experts = 4;  // E'
  int64_t top_k = 1;        // k'
  int64_t hidden = 0;       // h, each new expert's hidden width (required)
  RouterKind router = RouterKind::mlp;
  int64_t router_hidden = 0;                         // D_emb (0: hidden_size)
  ExtensionSite site = ExtensionSite::ffn_parallel;  // where the block sits
  double routing_reg_weight = 0.0;                   // lambda of lambda ||A'||_F^2
  double init_std = 0.02;
};

template <class Act = Silu>
struct NewExperts {
  NewExpertsAdapterConfig config;
  int64_t layer = -1;
  RMSNorm norm;
  Router router;  // expert_embedding = a_0 (1, D_emb), new_expert_embedding = A' (E', D_emb)
  std::vector<GatedFfn<Act>> new_experts;

  ExtensionSite site() const { return new_experts.empty() ? ExtensionSite::none : config.site; }

  void init(const ModelConfig& c, const NewExpertsAdapterConfig& cfg, int64_t layer_index, Rng& rng) {
    if (cfg.hidden < 1) throw ValueError(fmt::format("new experts: hidden width must be at least 1, got {}", cfg.hidden));
    if (cfg.num_experts < 1 || cfg.top_k < 1 || cfg.top_k > cfg.num_experts)
      throw ValueError(fmt::format("new experts: need 1 <= top_k ({}) <= num_experts ({})", cfg.top_k, cfg.num_experts));
    if (cfg.site == ExtensionSite::none)
      throw ValueError("new experts: site must be attention_parallel, ffn_parallel or ffn_serial");
    if (cfg.routing_reg_weight < 0.0 || cfg.router_hidden < 0) throw ValueError("new experts: negative setting");
    config = cfg;
    layer = layer_index;
    const int64_t C = c.hidden_size;
    norm = RMSNorm(C, c.rms_norm_eps);
    router = Router(cfg.router, C, cfg.router_hidden > 0 ? cfg.router_hidden : C, 1, rng, cfg.init_std);
    router.add_new_experts(cfg.num_experts, cfg.init_std, rng);
    new_experts.clear();
    for (int64_t j = 0; j < cfg.num_experts; ++j) {
      GatedFfn<Act> ex;
      ex.gate_proj = Linear(C, cfg.hidden, rng, cfg.init_std);
      ex.up_proj = Linear(C, cfg.hidden, rng, cfg.init_std);
      ex.down_proj = Linear(cfg.hidden, C, rng, 0.0);
      ex.down_proj.weight.value().zero_();
      new_experts.push_back(std::move(ex));
    }
  }

  // Parameters added per layer for width C: norm, router, E' experts of width h.
  static int64_t parameter_count(int64_t C, const NewExpertsAdapterConfig& cfg) {
    const int64_t d = cfg.router == RouterKind::mlp ? (cfg.router_hidden > 0 ? cfg.router_hidden : C) : C;
    const int64_t router = (cfg.router == RouterKind::mlp ? d * C : 0) + (1 + cfg.num_experts) * d;
    return C + router + cfg.num_experts * 3 * C * cfg.hidden;
  }

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const Shape xs = x.shape();
    const int64_t C = xs.back(), N = xs.rows(), E = static_cast<int64_t>(new_experts.size()), K = config.top_k;
    if (N == 0) return Var(Tensor::zeros(xs));
    const Var n = reshape(norm(x), Shape{N, C});
    const Var probs = softmax(router.logits(router.features(n), true));  // (N, 1 + E'), column 0: old FFN
    std::vector<int32_t> choice(static_cast<size_t>(N * K));
    select_top_k(probs.value(), K, 1, 1 + E, choice, K, 0);
    const ExpertDispatch d = make_dispatch(std::move(choice), N, K, 1 + E);
    const Var gates = gather_rows(slot_gates(probs, d, 0, K, false), d.pair);  // (N*K, 1) expert-major

    if (E > 0 && config.routing_reg_weight > 0.0)
      ctx.local_losses.push_back(routing_regularization(router.new_expert_embedding) *
                                 static_cast<float>(config.routing_reg_weight));
    if (ctx.collect_stats) record_stats(d, probs.value(), ctx, xs);

    // Expert 0 (the old FFN) is never selected: run_dispatched_experts skips it (no rows).
    const Var y = run_dispatched_experts(n, d, gates, [&](int64_t e) -> const GatedFfn<Act>& {
      return new_experts[static_cast<size_t>(e - 1)];
    }, ctx);
    return reshape(y, xs);
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    if (new_experts.empty()) return;
    norm.visit_parameters(f, prefix + "norm.");
    router.visit_parameters(f, prefix + "router.");
    for (size_t j = 0; j < new_experts.size(); ++j)
      new_experts[j].visit_parameters(f, prefix + "new_experts." + std::to_string(j) + ".");
  }

 private:
  void record_stats(const ExpertDispatch& d, const Tensor& probs, ForwardContext& ctx, const Shape& xs) const {
    std::vector<double> loads = d.loads();
    loads.erase(loads.begin());  // drop the old FFN's column
    ctx.add_histogram(fmt::format("layer{}.adapter.expert_tokens", layer), loads);
    const int64_t B = xs.rank() >= 3 ? xs[0] : 1, T = xs.rows() / B, E1 = probs.shape()[1];
    for (int64_t b = 0; b < B; ++b) {
      const bool orig = !ctx.original.empty() && ctx.original[static_cast<size_t>(b)];
      double mass = 0.0;  // sum over the sequence's tokens of 1 - q_0
      for (int64_t t = 0; t < T; ++t) mass += 1.0 - probs.data()[(b * T + t) * E1];
      ctx.add_stat(fmt::format("layer{}.{}.new_expert_mass", layer, orig ? "original" : "new"), mass,
                   static_cast<double>(T));
    }
  }
};

// Adds new experts to every block of a model whose blocks carry a NewExperts extension.
template <class Model>
void attach_new_experts(Model& model, const NewExpertsAdapterConfig& cfg, Rng& rng) {
  for (size_t l = 0; l < model.layers.size(); ++l)
    model.layers[l].extension.init(model.config, cfg, static_cast<int64_t>(l), rng);
}

// A Llama backbone extended with new experts beside its FFN.
template <class Act = Silu>
using NewExpertsLlama = LanguageModel<Block<Attention<>, GatedFfn<Silu>, NewExperts<Act>>>;

}  // namespace nr
