// nr/eval/divergence.hpp — how far a model's predictions have moved from a reference model's on a
// text: the KL divergence KL(reference || model) of the next-token distributions, per byte.
//
// Why: bits per byte on an English probe mixes two things when an extension is trained. The
// damage the paper calls forgetting raises it; anything the extension data teaches that also
// helps the probe (plain prose after a chat-tuned model, a documentation format) lowers it, and
// on SmolLM2-135M-Instruct the second dominates (docs/results.md): every method *improves*
// English BPB. The divergence from the backbone separates "how much the English model changed"
// from "whether the change happened to help": it is 0 exactly when the model predicts English as
// the backbone does (what neutral residues aim for, paper Section 3: the adapters should leave the
// original distribution alone) and grows with any change, useful or not. The two read together:
// a method that changes English little (small KL) and still learns the new language is the
// paper's claim; a method whose English BPB falls while its KL is large has rewritten the model.
//
// Protocol: the windows and predicted positions of bits per byte (eval/bpb.hpp), both models run
// on the same windows in FP32. For each predicted position t, with p = softmax(reference logits)
// and q = softmax(model logits) over the vocabulary:
//   KL_t = sum_v p(v) (ln p(v) - ln q(v))                       nats, >= 0, 0 iff p = q
//   kl_bpb            = sum_t KL_t / (bytes * ln 2)             bits per byte (comparable to a
//                                                               BPB difference)
//   kl_bits_per_token = sum_t KL_t / (tokens * ln 2)
//   top1_agreement    = share of positions where argmax p = argmax q
// and, on the way, both models' bits per byte of the text (bpb, reference_bpb). Exponentials in
// float, sums in double (as cross_entropy_per_token).
//
//   divergence(model, reference, tokenizer, ids, ctx, batch)   two models
//   divergence_with(forward, reference_forward, ...)           two functions ids (B, T) -> logits
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/eval/bpb.hpp"

namespace nr {

struct DivergenceResult {
  double kl_bpb = 0.0;             // KL(reference || model) in bits per byte
  double kl_bits_per_token = 0.0;  // the same per predicted token
  double top1_agreement = 0.0;     // share of positions where both models' most likely token agree
  double bpb = 0.0;                // the model's bits per byte of the text
  double reference_bpb = 0.0;      // the reference's
  int64_t tokens = 0;              // predicted tokens
  int64_t bytes = 0;               // UTF-8 bytes they cover
};

namespace cpu {

// For rows of reference logits p_z and model logits q_z (N, V) and targets t (N): per row the KL
// divergence of softmax(q_z) from softmax(p_z) in nats, the two NLLs in nats, and whether the
// argmaxes agree; summed into `kl`, `nll_model`, `nll_reference`, `agree`.
inline void divergence_rows(const float* p_z, const float* q_z, const int32_t* t, int64_t N, int64_t V, double& kl,
                            double& nll_model, double& nll_reference, int64_t& agree) {
  double kl_sum = 0.0, nm = 0.0, nref = 0.0;
  int64_t same = 0;
#pragma omp parallel for if (N * V > detail::parallel_grain) reduction(+ : kl_sum, nm, nref, same)
  for (int64_t n = 0; n < N; ++n) {
    const float* p = p_z + n * V;
    const float* q = q_z + n * V;
    const double lse_p = logsumexp_row(p, V), lse_q = logsumexp_row(q, V);
    // KL = sum_v p(v) ((p_z - lse_p) - (q_z - lse_q)) = sum_v p(v) (p_z - q_z) - lse_p + lse_q.
    double dot = 0.0;
    for (int64_t v = 0; v < V; ++v) dot += std::exp(static_cast<double>(p[v]) - lse_p) * (static_cast<double>(p[v]) - q[v]);
    kl_sum += std::max(0.0, dot - lse_p + lse_q);  // >= 0 in exact arithmetic; rounding can dip below
    nm += lse_q - static_cast<double>(q[t[n]]);
    nref += lse_p - static_cast<double>(p[t[n]]);
    same += std::max_element(p, p + V) - p == std::max_element(q, q + V) - q ? 1 : 0;
  }
  kl += kl_sum;
  nll_model += nm;
  nll_reference += nref;
  agree += same;
}

}  // namespace cpu

// KL(reference || model) on `ids` (tokenised by `tokenizer`), forward functions ids (B, T) ->
// logits (B, T, V) (Var or Tensor). Both must have the tokenizer's vocabulary.
template <class Forward, class ReferenceForward, Tokenizer Tok>
DivergenceResult divergence_with(Forward&& forward, ReferenceForward&& reference_forward, const Tok& tokenizer,
                                 std::span<const int32_t> ids, int64_t ctx, int64_t batch) {
  const std::vector<int64_t> table = token_byte_lengths(tokenizer);
  const auto V = static_cast<int64_t>(table.size());
  check_token_ids(ids, V, "divergence");
  const std::vector<detail::WindowBatch> windows =
      detail::window_batches(static_cast<int64_t>(ids.size()), ctx, batch, "divergence");
  NoGrad no_grad;
  double kl = 0.0, nll_model = 0.0, nll_reference = 0.0;
  int64_t agree = 0;
  DivergenceResult r;
  auto tensor_of = [](const auto& x) -> Tensor {
    if constexpr (std::is_same_v<std::decay_t<decltype(x)>, Var>) return x.value().contiguous();
    else return x.contiguous();
  };
  for (const detail::WindowBatch& w : windows) {
    const auto [in, tg] = detail::window_inputs(ids, w.starts, w.len);
    const Tensor q = tensor_of(forward(in)), p = tensor_of(reference_forward(in));
    const auto N = static_cast<int64_t>(tg.data.size());
    for (const auto& [what, z] : {std::pair<const char*, const Tensor*>{"model", &q}, {"reference", &p}})
      if (z->numel() != N * V)
        throw ValueError(fmt::format("divergence: the {}'s logits have shape {}, not ({}, {}, {}) for the tokenizer's "
                                     "vocabulary of {}", what, z->shape().str(), in.shape[0], in.shape[1], V, V));
    cpu::divergence_rows(p.data(), q.data(), tg.data.data(), N, V, kl, nll_model, nll_reference, agree);
    r.tokens += N;
    for (int32_t id : tg.data) r.bytes += table[static_cast<size_t>(id)];
  }
  if (r.tokens == 0) return r;
  const double ln2 = std::log(2.0);
  r.kl_bits_per_token = kl / (static_cast<double>(r.tokens) * ln2);
  r.top1_agreement = static_cast<double>(agree) / static_cast<double>(r.tokens);
  if (r.bytes > 0) {
    r.kl_bpb = kl / (static_cast<double>(r.bytes) * ln2);
    r.bpb = nll_model / (static_cast<double>(r.bytes) * ln2);
    r.reference_bpb = nll_reference / (static_cast<double>(r.bytes) * ln2);
  }
  return r;
}

// KL(reference || model) of two models (model(ids) -> logits) over the same tokenizer.
template <class Model, class Reference, Tokenizer Tok>
DivergenceResult divergence(const Model& model, const Reference& reference, const Tok& tokenizer,
                            std::span<const int32_t> ids, int64_t ctx, int64_t batch = 16) {
  return divergence_with(detail::plain_forward(model), detail::plain_forward(reference), tokenizer, ids, ctx, batch);
}

}  // namespace nr
