// nr/nn/language_model.hpp — a decoder-only language model (Llama layout).
//
//   x      = embed_tokens(ids)                 ids (B, T) -> (B, T, C)
//   x      = block_l(x)  for l = 0 .. L-1        (recomputed in the backward with ctx.recompute_blocks)
//   logits = lm_head(norm(x))                  (B, T, V)
//   loss   = cross_entropy(logits, targets)    fused with lm_head, chunked (loss() below)
// lm_head is its own matrix unless tie_word_embeddings, in which case it reads the embedding.
// Tensor names: model.embed_tokens.weight, model.layers.N...., model.norm.weight, lm_head.weight.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nr/nn/attention.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/embedding.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/recompute.hpp"
#include "nr/ops/cross_entropy.hpp"
#include "nr/ops/linear_cross_entropy.hpp"

namespace nr {

namespace detail {
// The hidden_act of a block's FFN (its `mlp`), fixed at compile time by the FFN type, or nullptr
// for an FFN that does not declare one.
template <class BlockT>
constexpr const char* block_hidden_act() {
  if constexpr (requires { std::remove_cvref_t<decltype(std::declval<BlockT&>().mlp)>::hidden_act; })
    return std::remove_cvref_t<decltype(std::declval<BlockT&>().mlp)>::hidden_act;
  else
    return nullptr;
}
}  // namespace detail

template <class BlockT>
struct LanguageModel {
  ModelConfig config;
  Embedding embed_tokens;
  std::vector<BlockT> layers;
  RMSNorm norm;
  Linear lm_head;  // unused (no parameter) when the embeddings are tied

  LanguageModel() = default;
  LanguageModel(const ModelConfig& c, uint64_t seed)
      : LanguageModel(c, seed, [&c](int64_t, Rng& layer_rng) { return BlockT(c, layer_rng); }) {}

  // Builds block l as make_block(l, rng_l) instead of BlockT(c, rng_l), for blocks whose layers
  // need more than the ModelConfig (mixtures of experts take a MoeConfig, see nn/moe_model.hpp).
  // The random streams are those of the constructor above.
  template <class MakeBlock>
    requires std::is_invocable_r_v<BlockT, MakeBlock&, int64_t, Rng&>
  LanguageModel(const ModelConfig& c, uint64_t seed, MakeBlock&& make_block) : config(c) {
    c.validate();
    // The activation is a compile-time choice of the FFN type: a config asking for another one
    // would silently compute the wrong function.
    if constexpr (constexpr const char* act = detail::block_hidden_act<BlockT>(); act != nullptr)
      if (c.hidden_act != act)
        throw ValueError(fmt::format("LanguageModel: the config's hidden_act is '{}' but this model type's FFN computes "
                                     "'{}'; build the model type whose FFN matches the config",
                                     c.hidden_act, act));
    Rng rng(seed);
    embed_tokens = Embedding(c.vocab_size, c.hidden_size, rng);
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      Rng layer_rng = rng.split();
      layers.push_back(make_block(l, layer_rng));
    }
    norm = RMSNorm(c.hidden_size, c.rms_norm_eps);
    if (!c.tie_word_embeddings) lm_head = Linear(c.hidden_size, c.vocab_size, rng);
  }

  // Final hidden states before the output head, (B, T, C).
  Var hidden(const Indices& ids, ForwardContext& ctx) const {
    if (ids.shape.rank() != 2)
      throw ShapeError(fmt::format("LanguageModel: token ids must be (B, T), got {}", ids.shape.str()));
    if (ids.shape[1] > config.max_position_embeddings)
      throw ShapeError(fmt::format("LanguageModel: sequence length {} exceeds max_position_embeddings {}",
                                   ids.shape[1], config.max_position_embeddings));
    Var x = embed_tokens(ids);
    for (const BlockT& layer : layers) x = ctx.recompute_blocks ? recompute_block(layer, x, ctx) : layer(x, ctx);
    return norm(x);
  }

  Var operator()(const Indices& ids, ForwardContext& ctx) const {  // (B, T) -> logits (B, T, V)
    const Var h = hidden(ids, ctx);
    return config.tie_word_embeddings ? linear(h, embed_tokens.weight) : lm_head(h);
  }

  Var operator()(const Indices& ids) const {
    ForwardContext ctx;
    return (*this)(ids, ctx);
  }

  // The output head's weight (V, C): lm_head's, or the token embedding's when tied.
  const Var& head_weight() const { return config.tie_word_embeddings ? embed_tokens.weight : lm_head.weight; }

  // Mean next-token cross-entropy of `targets` (B, T) given `ids` (B, T). The head and the loss
  // run fused and chunked (ops/linear_cross_entropy.hpp): the (B, T, V) logits are never held,
  // which for a real vocabulary (49 152 for SmolLM2) is most of a step's memory; the value and
  // the gradients equal cross_entropy((*this)(ids, ctx), targets) up to float rounding.
  Var loss(const Indices& ids, const Indices& targets, ForwardContext& ctx) const {
    return linear_cross_entropy(hidden(ids, ctx), head_weight(), targets);
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix = "") {
    embed_tokens.visit_parameters(f, prefix + "model.embed_tokens.");
    for (size_t l = 0; l < layers.size(); ++l)
      layers[l].visit_parameters(f, prefix + "model.layers." + std::to_string(l) + ".");
    norm.visit_parameters(f, prefix + "model.norm.");
    if (!config.tie_word_embeddings) lm_head.visit_parameters(f, prefix + "lm_head.");
  }
};

// The Llama backbone: softmax attention with RoPE, SiLU-gated FFN.
using LlamaBlock = Block<Attention<>, GatedFfn<Silu>>;
using Llama = LanguageModel<LlamaBlock>;
// Gemma-style FFN activation.
using GemmaStyleBlock = Block<Attention<>, GatedFfn<GeluTanh>>;

}  // namespace nr
