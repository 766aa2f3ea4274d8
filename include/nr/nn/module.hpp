// nr/nn/module.hpp — what makes a type a module, and the forward context.
//
// Modules are plain structs, not classes in a hierarchy. A type is a Module when it can list its
// parameters: `m.visit_parameters(f, prefix)` calls `f(name, var)` for each parameter, with names
// built from the prefix the way Hugging Face names Llama tensors
// ("model.layers.3.mlp.down_proj.weight"). Everything else — loading by name, the optimizer,
// freezing, counting — is written once on top of this visit.
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/var.hpp"

namespace nr {

using ParameterVisitor = std::function<void(const std::string&, Var&)>;

class KvCache;  // nn/kv_cache.hpp

template <class M>
concept Module = requires(M& m, const ParameterVisitor& f, const std::string& prefix) {
  m.visit_parameters(f, prefix);
};

// What travels with one forward pass besides the activations.
struct ForwardContext {
  // Per-sequence domain tag (index into the training mixture), one per batch row. Empty when the
  // batch carries no tags (evaluation, pretraining).
  std::vector<int> domain_tags;
  // Per sequence: 1 when it is original-domain (or original-like) data, 0 when it is new-domain
  // data. The local losses of extensions read it; empty means "unknown" and those losses are
  // skipped.
  std::vector<uint8_t> original;
  // Auxiliary losses added by extensions (e.g. the l1 loss of neutral residues), already weighted;
  // the trainer adds them to the language-modelling loss.
  std::vector<Var> local_losses;
  // Named statistics that modules report when collect_stats is set (adapter output magnitude,
  // gate values...), as running sums: stats[name] += value, counts[name] += weight.
  bool collect_stats = false;
  std::map<std::string, double> stats;
  std::map<std::string, double> counts;

  // Per-module vectors of running sums (tokens routed to each expert...), also filled only when
  // collect_stats is set: histograms[name][i] += values[i].
  std::map<std::string, std::vector<double>> histograms;

  // Generation only: the keys and values of earlier tokens (nn/kv_cache.hpp). When set, the batch
  // is one sequence whose tokens follow the kv_cache->length() cached ones; attention layers read
  // and extend the cache and place the new tokens at their absolute positions. Null otherwise.
  KvCache* kv_cache = nullptr;

  // Training only: recompute each block's activations in the backward pass instead of keeping
  // them (nn/recompute.hpp): a block's input instead of its activations, for a second forward.
  bool recompute_blocks = false;

  void add_stat(const std::string& name, double sum, double count) {
    stats[name] += sum;
    counts[name] += count;
  }

  // Adds `values` element by element to histograms[name] (created, or grown, as needed).
  void add_histogram(const std::string& name, const std::vector<double>& values) {
    std::vector<double>& h = histograms[name];
    if (h.size() < values.size()) h.resize(values.size(), 0.0);
    for (size_t i = 0; i < values.size(); ++i) h[i] += values[i];
  }

  // One weight per token row of a (B, T, ...) activation: 1 for tokens of original sequences.
  std::vector<float> original_token_weights(int64_t B, int64_t T) const {
    if (static_cast<int64_t>(original.size()) != B)
      throw ShapeError(fmt::format("ForwardContext: {} original-domain flags for a batch of {} sequences",
                                   original.size(), B));
    std::vector<float> w(static_cast<size_t>(B * T));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) w[static_cast<size_t>(b * T + t)] = original[static_cast<size_t>(b)] ? 1.0f : 0.0f;
    return w;
  }
};

// Parameters of a module as (name, Var) pairs in visiting order.
template <Module M>
std::vector<std::pair<std::string, Var>> named_parameters(M& m, const std::string& prefix = "") {
  std::vector<std::pair<std::string, Var>> out;
  m.visit_parameters([&](const std::string& name, Var& v) { out.emplace_back(name, v); }, prefix);
  return out;
}

template <Module M>
int64_t count_parameters(M& m, bool trainable_only = false) {
  int64_t n = 0;
  m.visit_parameters([&](const std::string&, Var& v) {
    if (!trainable_only || v.requires_grad()) n += v.numel();
  }, "");
  return n;
}

// Freezes (or unfreezes) every parameter of a module: frozen parameters get no gradient memory.
template <Module M>
void set_trainable(M& m, bool trainable) {
  m.visit_parameters([&](const std::string&, Var& v) { v.set_requires_grad(trainable); }, "");
}

template <Module M>
void zero_grad(M& m) {
  m.visit_parameters([](const std::string&, Var& v) { v.zero_grad(); }, "");
}

}  // namespace nr
