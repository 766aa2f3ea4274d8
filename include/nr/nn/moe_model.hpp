// nr/nn/moe_model.hpp — building language models whose blocks hold mixture-of-experts layers.
//
// A Block's sub-layers are normally built from the ModelConfig alone (Attn(c, rng), Ffn(c, rng)).
// Expert layers need the MoeConfig and their block index too, so make_moe_model builds each
// sub-layer with
//   T(c, moe, layer, rng)   when T has that constructor (Experts, MixtureOfAttention),
//   T(c, rng)               otherwise (Attention, StickBreakingAttention, GatedFfn),
// in the order of Block(c, rng) (attention, then FFN), so any mixture composes:
//   using MoeLlama   = LanguageModel<Block<Attention<>, Experts<>>>;                 // SMoE FFN
//   using ModuleFormerLM = LanguageModel<Block<MixtureOfAttention<>, Experts<>>>;   // MoA + SMoE
//   auto m = make_moe_model<ModuleFormerLM>(config, MoeConfig{.num_experts = 8, .top_k = 2}, seed);
// The model is then an ordinary LanguageModel: named parameters, save_model / load_model_weights
// (store the MoeConfig next to the config with io/moe_config_json.hpp), training, evaluation.
#pragma once

#include <concepts>
#include <cstdint>

#include "nr/core/rng.hpp"
#include "nr/nn/attention.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/moe_config.hpp"
#include "nr/nn/stick_breaking_attention.hpp"

namespace nr {

// Builds one sub-layer of block `layer`: with the MoeConfig when T takes one, else as Block does.
template <class T>
T make_moe_sublayer(const ModelConfig& c, const MoeConfig& m, int64_t layer, Rng& rng) {
  if constexpr (std::constructible_from<T, const ModelConfig&, const MoeConfig&, int64_t, Rng&>)
    return T(c, m, layer, rng);
  else
    return T(c, rng);
}

// A model of type Model = LanguageModel<Block<Attn, Ffn, Ext>> whose sub-layers are built by
// make_moe_sublayer; the extension (if any) is left empty, to be attached afterwards.
template <class Model>
Model make_moe_model(const ModelConfig& c, const MoeConfig& m, uint64_t seed) {
  c.validate();
  m.validate(c);
  using BlockT = typename decltype(Model::layers)::value_type;
  using Attn = decltype(BlockT::self_attn);
  using Ffn = decltype(BlockT::mlp);
  return Model(c, seed, [&](int64_t layer, Rng& rng) {
    Attn attn = make_moe_sublayer<Attn>(c, m, layer, rng);
    Ffn ffn = make_moe_sublayer<Ffn>(c, m, layer, rng);
    return BlockT(c, std::move(attn), std::move(ffn));
  });
}

// Llama attention (softmax, RoPE) with a sparse mixture of SiLU experts as the FFN.
using MoeLlamaBlock = Block<Attention<>, Experts<Silu>>;
using MoeLlama = LanguageModel<MoeLlamaBlock>;
// The same with stick-breaking attention (ModuleFormer's attention, without its head experts).
using StickBreakingMoeBlock = Block<StickBreakingAttention<>, Experts<Silu>>;
using StickBreakingMoe = LanguageModel<StickBreakingMoeBlock>;

}  // namespace nr
