// nr/nn/moe_losses.hpp — the auxiliary losses of ModuleFormer's module manipulation.
//
// With the routing distribution g(e | x) of N tokens, probs (N, E) (the full softmax, before
// top-k), tokens weighted uniformly, p(x) = 1 / N:
//   p(e)     = (1 / N) sum_x g(e | x)                       the batch's marginal over experts
//   H(e)     = -sum_e p(e) log p(e)                         marginal entropy
//   H(e | x) = -(1 / N) sum_x sum_e g(e | x) log g(e | x)  conditional entropy
//
// Load balancing for pretraining (Section 4.1, Eq. 6-7): maximise the mutual information between
// tokens and experts, MI = H(e) - H(e | x), i.e. minimise
//   L_MI = H(e | x) - H(e)
// (every expert used across the batch, each token sure of its few experts). It lies in
// [-log E, 0]: -log E when each token puts all its mass on one expert and the experts are used
// equally often, 0 when every token has the same distribution (H(e | x) <= H(e) always).
//
// Load concentration for fine-tuning (Section 4.2, Eq. 8): use few experts, then prune the rest,
//   L_LC = H(e).
//
// Routing regularisation for new experts (Section 4.3, Eq. 10): restrict the norm of the new
// rows A' of the expert embedding, which bounds how strongly the router can prefer new experts,
//   L_RR = ||A'||_F^2 = sum of A'^2.
// The paper's symbols are lost in our copy; we take the squared Frobenius norm, which (unlike the
// norm itself) is differentiable at A' = 0.
//
// The losses are composites of primitives (entropy, mean_rows, mean, mul, sum): their gradients
// come from those ops' backward passes. The layers multiply them by their MoeConfig weights and
// push them into ForwardContext::local_losses.
#pragma once

#include "nr/ops/elementwise.hpp"
#include "nr/ops/entropy.hpp"
#include "nr/ops/mean_rows.hpp"
#include "nr/ops/reduce.hpp"

namespace nr {

// Scalar () H(e | x) - H(e) of probs (N, E).
inline Var mutual_information_loss(const Var& probs) { return mean(entropy(probs)) - entropy(mean_rows(probs)); }

// Scalar () H(e) of probs (N, E).
inline Var load_concentration_loss(const Var& probs) { return entropy(mean_rows(probs)); }

// Scalar () sum of the squares of a (...).
inline Var routing_regularization(const Var& a) { return sum(a * a); }

}  // namespace nr
