// nr/nn/block.hpp — one pre-norm transformer block.
//
//   h   = x + attn(norm1(x))
//   out = h + ffn(norm2(h))
// Attention and FFN are template parameters (any type callable as (Var, ForwardContext&) -> Var
// with visit_parameters), so a backbone's layers are chosen at compile time.
//
// The third parameter is an extension placed beside the sub-blocks (an adapter, a gated adapter,
// new experts). It reports where it sits (its site(), decided when it is attached) and adds its
// output to the residual stream:
//   attention_parallel:  h   = x + attn(norm1(x)) + ext(x)
//   ffn_parallel:        out = h + ffn(norm2(h)) + ext(h)          (the paper's Figure 2)
//   ffn_serial:          out = h + f + ext(f),  f = ffn(norm2(h))  (Houlsby et al., after the FFN)
// NoExtension (the default) is the plain backbone block and costs nothing.
#pragma once

#include <utility>

#include "nr/core/rng.hpp"
#include "nr/nn/config.hpp"
#include "nr/nn/rms_norm.hpp"
#include "nr/ops/elementwise.hpp"

namespace nr {

enum class ExtensionSite { none, attention_parallel, ffn_parallel, ffn_serial };

// The empty extension of a plain backbone block.
struct NoExtension {
  ExtensionSite site() const { return ExtensionSite::none; }
  Var operator()(const Var& x, ForwardContext&) const { return x; }
  void visit_parameters(const ParameterVisitor&, const std::string&) {}
};

template <class M>
concept Layer = Module<M> && requires(const M& m, const Var& x, ForwardContext& ctx) {
  { m(x, ctx) } -> std::convertible_to<Var>;
};

template <class E>
concept Extension = Layer<E> && requires(const E& e) {
  { e.site() } -> std::same_as<ExtensionSite>;
};

template <Layer Attn, Layer Ffn, Extension Ext = NoExtension>
struct Block {
  RMSNorm input_layernorm;           // norm1
  Attn self_attn;
  RMSNorm post_attention_layernorm;  // norm2
  Ffn mlp;
  Ext extension;                     // parameters named "model.layers.N.adapter.*"

  Block() = default;
  Block(const ModelConfig& c, Rng& rng)
      : input_layernorm(c.hidden_size, c.rms_norm_eps),
        self_attn(c, rng),
        post_attention_layernorm(c.hidden_size, c.rms_norm_eps),
        mlp(c, rng) {}
  // From sub-layers built elsewhere (layers whose constructor needs more than the ModelConfig,
  // such as mixtures of experts: see nn/moe_model.hpp); the norms come from c.
  Block(const ModelConfig& c, Attn attn, Ffn ffn)
      : input_layernorm(c.hidden_size, c.rms_norm_eps),
        self_attn(std::move(attn)),
        post_attention_layernorm(c.hidden_size, c.rms_norm_eps),
        mlp(std::move(ffn)) {}

  Var operator()(const Var& x, ForwardContext& ctx) const {  // (B, T, C) -> (B, T, C)
    const ExtensionSite site = extension.site();
    Var a = self_attn(input_layernorm(x), ctx);
    if (site == ExtensionSite::attention_parallel) a = a + extension(x, ctx);
    const Var h = x + a;
    Var f = mlp(post_attention_layernorm(h), ctx);
    if (site == ExtensionSite::ffn_parallel) f = f + extension(h, ctx);
    if (site == ExtensionSite::ffn_serial) f = f + extension(f, ctx);
    return h + f;
  }

  void visit_parameters(const ParameterVisitor& f, const std::string& prefix) {
    input_layernorm.visit_parameters(f, prefix + "input_layernorm.");
    self_attn.visit_parameters(f, prefix + "self_attn.");
    post_attention_layernorm.visit_parameters(f, prefix + "post_attention_layernorm.");
    mlp.visit_parameters(f, prefix + "mlp.");
    extension.visit_parameters(f, prefix + "adapter.");
  }
};

}  // namespace nr
