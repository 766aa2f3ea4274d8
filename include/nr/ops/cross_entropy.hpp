// nr/ops/cross_entropy.hpp — softmax cross-entropy against integer targets, fused.
//
//   lse[n]  = log sum_v exp(z[n, v])                (computed as m + log sum exp(z - m), m = max)
//   nll[n]  = lse[n] - z[n, t[n]]                   = -log softmax(z[n])[t[n]]
//   loss    = sum_n w[n] nll[n] / sum_n w[n]        (w = 1 when no weights are given: the mean)
//
// Shapes: logits z (N..., V), e.g. (B, T, V); targets t: nr::Indices of shape N... (e.g. (B, T));
// optional per-token weights w of length N = numel(N...) (a 0/1 mask, or any weights >= 0 with a
// positive sum); loss is a scalar (shape ()). Exponentials are float; sums and logarithms double.
// Targets outside [0, V) throw ValueError; a weight vector of the wrong length throws ShapeError.
//
// Backward (gradients ACCUMULATED with += into logits.grad), with g = dL/dloss (a scalar):
//   d nll[n] / dz[n, v] = softmax(z[n])[v] - [v == t[n]]
//   dz[n, v] += g * w[n] / sum(w) * (exp(z[n, v] - lse[n]) - [v == t[n]])
// Saved: only lse (N,) (N floats); the probabilities exp(z - lse) are recomputed in backward
// from the logits, which the tape keeps alive anyway, instead of storing an (N, V) tensor.
//
// cross_entropy_per_token() returns the N values nll[n] as doubles for evaluation (bits per
// byte, multiple-choice scoring). It records nothing and is NOT differentiable.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/ops/op_support.hpp"

namespace nr::cpu {

// log sum_v exp(z[v]) for one row z (V,), shifted by the row maximum: exp in float, the sum and
// the log in double.
inline double logsumexp_row(const float* z, int64_t V) {
  float m = z[0];
  for (int64_t v = 1; v < V; ++v) m = std::max(m, z[v]);
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(z[v] - m);
  return static_cast<double>(m) + std::log(sum);
}

// nll (N,) = lse - z[t] and lse (N,) for logits z (N, V); either output may be null.
inline void cross_entropy_rows(double* nll, float* lse, const float* z, const int32_t* t, int64_t N, int64_t V) {
#pragma omp parallel for if (N * V > detail::parallel_grain)
  for (int64_t n = 0; n < N; ++n) {
    const float* zn = z + n * V;
    const double l = logsumexp_row(zn, V);
    if (lse) lse[n] = static_cast<float>(l);
    if (nll) nll[n] = l - static_cast<double>(zn[t[n]]);
  }
}

// dz (N, V) += scale * w[n] * (exp(z - lse[n]) - onehot(t[n])); w may be null (all ones).
inline void cross_entropy_backward(float* dz, const float* z, const float* lse, const int32_t* t, const float* w,
                                   float scale, int64_t N, int64_t V) {
#pragma omp parallel for if (N * V > detail::parallel_grain)
  for (int64_t n = 0; n < N; ++n) {
    const float k = w ? scale * w[n] : scale;  // this token's share of the loss
    if (k == 0.0f) continue;                  // masked token: no gradient
    const float* zn = z + n * V;
    float* dn = dz + n * V;
    const float l = lse[n];
    for (int64_t v = 0; v < V; ++v) dn[v] += k * std::exp(zn[v] - l);  // softmax term
    dn[t[n]] -= k;                                                      // one-hot term
  }
}

}  // namespace nr::cpu

