// nr/eval/sampling.hpp — choosing the next token from a row of logits: greedy, temperature and
// nucleus (top-p) sampling.
//
// For logits l (V) and temperature tau > 0:
//   p_i = exp((l_i - max_j l_j) / tau) / Z                       (softmax of l / tau, in double)
//   nucleus N = the smallest set of most probable tokens whose mass reaches top_p
//               (tokens ordered by p descending, ties by lower id; at least one token)
//   draw i from N with probability p_i / sum_{j in N} p_j
// tau = 0 is greedy decoding: argmax_i l_i, ties to the lowest id. As top_p -> 0 the nucleus
// shrinks to the single most probable token, the same token greedy picks.
// The draw uses one Rng::uniform() per token, so a seed fixes the whole sequence.
//
// Cost per token: one pass over V for the softmax; with top_p < 1, a partial sort of the k most
// probable tokens, k = 64, 256, ... until their mass reaches top_p (the nucleus is usually small).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/rng.hpp"

namespace nr {

struct SamplingOptions {
  double temperature = 1.0;  // tau >= 0; 0 = greedy (argmax)
  double top_p = 1.0;        // nucleus mass in (0, 1]; 1 = the whole vocabulary
};

// Throws ValueError naming the bad option.
inline void validate_sampling(const SamplingOptions& o) {
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    throw ValueError(fmt::format("sampling: temperature must be a finite number >= 0 (0 = greedy), got {}", o.temperature));
  if (!(o.top_p > 0.0 && o.top_p <= 1.0))
    throw ValueError(fmt::format("sampling: top_p must be in (0, 1], got {}", o.top_p));
}

// argmax over logits[0, V), the lowest id among equal maxima. NaN logits are never chosen
// (all-NaN rows give id 0).
inline int32_t argmax_token(const float* logits, int64_t V) {
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (logits[i] > logits[best] || (std::isnan(logits[best]) && !std::isnan(logits[i]))) best = i;
  return static_cast<int32_t>(best);
}

// The distribution sample_token draws from, as (id, probability) pairs in drawing order (most
// probable first when top_p < 1, by id otherwise); the probabilities sum to 1. temperature > 0.
inline std::vector<std::pair<int32_t, double>> sampling_distribution(const float* logits, int64_t V,
                                                                     const SamplingOptions& o) {
  validate_sampling(o);
  if (o.temperature == 0.0) throw ValueError("sampling_distribution: temperature 0 is greedy, not a distribution");
  if (V < 1) throw ValueError(fmt::format("sampling: {} logits, need at least one", V));
  float m = logits[argmax_token(logits, V)];
  if (!std::isfinite(m)) throw ValueError(fmt::format("sampling: the largest logit is {}", m));
  std::vector<double> p(static_cast<size_t>(V));
  double z = 0.0;
  for (int64_t i = 0; i < V; ++i) {
    const double e = std::isnan(logits[i]) ? 0.0 : std::exp((static_cast<double>(logits[i]) - m) / o.temperature);
    p[static_cast<size_t>(i)] = e;
    z += e;
  }
  std::vector<std::pair<int32_t, double>> out;
  if (o.top_p >= 1.0) {
    out.reserve(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) out.emplace_back(static_cast<int32_t>(i), p[static_cast<size_t>(i)] / z);
    return out;
  }
  // The nucleus: partial sorts of growing prefixes until the kept mass reaches top_p.
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  auto before = [&](int32_t a, int32_t b) {
    const double pa = p[static_cast<size_t>(a)], pb = p[static_cast<size_t>(b)];
    return pa > pb || (pa == pb && a < b);
  };
  const double target = o.top_p * z;
  int64_t kept = 0;
  double mass = 0.0;
  for (int64_t k = std::min<int64_t>(64, V);; k = std::min(V, 4 * k)) {
    std::partial_sort(order.begin() + kept, order.begin() + k, order.end(), before);
    for (; kept < k && mass < target; ++kept) mass += p[static_cast<size_t>(order[static_cast<size_t>(kept)])];
    if (mass >= target || k == V) break;
  }
  kept = std::max<int64_t>(kept, 1);
  mass = 0.0;
  for (int64_t i = 0; i < kept; ++i) mass += p[static_cast<size_t>(order[static_cast<size_t>(i)])];
  out.reserve(static_cast<size_t>(kept));
  for (int64_t i = 0; i < kept; ++i) {
    const int32_t id = order[static_cast<size_t>(i)];
    out.emplace_back(id, p[static_cast<size_t>(id)] / mass);
  }
  return out;
}

// The next token: greedy when temperature is 0, else a draw from sampling_distribution.
inline int32_t sample_token(const float* logits, int64_t V, const SamplingOptions& o, Rng& rng) {
  validate_sampling(o);
  if (V < 1) throw ValueError(fmt::format("sampling: {} logits, need at least one", V));
  if (o.temperature == 0.0) return argmax_token(logits, V);
  const std::vector<std::pair<int32_t, double>> dist = sampling_distribution(logits, V, o);
  const double u = rng.uniform();  // [0, 1)
  double c = 0.0;
  for (const auto& [id, q] : dist) {
    c += q;
    if (u < c) return id;
  }
  // Rounding left the cumulative sum just below 1: the last token with non-zero probability.
  for (auto it = dist.rbegin(); it != dist.rend(); ++it)
    if (it->second > 0.0) return it->first;
  return dist.front().first;
}

}  // namespace nr
