// nr/ext/adapter.hpp — adapters, gated adapters and neutral residues.
//
// The adapter block of the neutral-residues paper (Section 3, Figure 2), a SiLU-gated FFN with
// its own RMSNorm:
//   n = RMSNorm(x)                                   x (B, T, C)
//   a = W_out( silu(W_gate n) * (W_in n) )           W_gate, W_in: C -> h,  W_out: h -> C
// A gated adapter multiplies it by a per-token block gate computed from the same input:
//   z = w_g n  (B, T, 1),    y = act(z) * a,   act = ELU (neutral residues) or sigmoid
// and without a gate (vanilla adapter, Houlsby et al. 2019 in its gated-FFN form) y = a.
//
// Initialisation (Section 3, "Near-identical initialization"): W_out = 0, so the extended model
// starts exactly as the backbone; W_in, W_gate and w_g are drawn with He's variance 2 / d or the
// paper's low variance 1 / (d L), d = C the input dimension, L the number of layers.
//
// Local losses (Section 3, "Adapter gating & local loss"), pushed into the forward context:
//   l1:   alpha * mean |y| over the tokens of original-domain sequences only, pushing the
//         residue to zero on the old distribution (neutral residues);
//   BCE:  for the sigmoid gate, (w_bce / L) * BCE(z, target) with target 0 on original-domain
//         tokens and 1 on new-domain tokens: the gate becomes an explicit old/new domain
//         classifier. Divided by the depth L so that w_bce weighs the mean classifier loss of the
//         layers: every gate starts at BCE = ln 2 whatever it has learnt, so a sum over 30 layers
//         (21 nats against a language model's 3) would drown the language-modelling gradient.
//         The l1 term needs no such scaling: W_out = 0 makes it start at 0 and it stays small.
// Both need the per-sequence original-domain flags of the context; without them they are skipped.
//
// Where the block sits (parallel to the FFN by default, serially after it, or parallel to
// attention) is AdapterConfig::site; Block adds the output to the residual stream.
#pragma once

#include <cmath>
#include <string>

#include <fmt/format.h>

#include "nr/nn/block.hpp"
#include "nr/nn/config.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/linear.hpp"
#include "nr/nn/rms_norm.hpp"
#include "nr/ops/bce.hpp"
#include "nr/ops/elu.hpp"
#include "nr/ops/gated_activation.hpp"
#include "nr/ops/l1.hpp"
#include "nr/ops/row_scale.hpp"
#include "nr/ops/sigmoid.hpp"

namespace nr {

enum class AdapterInit { he, low_variance };

struct AdapterConfig {
  int64_t hidden = 0;                                // h, the adapter's hidden width
  ExtensionSite site = ExtensionSite::ffn_parallel;  // where the block sits
  AdapterInit init = AdapterInit::he;                // for W_in, W_gate and the block gate
  double l1_weight = 0.0;                            // alpha of the l1 local loss (0 = off)
  double bce_weight = 0.0;                           // weight of the layers' mean classifier loss (sigmoid gate)
};

// Gate policies: whether there is a block gate, and its activation.
struct NoGate {
  static constexpr bool gated = false;
  static constexpr const char* name = "none";
};
struct EluGate {
  static constexpr bool gated = true;
  static constexpr const char* name = "elu";
  static Var activate(const Var& z) { return elu(z); }
};
struct SigmoidGate {
  static constexpr bool gated = true;
  static constexpr const char* name = "sigmoid";
  static Var activate(const Var& z) { return sigmoid(z); }
};

template <class Gate = NoGate>
struct Adapter {
  AdapterConfig config;
  int64_t layer = -1;  // index of the block it extends (names its statistics)
  int64_t depth = 1;   // the model's number of layers: the BCE term is the layers' mean
  RMSNorm norm;
  Linear gate_proj, up_proj, down_proj;  // W_gate, W_in (C -> h), W_out (h -> C)
  Linear block_gate;                     // w_g (C -> 1), gated adapters only

  ExtensionSite site() const { return config.hidden > 0 ? config.site : ExtensionSite::none; }