namespace nr {

namespace detail {
// Checks logits (N..., V) against targets (N...) and returns (N, V).
inline std::pair<int64_t, int64_t> check_cross_entropy(const Shape& ls, const Indices& targets, const char* op) {
  Shape lead;
  for (int i = 0; i + 1 < ls.rank(); ++i) lead.push_back(ls[i]);
  if (ls.rank() < 1 || ls.back() == 0 || !(lead == targets.shape))
    throw ShapeError(fmt::format("{}: logits {} need targets of shape {} (logits (N..., V) with V > 0), got targets {}",
                                 op, ls.str(), lead.str(), targets.shape.str()));
  if (targets.numel() != targets.shape.numel())
    throw ShapeError(fmt::format("{}: targets hold {} values but claim shape {}", op, targets.numel(), targets.shape.str()));
  const int64_t V = ls.back();
  targets.check_range(V, op);
  return {targets.numel(), V};
}
}  // namespace detail

// logits (N..., V), targets (N...), weights (N,) or empty -> scalar loss (shape ()).
inline Var cross_entropy(const Var& logits, const Indices& targets, std::span<const float> weights = {}) {
  detail::expect_dense(logits, "cross_entropy", "logits");
  // Plain variables rather than a structured binding: clang 14 cannot capture bindings in lambdas.
  const std::pair<int64_t, int64_t> nv = detail::check_cross_entropy(logits.shape(), targets, "cross_entropy");
  const int64_t N = nv.first, V = nv.second;
  if (N == 0) throw ValueError(fmt::format("cross_entropy: logits {} hold no tokens to average over", logits.shape().str()));
  const bool weighted = !weights.empty();
  double wsum = static_cast<double>(N);
  if (weighted) {
    if (static_cast<int64_t>(weights.size()) != N)
      throw ShapeError(fmt::format("cross_entropy: {} weights for logits {} ({} tokens)", weights.size(),
                                   logits.shape().str(), N));
    wsum = 0.0;
    for (size_t i = 0; i < weights.size(); ++i) {
      if (!(weights[i] >= 0.0f) || !std::isfinite(weights[i]))
        throw ValueError(fmt::format("cross_entropy: weight {} at position {} must be finite and >= 0", weights[i], i));
      wsum += weights[i];
    }
    if (!(wsum > 0.0)) throw ValueError("cross_entropy: the token weights sum to zero (every token is masked)");
  }

  const float* z = logits.value().data();  // (N, V)
  Tensor lse = Tensor::empty(Shape{N});     // (N,)
  std::vector<double> nll(static_cast<size_t>(N));
  cpu::cross_entropy_rows(nll.data(), lse.data(), z, targets.data.data(), N, V);
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const double wn = weighted ? static_cast<double>(weights[static_cast<size_t>(n)]) : 1.0;
    if (wn != 0.0) total += wn * nll[static_cast<size_t>(n)];  // skip masked rows (0 * inf = NaN)
  }

  Var out(Tensor::scalar(static_cast<float>(total / wsum)), any_requires_grad(logits));
  if (out.requires_grad()) {
    // The closure owns copies of the targets (N,) and weights (N,): the caller's may not outlive it.
    auto w = std::make_shared<const std::vector<float>>(weights.begin(), weights.end());
    active_tape().record([logits, out, lse, targets, w, wsum, N, V]() {
      const float* g = detail::output_grad(out);  // () the upstream scalar
      if (!g) return;
      const float scale = static_cast<float>(static_cast<double>(g[0]) / wsum);
      // Saved: lse (N,), the targets and the weights; softmax recomputed from the logits.
      cpu::cross_entropy_backward(logits.grad_buffer().data(), logits.value().data(), lse.data(), targets.data.data(),
                                  w->empty() ? nullptr : w->data(), scale, N, V);
    });
  }
  return out;
}

// Per-token negative log-likelihoods nll[n] = -log softmax(logits[n])[targets[n]] (natural log),
// in double, for logits (N..., V) and targets (N...). Records nothing; NOT differentiable.
inline std::vector<double> cross_entropy_per_token(const Tensor& logits, const Indices& targets) {
  if (!logits.defined()) throw Error("cross_entropy_per_token: argument 'logits' is undefined");
  if (logits.device() != Device::cpu)
    throw DeviceError(fmt::format("cross_entropy_per_token: logits live on {}; this op has no {} kernel in this build",
                                  device_name(logits.device()), device_name(logits.device())));
  const std::pair<int64_t, int64_t> nv = detail::check_cross_entropy(logits.shape(), targets, "cross_entropy_per_token");
  const int64_t N = nv.first, V = nv.second;
  const Tensor z = logits.contiguous();
  std::vector<double> nll(static_cast<size_t>(N));
  cpu::cross_entropy_rows(nll.data(), nullptr, z.data(), targets.data.data(), N, V);
  return nll;
}

inline std::vector<double> cross_entropy_per_token(const Var& logits, const Indices& targets) {
  return cross_entropy_per_token(logits.value(), targets);
}

}  // namespace nr
