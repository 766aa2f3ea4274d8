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

#include "nr/autograd/var.hpp"

namespace nr {

using ParameterVisitor = std::function<void(const std::string&, Var&)>;

template <class M>
concept Module = requires(M& m, const ParameterVisitor& f, const std::string& prefix) {
  m.visit_parameters(f, prefix);
};

// What travels with one forward pass besides the activations.
struct ForwardContext {
  // Per-sequence domain tag (index into the training mixture; 0 = the original domain), one per
  // batch row. Empty when the batch carries no tags (evaluation, pretraining).
  std::vector<int> domain_tags;
  // Auxiliary losses added by extensions (e.g. the l1 loss of neutral residues), already weighted;
  // the trainer adds them to the language-modelling loss.
  std::vector<Var> local_losses;
  // Named scalar statistics that modules may report (gate means, adapter output norms...).
  std::map<std::string, double> stats;
  bool collect_stats = false;
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
