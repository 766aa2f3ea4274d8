// nr/eval/multiple_choice.hpp — multiple-choice scoring as lm-evaluation-harness does it, for any
// tokenizer.
//
// Each choice is scored as the continuation of the context: the continuation is " " + choice,
// and the score of a choice is its summed log-likelihood
//   ll(choice) = sum over the continuation's tokens t of log p(t | everything before it).
// Tokenisation follows lm-evaluation-harness (so that a BPE tokenizer scores the same tokens it
// would there): trailing spaces of the context move to the start of the continuation, then
//   whole = encode(context + continuation),  ctx_ids = encode(context),
//   continuation ids = whole[len(ctx_ids):]
// (the context's ids are those of the whole text's first len(ctx_ids) tokens, which may differ
// from ctx_ids where a token spans the boundary). Then, over the items,
//   acc       = fraction of items whose argmax_choice ll(choice) is the true choice,
//   acc_norm  = the same with ll(choice) / (UTF-8 bytes of the continuation " " + choice),
// which removes the bias towards short answers (bytes, not tokens: the same for every
// tokenizer). k-shot: the context is preceded by k solved examples ("context answer\n\n"), drawn
// deterministically from a pool of other items. When the whole text exceeds the model's context,
// the oldest tokens are dropped (left truncation), so the continuation is always scored in full.
// Chance level = mean over items of 1 / #choices. Standard errors are lm-evaluation-harness's:
// the sample standard deviation of the per-item hits over sqrt(n), sqrt(p (1 - p) / (n - 1)).
// The forms without a tokenizer use the byte tokenizer.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/tape.hpp"
#include "nr/core/indices.hpp"
#include "nr/core/rng.hpp"
#include "nr/data/token_bytes.hpp"
#include "nr/ops/cross_entropy.hpp"

