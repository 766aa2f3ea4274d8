// nr/nn/router.hpp — the router of a mixture of experts, and the top-k dispatch of tokens.
//
// Router (ModuleFormer Section 3.1, Eq. 1-2, and Section 4.3, Eq. 9), for token vectors
// x (N, C), N = B*T:
//   mlp:     f = gelu(x W^T)  (N, D_emb),   W (D_emb, C) the input projection ("input_proj")
//   linear:  f = x            (N, C)
//   logits   = f A^T           (N, E),       A (E, D_emb or C) the expert embedding matrix
//   g(e | x) = softmax(logits)               the routing distribution; the layer keeps its top k
// The copy of the paper in shared/papers has lost its formulas' symbols; the MLP form above is the
// one its text describes ("A is the expert embedding matrix of shape (E, D_emb), W is the input
// projection matrix of shape (D_emb, D_model)") with the nonlinearity of the authors' released
// router (IBM/ModuleFormer, utils/gate.py: Linear -> GELU -> Linear), here the tanh form of GELU
// and without the bias of the first Linear (nr layers have no biases).
//
// New experts (Section 4.3) extend the expert embedding with a matrix A' (E', D_emb), kept as a
// separate Var so that A and W can stay frozen while A' trains ("partially trainable router"):
//   logits_all = f [A; A']^T (N, E + E')      ([A; A'] built by concat_rows each forward).
// Experts are numbered 0..E-1 (old) then E..E+E'-1 (new).
//
// Top-k (not differentiable, computed on values): for each token the k largest probabilities in
// a range of experts, best first, ties going to the lower expert index. ExpertDispatch then lists
// the N*K (token, slot) pairs in expert-major order, so that each expert's tokens are one
// contiguous block: the expert gathers them (gather_rows), runs on them, and the weighted outputs
// go back with scatter_add_rows. The gates stay differentiable: they are gathered from the
// probability (or logit) Var.
//
// Tensor names, under the layer's prefix: router.input_proj.weight (mlp only),
// router.expert_embedding.weight, router.new_experts.expert_embedding.weight.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/core/rng.hpp"
#include "nr/nn/linear.hpp"
#include "nr/nn/moe_config.hpp"
#include "nr/ops/concat_rows.hpp"
#include "nr/ops/gather_rows.hpp"
#include "nr/ops/gelu.hpp"
#include "nr/ops/reshape.hpp"
#include "nr/ops/softmax.hpp"

namespace nr {

struct Router {
  RouterKind kind = RouterKind::mlp;
  Linear input_proj;         // W (D_emb, C), mlp only
  Var expert_embedding;      // A (E, D_emb), or (E, C) for a linear router
  Var new_expert_embedding;  // A' (E', D_emb or C); undefined until new experts are added

  Router() = default;
  // E experts for inputs of width C; d_emb is D_emb (ignored by a linear router).
  Router(RouterKind k, int64_t C, int64_t d_emb, int64_t E, Rng& rng, double std = 0.02) : kind(k) {
    const int64_t width = k == RouterKind::mlp ? d_emb : C;
    if (k == RouterKind::mlp) input_proj = Linear(C, d_emb, rng, std);
    Tensor a = Tensor::empty(Shape{E, width});
    normal_(a, 0.0, std, rng);
    expert_embedding = Var::parameter(std::move(a));
  }

  int64_t num_old() const { return expert_embedding.shape()[0]; }
  int64_t num_new() const { return new_expert_embedding.defined() ? new_expert_embedding.shape()[0] : 0; }
  int64_t num_experts() const { return num_old() + num_new(); }
  int64_t feature_width() const { return expert_embedding.shape()[1]; }

  // f (N, D_emb) = gelu(x W^T) for an mlp router, x itself for a linear one; x (N, C).
  Var features(const Var& x) const { return kind == RouterKind::mlp ? gelu(input_proj(x)) : x; }

  // (N, E) logits of the old experts, or (N, E + E') of all experts when `all` is set.
  Var logits(const Var& f, bool all) const {
    if (!all || num_new() == 0) return linear(f, expert_embedding);
    return linear(f, concat_rows({expert_embedding, new_expert_embedding}));
  }

  // Appends n rows to A' (creating it if needed), drawn from N(0, std^2).
  void add_new_experts(int64_t n, double std, Rng& rng) {
    Tensor a = Tensor::empty(Shape{num_new() + n, feature_width()});
    if (num_new() > 0) std::copy_n(new_expert_embedding.value().data(), new_expert_embedding.numel(), a.data());
    Tensor fresh = Tensor::empty(Shape{n, feature_width()});
    normal_(fresh, 0.0, std, rng);
    std::copy_n(fresh.data(), fresh.numel(), a.data() + num_new() * feature_width());
    new_expert_embedding = Var::parameter(std::move(a));
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    if (kind == RouterKind::mlp) input_proj.visit_parameters(f, prefix + "input_proj.");
    f(prefix + "expert_embedding.weight", expert_embedding);
    if (num_new() > 0) f(prefix + "new_experts.expert_embedding.weight", new_expert_embedding);
  }
};

// The routing decision for N tokens with K selected experts each.
struct ExpertDispatch {
  int64_t tokens = 0;            // N
  int64_t experts = 0;           // E_total, experts are 0 .. E_total - 1
  int64_t slots = 0;             // K
  std::vector<int32_t> choice;   // (N, K) expert of token n in slot s, token-major
  std::vector<int64_t> offsets;  // (E_total + 1,) rows [offsets[e], offsets[e + 1]) go to expert e
  Indices token;                 // (N*K,) expert-major: the token of each row
  Indices pair;                  // (N*K,) expert-major: n*K + s, the row's token-major position

