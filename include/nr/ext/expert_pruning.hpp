// nr/ext/expert_pruning.hpp — pruning the experts a domain does not use (ModuleFormer,
// Section 5.3).
//
//   1. count_expert_activations(model, tokens, ctx_len): run the model (no gradient) over the
//      token stream cut into consecutive windows of ctx_len tokens (a shorter last window is
//      kept) and count, for each layer l and expert e, the tokens whose top-k selected e:
//      count[l][e].
//   2. prune_experts(model, counts, threshold): normalise by each layer's most used expert,
//        f[l][e] = count[l][e] / max_e' count[l][e']       (in [0, 1]),
//      and remove every expert with f[l][e] < threshold: its three weight matrices and its row
//      of the router's expert embedding A are deleted, the survivors keep their order and are
//      renumbered 0, 1, ... The model is smaller (count_parameters drops by the report's
//      parameters_removed()) and runs as before on the kept experts; the probability mass of
//      removed experts is redistributed by the softmax over the remaining rows.
// Guards: a layer keeps at least top_k experts (the most used ones, ties to the lower index),
// and a layer whose counts are all zero is left alone (no evidence). The paper fine-tunes with
// the load-concentration loss (MoeConfig::concentration_weight) before pruning, so that the
// counts are concentrated on few experts.
//
// The per-layer expert counts afterwards are in PruneReport::experts_after; apply_to(MoeConfig&)
// writes them to MoeConfig::layer_experts, which make_moe_model and config.json use to rebuild
// the pruned structure. Pruning applies to the FFN experts (Experts) of models without inserted
// new experts; attention experts are not pruned.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/tape.hpp"
#include "nr/core/indices.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/module.hpp"
#include "nr/nn/moe_config.hpp"

namespace nr {

struct ExpertActivationCounts {
  std::vector<std::vector<double>> per_layer;  // [layer][expert]: tokens that selected the expert
  int64_t tokens = 0;                          // tokens run through the model
};

struct PruneReport {
  std::vector<int64_t> experts_before;         // per layer
  std::vector<int64_t> experts_after;          // per layer
  std::vector<std::vector<int64_t>> removed;   // per layer: indices (before pruning) of removed experts
  int64_t parameters_before = 0;
  int64_t parameters_after = 0;

  int64_t parameters_removed() const { return parameters_before - parameters_after; }
  double remaining_ratio() const {
    return parameters_before > 0 ? static_cast<double>(parameters_after) / static_cast<double>(parameters_before) : 1.0;
  }
  void apply_to(MoeConfig& m) const { m.layer_experts = experts_after; }
};

template <class Model>
ExpertActivationCounts count_expert_activations(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx_len,
                                                int64_t batch = 8) {
  if (ctx_len < 1) throw ValueError(fmt::format("count_expert_activations: context must be at least 1, got {}", ctx_len));
  if (batch < 1) throw ValueError(fmt::format("count_expert_activations: batch must be positive, got {}", batch));
  NoGrad no_grad;
  ForwardContext ctx;
  ctx.collect_stats = true;
  const int64_t n = static_cast<int64_t>(tokens.size());
  auto run = [&](const std::vector<int64_t>& starts, int64_t len) {
    if (starts.empty() || len < 1) return;
    const int64_t B = static_cast<int64_t>(starts.size());
    std::vector<int32_t> ids(static_cast<size_t>(B * len));
    for (int64_t b = 0; b < B; ++b)
      std::copy_n(tokens.begin() + starts[static_cast<size_t>(b)], len, ids.begin() + b * len);
    model.hidden(Indices(std::move(ids), Shape{B, len}), ctx);
  };
  std::vector<int64_t> starts;
  for (int64_t s = 0; s + ctx_len <= n; s += ctx_len) {
    starts.push_back(s);
    if (static_cast<int64_t>(starts.size()) == batch) {
      run(starts, ctx_len);
      starts.clear();
    }
  }
  run(starts, ctx_len);
  if (n % ctx_len != 0) run({n - n % ctx_len}, n % ctx_len);

  ExpertActivationCounts counts;
  counts.tokens = n;
  for (size_t l = 0; l < model.layers.size(); ++l) {
    const auto it = ctx.histograms.find(expert_tokens_stat_name(static_cast<int64_t>(l)));
    std::vector<double> h = it == ctx.histograms.end() ? std::vector<double>{} : it->second;
    h.resize(static_cast<size_t>(model.layers[l].mlp.num_experts()), 0.0);
    counts.per_layer.push_back(std::move(h));
  }
  return counts;
}

template <class Model>
PruneReport prune_experts(Model& model, const ExpertActivationCounts& counts, double threshold) {
  if (!(threshold >= 0.0 && threshold <= 1.0))
    throw ValueError(fmt::format("prune_experts: threshold must be in [0, 1], got {}", threshold));
  if (counts.per_layer.size() != model.layers.size())
    throw ValueError(fmt::format("prune_experts: counts for {} layers, the model has {}", counts.per_layer.size(),
                                 model.layers.size()));
  for (size_t l = 0; l < model.layers.size(); ++l) {  // check everything before changing anything
    const auto& moe = model.layers[l].mlp;
    if (!moe.new_experts.empty())
      throw ValueError(fmt::format("prune_experts: layer {} holds {} inserted experts; pruning applies to models "
                                   "without new experts", l, moe.new_experts.size()));
    if (counts.per_layer[l].size() != moe.experts.size())
      throw ValueError(fmt::format("prune_experts: layer {} has {} experts but {} counts", l, moe.experts.size(),
                                   counts.per_layer[l].size()));
  }
  PruneReport report;
  report.parameters_before = count_parameters(model);
  for (size_t l = 0; l < model.layers.size(); ++l) {
    auto& moe = model.layers[l].mlp;
    const std::vector<double>& c = counts.per_layer[l];
    const int64_t E = static_cast<int64_t>(moe.experts.size());
    report.experts_before.push_back(E);
    const double top = *std::max_element(c.begin(), c.end());
    std::vector<uint8_t> keep(static_cast<size_t>(E), 1);
    if (top > 0.0) {
      int64_t kept = 0;
      for (int64_t e = 0; e < E; ++e) {
        keep[static_cast<size_t>(e)] = c[static_cast<size_t>(e)] / top >= threshold;
        kept += keep[static_cast<size_t>(e)];
      }
      // Keep at least top_k: the most used experts, ties to the lower index.
      std::vector<int64_t> order(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e) order[static_cast<size_t>(e)] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return c[static_cast<size_t>(a)] > c[static_cast<size_t>(b)]; });
      for (size_t i = 0; kept < moe.top_k && i < order.size(); ++i)
        if (!keep[static_cast<size_t>(order[i])]) {
          keep[static_cast<size_t>(order[i])] = 1;
          ++kept;
        }
    }
    std::vector<int64_t> removed;
    for (int64_t e = 0; e < E; ++e)
      if (!keep[static_cast<size_t>(e)]) removed.push_back(e);
    moe.keep_experts(keep);
    report.removed.push_back(std::move(removed));
    report.experts_after.push_back(static_cast<int64_t>(moe.experts.size()));
  }
  report.parameters_after = count_parameters(model);
  return report;
}

}  // namespace nr
