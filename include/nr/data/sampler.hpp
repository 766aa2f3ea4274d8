// nr/data/sampler.hpp — random training windows, from one domain or a mixture of domains.
//
// A batch is B windows of T + 1 consecutive tokens: inputs are tokens [0, T), targets [1, T+1).
// The mixture sampler draws, for each sequence, a domain with the given proportions and tags the
// sequence with that domain's index; the tags feed the local losses of extensions.
//
// A domain's tokens are a vector it points to or a span (e.g. the memory-mapped ids of a token
// file, data/token_file.hpp); neither is owned. Given the tokenizer that produced them, the
// constructor checks every id against its vocabulary (an id >= V would index past the model's
// embedding table), so a token file of another tokenizer is refused before training starts.
//
// Batches are a pure function of (seed, step): the generator is re-seeded from both for every
// step. Resuming a run at step s therefore replays exactly the data an uninterrupted run would
// have seen, with no sampler state to save.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/indices.hpp"
#include "nr/core/rng.hpp"
#include "nr/data/token_bytes.hpp"

namespace nr {

struct Batch {
  Indices inputs;         // (B, T)
  Indices targets;        // (B, T)
  std::vector<int> tags;  // (B,) domain index of each sequence
};

struct MixtureDomain {
  std::string name;
  const std::vector<int32_t>* tokens = nullptr;  // the domain's training tokens (not owned)
  double weight = 1.0;                           // unnormalised proportion
  std::span<const int32_t> ids = {};             // the tokens as a span (not owned), when tokens is null

  std::span<const int32_t> token_span() const { return tokens ? std::span<const int32_t>(*tokens) : ids; }
};

class MixtureSampler {
 public:
  MixtureSampler(std::vector<MixtureDomain> domains, int64_t batch, int64_t ctx, uint64_t seed)
      : domains_(std::move(domains)), batch_(batch), ctx_(ctx), seed_(seed) {
    if (domains_.empty()) throw ValueError("MixtureSampler: no domain given");
    if (batch <= 0 || ctx <= 0)
      throw ValueError(fmt::format("MixtureSampler: batch ({}) and context ({}) must be positive", batch, ctx));
    double total = 0.0;
    for (const MixtureDomain& d : domains_) {
      if (!d.tokens && d.ids.empty()) throw ValueError(fmt::format("MixtureSampler: domain '{}' has no tokens", d.name));
      if (d.weight < 0.0) throw ValueError(fmt::format("MixtureSampler: domain '{}' has negative weight", d.name));
      if (d.weight > 0.0 && static_cast<int64_t>(d.token_span().size()) < ctx + 1)
        throw ValueError(fmt::format("MixtureSampler: domain '{}' holds {} tokens, fewer than context + 1 = {}", d.name,
                                     d.token_span().size(), ctx + 1));
      total += d.weight;
    }
    if (!(total > 0.0)) throw ValueError("MixtureSampler: all domain weights are zero");
    double acc = 0.0;
    for (const MixtureDomain& d : domains_) {
      acc += d.weight / total;
      cumulative_.push_back(acc);
    }
    cumulative_.back() = 1.0;
  }

  // The same, with every domain's ids checked against the vocabulary of `tokenizer`.
  template <Tokenizer Tok>
  MixtureSampler(std::vector<MixtureDomain> domains, int64_t batch, int64_t ctx, uint64_t seed, const Tok& tokenizer)
      : MixtureSampler(std::move(domains), batch, ctx, seed) {
    for (const MixtureDomain& d : domains_)
      check_token_ids(d.token_span(), static_cast<int64_t>(tokenizer.vocab_size()),
                      fmt::format("MixtureSampler: domain '{}'", d.name));
  }

  int64_t batch_size() const { return batch_; }
  int64_t context() const { return ctx_; }
  const std::vector<MixtureDomain>& domains() const { return domains_; }

  Batch batch_at(int64_t step) const {
    Rng rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull + 1);
    Batch b;
    const Shape s{batch_, ctx_};
    b.inputs.shape = s;
    b.targets.shape = s;
    b.inputs.data.resize(static_cast<size_t>(batch_ * ctx_));
    b.targets.data.resize(static_cast<size_t>(batch_ * ctx_));
    b.tags.resize(static_cast<size_t>(batch_));
    for (int64_t i = 0; i < batch_; ++i) {
      const double u = rng.uniform();
      size_t d = 0;
      while (d + 1 < domains_.size() && u >= cumulative_[d]) ++d;
      const std::span<const int32_t> tok = domains_[d].token_span();
      const int64_t start = rng.randint(static_cast<int64_t>(tok.size()) - ctx_);
      for (int64_t t = 0; t < ctx_; ++t) {
        b.inputs.data[static_cast<size_t>(i * ctx_ + t)] = tok[static_cast<size_t>(start + t)];
        b.targets.data[static_cast<size_t>(i * ctx_ + t)] = tok[static_cast<size_t>(start + t + 1)];
      }
      b.tags[static_cast<size_t>(i)] = static_cast<int>(d);
    }
    return b;
  }

 private:
  std::vector<MixtureDomain> domains_;
  std::vector<double> cumulative_;
  int64_t batch_, ctx_;
  uint64_t seed_;
};

// Windows from a single domain: a mixture of one.
inline MixtureSampler single_domain_sampler(const std::string& name, const std::vector<int32_t>& tokens, int64_t batch,
                                            int64_t ctx, uint64_t seed) {
  return MixtureSampler({MixtureDomain{name, &tokens, 1.0}}, batch, ctx, seed);
}

// The same over ids produced by `tokenizer`, checked against its vocabulary.
template <Tokenizer Tok>
MixtureSampler single_domain_sampler(const std::string& name, std::span<const int32_t> ids, int64_t batch, int64_t ctx,
                                     uint64_t seed, const Tok& tokenizer) {
  return MixtureSampler({MixtureDomain{.name = name, .ids = ids}}, batch, ctx, seed, tokenizer);
}

}  // namespace nr