  // Creates the weights for a model of config `c`, block `layer_index`.
  void init(const ModelConfig& c, const AdapterConfig& cfg, int64_t layer_index, Rng& rng) {
    if (cfg.hidden < 1) throw ValueError(fmt::format("adapter: hidden width must be at least 1, got {}", cfg.hidden));
    if (cfg.site == ExtensionSite::none) throw ValueError("adapter: site must be attention_parallel, ffn_parallel or ffn_serial");
    if (cfg.l1_weight < 0.0 || cfg.bce_weight < 0.0) throw ValueError("adapter: local-loss weights must be >= 0");
    if (cfg.bce_weight > 0.0 && std::string(Gate::name) != "sigmoid")
      throw ValueError(fmt::format("adapter: the classifier (BCE) loss needs a sigmoid gate, not '{}'", Gate::name));
    config = cfg;
    layer = layer_index;
    depth = c.num_hidden_layers;
    const int64_t C = c.hidden_size;
    const double var = cfg.init == AdapterInit::he ? 2.0 / static_cast<double>(C)
                                                   : 1.0 / (static_cast<double>(C) * static_cast<double>(c.num_hidden_layers));
    const double std = std::sqrt(var);
    norm = RMSNorm(C, c.rms_norm_eps);
    gate_proj = Linear(C, cfg.hidden, rng, std);
    up_proj = Linear(C, cfg.hidden, rng, std);
    down_proj = Linear(cfg.hidden, C, rng, 0.0);
    down_proj.weight.value().zero_();
    if constexpr (Gate::gated) block_gate = Linear(C, 1, rng, std);
  }

  // Parameters this adapter adds to a model of width C with hidden width h.
  static int64_t parameter_count(int64_t C, int64_t h) { return C + 3 * C * h + (Gate::gated ? C : 0); }

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const Var n = norm(x);
    Var y = down_proj(silu_mul(gate_proj(n), up_proj(n)));
    const int64_t B = x.shape()[0], T = x.shape().rank() >= 3 ? x.shape()[1] : 1;
    const bool know_domains = !ctx.original.empty();
    Var g;
    if constexpr (Gate::gated) {
      const Var z = block_gate(n);  // (B, T, 1)
      g = Gate::activate(z);
      y = scale_rows(y, g);
      if (config.bce_weight > 0.0 && know_domains) {
        Tensor target = Tensor::empty(z.shape());
        const std::vector<float> orig = ctx.original_token_weights(B, T);
        for (int64_t i = 0; i < target.numel(); ++i) target.data()[i] = 1.0f - orig[static_cast<size_t>(i)];
        ctx.local_losses.push_back(bce_with_logits(z, target) *
                                   static_cast<float>(config.bce_weight / static_cast<double>(depth)));
      }
    }
    if (config.l1_weight > 0.0 && know_domains) {
      const std::vector<float> w = ctx.original_token_weights(B, T);
      bool any = false;
      for (float v : w) any = any || v > 0.0f;
      if (any) ctx.local_losses.push_back(l1_mean(y, w) * static_cast<float>(config.l1_weight));
    }
    if (ctx.collect_stats) record_stats(y, g, ctx, B, T);
    return y;
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    if (config.hidden == 0) return;
    norm.visit_parameters(f, prefix + "norm.");
    gate_proj.visit_parameters(f, prefix + "gate_proj.");
    up_proj.visit_parameters(f, prefix + "up_proj.");
    down_proj.visit_parameters(f, prefix + "down_proj.");
    if constexpr (Gate::gated) block_gate.visit_parameters(f, prefix + "block_gate.");
  }

 private:
  // Per layer and per domain (original / new): mean |y| per element; for gated adapters the mean
  // gate value and the fraction of tokens whose |gate| < 0.01 (a "neutral" residue).
  void record_stats(const Var& y, const Var& g, ForwardContext& ctx, int64_t B, int64_t T) const {
    const int64_t C = y.shape().back();
    const float* yv = y.value().data();
    for (int64_t b = 0; b < B; ++b) {
      const bool orig = !ctx.original.empty() && ctx.original[static_cast<size_t>(b)];
      const std::string key = fmt::format("layer{}.{}.", layer, orig ? "original" : "new");
      double abs_sum = 0.0, gate_sum = 0.0, near_zero = 0.0;
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t c = 0; c < C; ++c) abs_sum += std::abs(yv[(b * T + t) * C + c]);
        if constexpr (Gate::gated) {
          const float gv = g.value().data()[b * T + t];
          gate_sum += gv;
          near_zero += std::abs(gv) < 0.01f ? 1.0 : 0.0;
        }
      }
      ctx.add_stat(key + "adapter_abs_mean", abs_sum, static_cast<double>(T * C));
      if constexpr (Gate::gated) {
        ctx.add_stat(key + "gate_mean", gate_sum, static_cast<double>(T));
        ctx.add_stat(key + "gate_near_zero", near_zero, static_cast<double>(T));
      }
    }
  }
};

// Adds an adapter to every block of a model whose blocks carry an Adapter extension.
template <class Model>
void attach_adapters(Model& model, const AdapterConfig& cfg, Rng& rng) {
  for (size_t l = 0; l < model.layers.size(); ++l) model.layers[l].extension.init(model.config, cfg, static_cast<int64_t>(l), rng);
}

// Llama backbones extended with adapters: vanilla, neutral residues (ELU gate), sigmoid gate.
template <class Gate>
using AdapterLlama = LanguageModel<Block<Attention<>, GatedFfn<Silu>, Adapter<Gate>>>;

}  // namespace nr