  int64_t rows_of(int64_t e) const {
    return offsets[static_cast<size_t>(e + 1)] - offsets[static_cast<size_t>(e)];
  }
  // The entries of `which` (token or pair) that belong to expert e.
  Indices slice(const Indices& which, int64_t e) const {
    const auto b = which.data.begin() + offsets[static_cast<size_t>(e)];
    return Indices(std::vector<int32_t>(b, b + rows_of(e)), Shape{rows_of(e)});
  }
  // Tokens routed to each expert, as doubles (for ForwardContext histograms).
  std::vector<double> loads() const {
    std::vector<double> h(static_cast<size_t>(experts));
    for (int64_t e = 0; e < experts; ++e) h[static_cast<size_t>(e)] = static_cast<double>(rows_of(e));
    return h;
  }
};

// Writes, for every row n of scores (N, E), the k columns of [begin, end) with the largest
// scores (best first, ties to the lower index) into choice[n*K + slot0 .. n*K + slot0 + k).
inline void select_top_k(const Tensor& scores, int64_t k, int64_t begin, int64_t end, std::vector<int32_t>& choice,
                         int64_t K, int64_t slot0) {
  const int64_t N = scores.shape()[0], E = scores.shape()[1];
  if (k < 1 || k > end - begin || begin < 0 || end > E || slot0 + k > K)
    throw ValueError(fmt::format("select_top_k: cannot pick {} of experts [{}, {}) of scores {} into slots {}..{} of {}",
                                 k, begin, end, scores.shape().str(), slot0, slot0 + k, K));
  const float* s = scores.data();
  std::vector<uint8_t> taken(static_cast<size_t>(E));
  for (int64_t n = 0; n < N; ++n) {
    std::fill(taken.begin(), taken.end(), uint8_t{0});
    const float* row = s + n * E;
    for (int64_t j = 0; j < k; ++j) {
      int64_t best = -1;
      for (int64_t e = begin; e < end; ++e)
        if (!taken[static_cast<size_t>(e)] && (best < 0 || row[e] > row[best])) best = e;
      taken[static_cast<size_t>(best)] = 1;
      choice[static_cast<size_t>(n * K + slot0 + j)] = static_cast<int32_t>(best);
    }
  }
}

// Orders the (token, slot) pairs of choice (N, K) expert by expert (tokens ascending inside).
inline ExpertDispatch make_dispatch(std::vector<int32_t> choice, int64_t N, int64_t K, int64_t experts) {
  ExpertDispatch d;
  d.tokens = N;
  d.slots = K;
  d.experts = experts;
  d.offsets.assign(static_cast<size_t>(experts + 1), 0);
  for (int32_t e : choice) {
    if (e < 0 || e >= experts) throw ValueError(fmt::format("make_dispatch: expert {} outside [0, {})", e, experts));
    ++d.offsets[static_cast<size_t>(e + 1)];
  }
  for (int64_t e = 0; e < experts; ++e) d.offsets[static_cast<size_t>(e + 1)] += d.offsets[static_cast<size_t>(e)];
  std::vector<int64_t> fill(d.offsets.begin(), d.offsets.end() - 1);
  std::vector<int32_t> token(static_cast<size_t>(N * K)), pair(static_cast<size_t>(N * K));
  for (int64_t p = 0; p < N * K; ++p) {
    const int64_t r = fill[static_cast<size_t>(choice[static_cast<size_t>(p)])]++;
    token[static_cast<size_t>(r)] = static_cast<int32_t>(p / K);
    pair[static_cast<size_t>(r)] = static_cast<int32_t>(p);
  }
  d.choice = std::move(choice);
  d.token = Indices(std::move(token), Shape{N * K});
  d.pair = Indices(std::move(pair), Shape{N * K});
  return d;
}

// Gates of the slots [s0, s1) of every token, token-major (N * (s1 - s0), 1), read from
// `source` (N, E_src): with renormalize false, source holds probabilities and the gate is
// source[n, choice] as is (ModuleFormer: TopK only zeroes the other gates); with renormalize
// true, source holds logits and the gates are their softmax over the selected slots (sum 1).
inline Var slot_gates(const Var& source, const ExpertDispatch& d, int64_t s0, int64_t s1, bool renormalize) {
  const int64_t N = d.tokens, E = source.shape()[1], k = s1 - s0;
  std::vector<int32_t> idx(static_cast<size_t>(N * k));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t s = s0; s < s1; ++s)
      idx[static_cast<size_t>(n * k + s - s0)] = static_cast<int32_t>(n * E + d.choice[static_cast<size_t>(n * d.slots + s)]);
  Var g = gather_rows(reshape(source, Shape{N * E, 1}), Indices(std::move(idx), Shape{N * k}));
  if (!renormalize) return g;
  return reshape(softmax(reshape(g, Shape{N, k})), Shape{N * k, 1});
}

}  // namespace nr