namespace nr {

struct ChoiceItem {
  std::string context;
  std::vector<std::string> choices;
  int label = 0;  // index of the true choice
};

struct ChoiceScores {
  std::vector<double> loglik;  // per choice, summed log-likelihood (nats)
  std::vector<double> bytes;   // per choice, UTF-8 bytes of " " + choice (acc_norm divides by these)
  std::vector<double> chars;   // per choice, code points of " " + choice
};

struct MultipleChoiceResult {
  double acc = 0.0;
  double acc_norm = 0.0;
  double acc_stderr = 0.0, acc_norm_stderr = 0.0;  // binomial_stderr of each
  double chance = 0.0;
  int64_t items = 0;
  int k_shot = 0;
};

// Standard error of an accuracy p over n items (lm-evaluation-harness's: the sample standard
// deviation of the 0 / 1 hits over sqrt(n)); 0 for fewer than two items.
inline double binomial_stderr(double p, int64_t n) {
  return n > 1 ? std::sqrt(std::max(0.0, p * (1.0 - p)) / static_cast<double>(n - 1)) : 0.0;
}

// Number of UTF-8 code points (continuation bytes 10xxxxxx are not counted).
inline int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// The ids lm-evaluation-harness scores for one (context, continuation) pair.
struct ContinuationTokens {
  std::vector<int32_t> context;       // ids the continuation is predicted from
  std::vector<int32_t> continuation;  // ids whose log-likelihood is summed
};

template <Tokenizer Tok>
ContinuationTokens split_continuation(const Tok& tok, std::string_view context, std::string_view continuation) {
  size_t keep = context.size();
  while (keep > 0 && (context[keep - 1] == ' ' || context[keep - 1] == '\t' || context[keep - 1] == '\n' ||
                      context[keep - 1] == '\r' || context[keep - 1] == '\v' || context[keep - 1] == '\f'))
    --keep;
  const std::string cont = std::string(context.substr(keep)) + std::string(continuation);
  const std::string_view ctx = context.substr(0, keep);
  std::vector<int32_t> whole = tok.encode(std::string(ctx) + cont);
  const size_t n_ctx = std::min(tok.encode(ctx).size(), whole.size());
  ContinuationTokens r;
  r.continuation.assign(whole.begin() + static_cast<std::ptrdiff_t>(n_ctx), whole.end());
  whole.resize(n_ctx);
  r.context = std::move(whole);
  return r;
}

// Summed log-likelihood of each continuation after its context, in one batched forward pass.
// Sequences are left-truncated to `max_len` tokens and right-padded to a common length; padding
// comes after every scored position, so causal attention never lets it influence a score. An
// empty context is replaced by encode("\n") (something to predict the first token from).
template <class Model, Tokenizer Tok>
std::vector<double> continuation_logliks(const Model& model, const Tok& tok, const std::vector<std::string>& contexts,
                                         const std::vector<std::string>& continuations, int64_t max_len) {
  if (contexts.size() != continuations.size())
    throw ValueError(fmt::format("continuation_logliks: {} contexts for {} continuations", contexts.size(),
                                 continuations.size()));
  if (max_len < 2) throw ValueError(fmt::format("continuation_logliks: max_len must be at least 2, got {}", max_len));
  const int64_t V = static_cast<int64_t>(tok.vocab_size());
  const int64_t B = static_cast<int64_t>(contexts.size());
  std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(B));
  std::vector<int64_t> cont_len(static_cast<size_t>(B));
  int64_t T = 1;
  for (int64_t b = 0; b < B; ++b) {
    ContinuationTokens ct = split_continuation(tok, contexts[static_cast<size_t>(b)], continuations[static_cast<size_t>(b)]);
    std::vector<int32_t>& ctx = ct.context;
    const std::vector<int32_t>& cont = ct.continuation;
    if (cont.empty())
      throw ValueError(fmt::format("continuation_logliks: continuation '{}' has no token of its own",
                                   continuations[static_cast<size_t>(b)]));
    if (static_cast<int64_t>(cont.size()) + 1 > max_len)
      throw ValueError(fmt::format("continuation_logliks: continuation of {} tokens does not fit a context of {}",
                                   cont.size(), max_len));
    if (ctx.empty()) ctx = tok.encode("\n");
    if (ctx.empty()) throw ValueError("continuation_logliks: the tokenizer encodes \"\\n\" to no token");
    std::vector<int32_t>& s = seqs[static_cast<size_t>(b)];
    s = ctx;
    s.insert(s.end(), cont.begin(), cont.end());
    check_token_ids(s, V, "continuation_logliks");
    if (static_cast<int64_t>(s.size()) > max_len + 1) s.erase(s.begin(), s.end() - (max_len + 1));
    cont_len[static_cast<size_t>(b)] = static_cast<int64_t>(cont.size());
    T = std::max<int64_t>(T, static_cast<int64_t>(s.size()) - 1);
  }
  Indices in, tg;
  in.shape = tg.shape = Shape{B, T};
  in.data.assign(static_cast<size_t>(B * T), 0);
  tg.data.assign(static_cast<size_t>(B * T), 0);
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& s = seqs[static_cast<size_t>(b)];
    for (size_t t = 0; t + 1 < s.size(); ++t) {
      in.data[static_cast<size_t>(b * T) + t] = s[t];
      tg.data[static_cast<size_t>(b * T) + t] = s[t + 1];
    }
  }
  NoGrad no_grad;
  const std::vector<double> nll = cross_entropy_per_token(model(in).value(), tg);
  std::vector<double> out(static_cast<size_t>(B), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t last = static_cast<int64_t>(seqs[static_cast<size_t>(b)].size()) - 1;  // predictions 0..last-1
    for (int64_t t = last - cont_len[static_cast<size_t>(b)]; t < last; ++t)
      out[static_cast<size_t>(b)] -= nll[static_cast<size_t>(b * T + t)];
  }
  return out;
}

template <class Model>
std::vector<double> continuation_logliks(const Model& model, const std::vector<std::string>& contexts,
                                         const std::vector<std::string>& continuations, int64_t max_len) {
  return continuation_logliks(model, ByteTokenizer{}, contexts, continuations, max_len);
}

