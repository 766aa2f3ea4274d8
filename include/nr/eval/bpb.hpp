// nr/eval/bpb.hpp — bits per byte of a text under a byte-level language model.
//
// Protocol: the byte stream is cut into consecutive non-overlapping windows of `ctx` tokens (a
// shorter last window is kept). Inside each window every token but the first is predicted from
// its prefix within the window. Then
//   BPB = (total negative log-likelihood in nats) / (number of predicted tokens * ln 2).
// Windows are evaluated in batches under NoGrad: nothing is recorded, no gradient is kept.
//
// The plain form calls model(ids). The form with a context factory calls model(ids, c) with
// c = make_context(B) for each batch of B windows: the factory returns a context (typically a
// reference to one the caller owns, so that statistics accumulate over the windows) with its
// per-batch fields filled, e.g. ForwardContext::original = B flags and collect_stats = true for
// the adapter diagnostics of `nrlab eval --stats`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/tape.hpp"
#include "nr/core/error.hpp"
#include "nr/core/indices.hpp"
#include "nr/ops/cross_entropy.hpp"

namespace nr {

struct BpbResult {
  double bpb = 0.0;
  int64_t tokens = 0;     // predicted tokens
  double nll_nats = 0.0;  // total negative log-likelihood
};

namespace detail {

// Adds the NLL of the windows of length `len` starting at `starts`; forward(ids (B, T)) returns
// the logits (B, T, V).
template <class Forward>
void accumulate_window_nll_with(Forward&& forward, const std::vector<int32_t>& tokens,
                                const std::vector<int64_t>& starts, int64_t len, BpbResult& acc) {
  if (len < 2 || starts.empty()) return;
  const int64_t B = static_cast<int64_t>(starts.size()), T = len - 1;
  Indices in, tg;
  in.shape = tg.shape = Shape{B, T};
  in.data.resize(static_cast<size_t>(B * T));
  tg.data.resize(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      in.data[static_cast<size_t>(b * T + t)] = tokens[static_cast<size_t>(starts[static_cast<size_t>(b)] + t)];
      tg.data[static_cast<size_t>(b * T + t)] = tokens[static_cast<size_t>(starts[static_cast<size_t>(b)] + t + 1)];
    }
  const Var logits = forward(in);
  for (double nll : cross_entropy_per_token(logits.value(), tg)) acc.nll_nats += nll;
  acc.tokens += B * T;
}

template <class Forward>
BpbResult bits_per_byte_with(Forward&& forward, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch) {
  if (ctx < 2) throw ValueError(fmt::format("bits_per_byte: context must be at least 2, got {}", ctx));
  if (batch < 1) throw ValueError(fmt::format("bits_per_byte: batch must be positive, got {}", batch));
  NoGrad no_grad;
  BpbResult r;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t full = n / ctx;
  std::vector<int64_t> starts;
  for (int64_t w = 0; w < full; ++w) {
    starts.push_back(w * ctx);
    if (static_cast<int64_t>(starts.size()) == batch || w + 1 == full) {
      accumulate_window_nll_with(forward, tokens, starts, ctx, r);
      starts.clear();
    }
  }
  if (n % ctx >= 2) accumulate_window_nll_with(forward, tokens, {full * ctx}, n % ctx, r);
  if (r.tokens > 0) r.bpb = r.nll_nats / (static_cast<double>(r.tokens) * std::log(2.0));
  return r;
}

}  // namespace detail

// Adds the NLL of the windows [first, first + count) of length `len` starting at `starts`.
template <class Model>
void accumulate_window_nll(const Model& model, const std::vector<int32_t>& tokens, const std::vector<int64_t>& starts,
                           int64_t len, BpbResult& acc) {
  detail::accumulate_window_nll_with([&](const Indices& ids) { return model(ids); }, tokens, starts, len, acc);
}

template <class Model>
BpbResult bits_per_byte(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch = 16) {
  return detail::bits_per_byte_with([&](const Indices& ids) { return model(ids); }, tokens, ctx, batch);
}

// The same with a forward context per batch: model(ids, make_context(B)).
template <class Model, class MakeContext>
BpbResult bits_per_byte(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch,
                        MakeContext&& make_context) {
  return detail::bits_per_byte_with(
      [&](const Indices& ids) -> Var {
        decltype(auto) context = make_context(ids.shape[0]);
        return model(ids, context);
      },
      tokens, ctx, batch);
}

}  // namespace nr
