// nr/recipes/evaluate.hpp — per-domain evaluation of a model on a corpus: bits per byte of every
// domain's valid.txt, and for adapter / new-expert models the per-layer statistics the
// extension records (mean |adapter output|, gate mean and near-zero fraction, new-expert mass)
// on the original domain (sequences flagged original) and on the new one.
//
//   load_valid_sets(corpus, max_tokens, tokenizer)   each domain's valid.txt as tokens (cached per
//                                                    tokenizer, data/domain_tokens.hpp)
//   evaluate_domains(model, sets, ctx, batch, ...)   {"en": bpb, "fr": bpb, ...}
// The tokenizer is a parameter (Tokenizer); bits per byte divide by the UTF-8 bytes of the
// predicted tokens (eval/bpb.hpp), so models with different tokenizers compare.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/data/domain_tokens.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/eval/bpb.hpp"
#include "nr/eval/divergence.hpp"
#include "nr/ext/adapter.hpp"
#include "nr/ext/new_experts.hpp"

namespace nr::recipes {

struct ValidSet {
  std::string name;
  std::vector<int32_t> tokens;
};

// The valid.txt of every domain of a corpus, each cut to at most `max_tokens` tokens (0 = all;
// for the byte tokenizer tokens are bytes).
template <Tokenizer Tok = ByteTokenizer>
std::vector<ValidSet> load_valid_sets(const std::filesystem::path& corpus, int64_t max_tokens, const Tok& tokenizer = {}) {
  std::vector<ValidSet> sets;
  for (const std::string& name : list_domains(corpus)) {
    const DomainTokens ids = domain_tokens(corpus, name, "valid", tokenizer);
    const std::span<const int32_t> all = ids.ids();
    const size_t n = max_tokens > 0 ? std::min(all.size(), static_cast<size_t>(max_tokens)) : all.size();
    sets.push_back(ValidSet{name, std::vector<int32_t>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n))});
  }
  return sets;
}

template <class E>
struct IsAdapter : std::false_type {};
template <class G>
struct IsAdapter<Adapter<G>> : std::true_type {};

template <class E>
struct IsNewExperts : std::false_type {};
template <class A>
struct IsNewExperts<NewExperts<A>> : std::true_type {};

// Whether the blocks of a model carry adapters (and so record adapter statistics).
template <class Model>
constexpr bool has_adapters() {
  return IsAdapter<std::decay_t<decltype(std::declval<Model&>().layers[0].extension)>>::value;
}
// Whether they carry new experts beside the FFN (which record the new-expert routing mass).
template <class Model>
constexpr bool has_new_experts() {
  return IsNewExperts<std::decay_t<decltype(std::declval<Model&>().layers[0].extension)>>::value;
}
template <class Model>
constexpr bool has_extension_stats() {
  return has_adapters<Model>() || has_new_experts<Model>();
}
// BPB of `tokens` with adapter statistics collected into a fresh context; every sequence is
// flagged `original`.
template <class Model, Tokenizer Tok>
BpbResult bpb_with_stats(const Model& model, const Tok& tokenizer, const std::vector<int32_t>& tokens, int64_t ctx,
                         int64_t batch, bool original, ForwardContext& fc) {
  fc = ForwardContext{};
  fc.collect_stats = true;
  return bits_per_byte(model, tokenizer, std::span<const int32_t>(tokens), ctx, batch, [&](int64_t B) -> ForwardContext& {
    fc.original.assign(static_cast<size_t>(B), original ? 1 : 0);
    fc.local_losses.clear();
    return fc;
  });
}

// Per layer: {"layer", "adapter_abs_mean", and for gated adapters "gate_mean", "gate_near_zero"}
// from the statistics the adapters recorded, or "new_expert_mass" (mean over tokens of the
// router's probability 1 - q_0 of the new experts) for new experts (keys
// "layer<l>.<original|new>.<name>").
inline nlohmann::json stats_by_layer(const ForwardContext& fc, int64_t layers, bool original) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t l = 0; l < layers; ++l) {
    nlohmann::json row = {{"layer", l}};
    for (const char* metric : {"adapter_abs_mean", "gate_mean", "gate_near_zero", "new_expert_mass"}) {
      const std::string key = fmt::format("layer{}.{}.{}", l, original ? "original" : "new", metric);
      const auto s = fc.stats.find(key);
      const auto c = fc.counts.find(key);
      if (s != fc.stats.end() && c != fc.counts.end() && c->second > 0) row[metric] = s->second / c->second;
    }
    rows.push_back(row);
  }
  return rows;
}

// BPB of every valid set; for adapter models with `stats`, the original and the new domain are
// evaluated with collect_stats and their flags, and the statistics come back in *stats_out.
// `predicted`, when given, receives the number of predicted tokens of each domain. `tokenizer`
// is the one that made the sets (it says how many bytes each token stands for).
template <class Model, Tokenizer Tok = ByteTokenizer>
nlohmann::json evaluate_domains(const Model& model, const std::vector<ValidSet>& sets, int64_t ctx, int64_t batch,
                                const std::string& original_domain = "", const std::string& new_domain = "",
                                nlohmann::json* stats_out = nullptr, std::map<std::string, int64_t>* predicted = nullptr,
                                const Tok& tokenizer = {}) {
  nlohmann::json bpb = nlohmann::json::object();
  nlohmann::json domains = nlohmann::json::object();
  for (const ValidSet& v : sets) {
    const bool is_orig = v.name == original_domain, is_new = v.name == new_domain;
    if (stats_out && (is_orig || is_new)) {
      ForwardContext fc;
      const BpbResult r = bpb_with_stats(model, tokenizer, v.tokens, ctx, batch, is_orig, fc);
      bpb[v.name] = r.bpb;
      if (predicted) (*predicted)[v.name] = r.tokens;
      domains[v.name] = {{"original", is_orig}, {"bpb", r.bpb}, {"tokens", r.tokens},
                         {"layers", stats_by_layer(fc, static_cast<int64_t>(model.layers.size()), is_orig)}};
    } else {
      const BpbResult r = bits_per_byte(model, tokenizer, std::span<const int32_t>(v.tokens), ctx, batch);
      bpb[v.name] = r.bpb;
      if (predicted) (*predicted)[v.name] = r.tokens;
    }
  }
  if (stats_out) {
    if (domains.empty())
      throw ValueError(fmt::format("adapter statistics: neither the original domain '{}' nor the new domain '{}' is "
                                       "in the corpus", original_domain, new_domain));
    *stats_out = {{"original_domain", original_domain}, {"new_domain", new_domain}, {"domains", domains}};
  }
  return bpb;
}

// The divergence of a model from a reference on one text as JSON (results.json "divergence",
// nrlab eval --reference).
inline nlohmann::json divergence_json(const DivergenceResult& d) {
  return {{"kl_bpb", d.kl_bpb},         {"kl_bits_per_token", d.kl_bits_per_token},
          {"top1_agreement", d.top1_agreement}, {"reference_bpb", d.reference_bpb},
          {"bpb", d.bpb},               {"tokens", d.tokens}};
}

}  // namespace nr::recipes