// The k solved examples placed before item `index` (never the item itself).
inline std::string few_shot_prefix(const std::vector<ChoiceItem>& pool, size_t index, int k, uint64_t seed) {
  if (k <= 0 || pool.size() < 2) return "";
  Rng rng(seed * 1000003ull + index);
  std::string prefix;
  std::vector<size_t> used;
  while (static_cast<int>(used.size()) < std::min<int>(k, static_cast<int>(pool.size()) - 1)) {
    const size_t j = static_cast<size_t>(rng.randint(static_cast<int64_t>(pool.size())));
    if (j == index || std::find(used.begin(), used.end(), j) != used.end()) continue;
    used.push_back(j);
    const ChoiceItem& ex = pool[j];
    prefix += ex.context + " " + ex.choices[static_cast<size_t>(ex.label)] + "\n\n";
  }
  return prefix;
}

template <class Model, Tokenizer Tok>
ChoiceScores score_item(const Model& model, const Tok& tok, const ChoiceItem& item, const std::string& prefix,
                        int64_t max_len) {
  ChoiceScores s;
  std::vector<std::string> ctxs, conts;
  for (const std::string& c : item.choices) {
    ctxs.push_back(prefix + item.context);
    conts.push_back(" " + c);
    s.bytes.push_back(static_cast<double>(conts.back().size()));
    s.chars.push_back(static_cast<double>(utf8_length(conts.back())));
  }
  s.loglik = continuation_logliks(model, tok, ctxs, conts, max_len);
  return s;
}

template <class Model>
ChoiceScores score_item(const Model& model, const ChoiceItem& item, const std::string& prefix, int64_t max_len) {
  return score_item(model, ByteTokenizer{}, item, prefix, max_len);
}

// Index of the best choice (first on ties) by raw or byte-normalised log-likelihood.
inline int best_choice(const ChoiceScores& s, bool normalised) {
  int best = 0;
  for (size_t i = 1; i < s.loglik.size(); ++i) {
    const double a = normalised ? s.loglik[i] / s.bytes[i] : s.loglik[i];
    const double b = normalised ? s.loglik[static_cast<size_t>(best)] / s.bytes[static_cast<size_t>(best)]
                                : s.loglik[static_cast<size_t>(best)];
    if (a > b) best = static_cast<int>(i);
  }
  return best;
}

template <class Model, Tokenizer Tok>
MultipleChoiceResult evaluate_multiple_choice(const Model& model, const Tok& tok, const std::vector<ChoiceItem>& items,
                                              int k_shot, int64_t max_len, uint64_t seed = 1) {
  MultipleChoiceResult r;
  r.k_shot = k_shot;
  if (items.empty()) throw ValueError("evaluate_multiple_choice: no item");
  double hits = 0, hits_norm = 0, chance = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const ChoiceItem& item = items[i];
    if (item.choices.size() < 2 || item.label < 0 || item.label >= static_cast<int>(item.choices.size()))
      throw ValueError(fmt::format("multiple-choice item {}: {} choices with label {}", i, item.choices.size(), item.label));
    const ChoiceScores s = score_item(model, tok, item, few_shot_prefix(items, i, k_shot, seed), max_len);
    hits += best_choice(s, false) == item.label;
    hits_norm += best_choice(s, true) == item.label;
    chance += 1.0 / static_cast<double>(item.choices.size());
  }
  const double n = static_cast<double>(items.size());
  r.items = static_cast<int64_t>(items.size());
  r.acc = hits / n;
  r.acc_norm = hits_norm / n;
  r.acc_stderr = binomial_stderr(r.acc, r.items);
  r.acc_norm_stderr = binomial_stderr(r.acc_norm, r.items);
  r.chance = chance / n;
  return r;
}

template <class Model>
MultipleChoiceResult evaluate_multiple_choice(const Model& model, const std::vector<ChoiceItem>& items, int k_shot,
                                              int64_t max_len, uint64_t seed = 1) {
  return evaluate_multiple_choice(model, ByteTokenizer{}, items, k_shot, max_len, seed);
}

}  // namespace nr
