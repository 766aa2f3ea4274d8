// nr/ext/migu.hpp — linear layers that record the magnitude of their outputs, the forward half of
// MIGU (MagnItude-based Gradient Updating, the MIGU paper, Section 3.2, "Caching output
// magnitudes"; Section 3.3 for LoRA), and their registration with the mask.
//
// For a linear layer y = x W^T, W (out, in), each output unit i of each token gives h_i = x . w_i.
// During a training forward pass (gradients enabled, weight trainable) the layer adds, for every
// token (row) of y (..., out),
//   raw[i]        += |h_i|                       the L1 magnitude of unit i
//   normalized[i] += |h_i| / sum_j |h_j|         the token's normalised magnitude distribution
// into an OutputMagnitudes record shared with the gradient mask (optim/gradient_mask.hpp, which
// sees only parameters and records), which turns the batch's sums into the mask before the
// optimizer step and clears them. Evaluation (NoGrad) and frozen weights record nothing.
//
// Two drop-in layer types, chosen at compile time as the LinearT of Attention and GatedFfn:
//   MiguLinear      a Linear (full fine-tuning): records W's output;
//   MiguLoraLinear  a LoraLinear: y = x W^T + s (x A^T) B^T, records
//                     W's own output x W^T (used only if W is trainable),
//                     A's output x_A = x A^T (r units),
//                     the LoRA branch output x_B = s x_A B^T (out units),
//                     the layer output x_O = x W^T + x_B (out units);
//                   the mask of B reads x_O or x_B (MiguConfig::lora_b_source).
// The records are held by shared_ptr so that copies of a layer (a model copied, a vector of
// blocks reallocated) keep feeding the same record, as copies of a Var share its value.
// register_migu_sources(mask, model) hands a model's records to a MiguMask; MiguMask(model, cfg)
// calls it.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "nr/ext/lora.hpp"
#include "nr/nn/attention.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/linear.hpp"
#include "nr/optim/gradient_mask.hpp"

namespace nr {

namespace detail {
inline bool recording(const Var& w) { return grad_enabled() && w.defined() && w.requires_grad(); }
}  // namespace detail

// A Linear that records |x W^T| per output unit while training.
struct MiguLinear : Linear {
  std::shared_ptr<OutputMagnitudes> magnitudes = std::make_shared<OutputMagnitudes>();  // (out,)

  MiguLinear() = default;
  MiguLinear(int64_t in, int64_t out, Rng& rng, double std = 0.02) : Linear(in, out, rng, std) {}

  Var operator()(const Var& x) const {  // (..., in) -> (..., out)
    Var y = linear(x, weight);
    if (detail::recording(weight)) magnitudes->add(y.value());
    return y;
  }
};

// A LoraLinear that records the magnitudes MIGU needs for W, A and B while training.
struct MiguLoraLinear : LoraLinear {
  std::shared_ptr<OutputMagnitudes> weight_out = std::make_shared<OutputMagnitudes>();  // x W^T     (out,)
  std::shared_ptr<OutputMagnitudes> a_out = std::make_shared<OutputMagnitudes>();       // x_A       (r,)
  std::shared_ptr<OutputMagnitudes> b_branch = std::make_shared<OutputMagnitudes>();    // x_B       (out,)
  std::shared_ptr<OutputMagnitudes> layer_out = std::make_shared<OutputMagnitudes>();   // x_O       (out,)

  MiguLoraLinear() = default;
  MiguLoraLinear(int64_t in, int64_t out, Rng& rng, double std = 0.02) : LoraLinear(in, out, rng, std) {}

  // The same computation as LoraLinear::operator(), with the intermediate outputs recorded.
  Var operator()(const Var& x) const {  // (..., in) -> (..., out)
    const Var y = linear(x, weight);
    if (detail::recording(weight)) weight_out->add(y.value());
    if (rank() == 0) return y;
    const Var xa = linear(x, lora_A);
    const Var xb = linear(xa, lora_B) * scaling;
    const Var out = y + xb;
    if (detail::recording(lora_A)) a_out->add(xa.value());
    if (detail::recording(lora_B)) {
      b_branch->add(xb.value());
      layer_out->add(out.value());
    }
    return out;
  }
};

// Llama backbones whose projections record output magnitudes: full fine-tuning and LoRA.
using MiguLlamaBlock = Block<Attention<MiguLinear>, GatedFfn<Silu, MiguLinear>>;
using MiguLlama = LanguageModel<MiguLlamaBlock>;
using MiguLoraLlamaBlock = Block<Attention<MiguLoraLinear>, GatedFfn<Silu, MiguLoraLinear>>;
using MiguLoraLlama = LanguageModel<MiguLoraLlamaBlock>;

// Registration with a MiguMask (optim/gradient_mask.hpp): the parameters of the layers above
// with the record that masks each. Plain Linear / LoraLinear layers record nothing and are not
// masked. MiguMask(model, cfg) calls register_migu_sources(mask, model).
inline void register_migu_sources(MiguMask& mask, MiguLinear& l) { mask.add(l.weight, l.magnitudes); }
inline void register_migu_sources(MiguMask& mask, MiguLoraLinear& l) {
  mask.add(l.weight, l.weight_out);
  if (l.rank() > 0) {
    mask.add(l.lora_A, l.a_out);
    mask.add(l.lora_B, mask.config().lora_b_source == MiguLoraSource::layer_output ? l.layer_out : l.b_branch);
  }
}

namespace detail {
template <class L>
void register_migu_projection(MiguMask& mask, L& l) {
  if constexpr (std::is_same_v<L, MiguLinear> || std::is_same_v<L, MiguLoraLinear>) register_migu_sources(mask, l);
}
}  // namespace detail

// Every MiguLinear / MiguLoraLinear projection of a model's blocks (q, k, v, o, gate, up and down
// projections, those the block has).
template <class BlockT>
void register_migu_sources(MiguMask& mask, LanguageModel<BlockT>& model) {
  for (auto& layer : model.layers) {
    if constexpr (requires { layer.self_attn.q_proj; layer.self_attn.o_proj; }) {
      detail::register_migu_projection(mask, layer.self_attn.q_proj);
      detail::register_migu_projection(mask, layer.self_attn.k_proj);
      detail::register_migu_projection(mask, layer.self_attn.v_proj);
      detail::register_migu_projection(mask, layer.self_attn.o_proj);
    }
    if constexpr (requires { layer.mlp.gate_proj; layer.mlp.down_proj; }) {
      detail::register_migu_projection(mask, layer.mlp.gate_proj);
      detail::register_migu_projection(mask, layer.mlp.up_proj);
      detail::register_migu_projection(mask, layer.mlp.down_proj);
    }
  }
}

}  // namespace nr
