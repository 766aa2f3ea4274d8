// nr/optim/migu_linear.hpp — linear layers that record the magnitude of their outputs, the
// forward half of MIGU (MagnItude-based Gradient Updating, the MIGU paper, Section 3.2, "Caching
// output magnitudes"; Section 3.3 for LoRA).
//
// For a linear layer y = x W^T, W (out, in), each output unit i of each token gives h_i = x . w_i.
// During a training forward pass (gradients enabled, weight trainable) the layer adds, for every
// token (row) of y (..., out),
//   raw[i]        += |h_i|                       the L1 magnitude of unit i
//   normalized[i] += |h_i| / sum_j |h_j|         the token's normalised magnitude distribution
// into an OutputMagnitudes record shared with the gradient mask (optim/gradient_mask.hpp), which
// turns the batch's sums into the mask before the optimizer step and clears them. Evaluation
// (NoGrad) and frozen weights record nothing.
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
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "nr/ext/lora.hpp"
#include "nr/nn/attention.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/linear.hpp"

namespace nr {

// Per-unit output magnitudes summed over the tokens seen since the last clear().
struct OutputMagnitudes {
  std::vector<double> raw;         // (units,) sum over tokens of |h_i|
  std::vector<double> normalized;  // (units,) sum over tokens of |h_i| / sum_j |h_j|
  int64_t tokens = 0;

  // y (..., units): one token per row.
  void add(const Tensor& y) {
    const int64_t units = y.shape().back(), rows = y.shape().rows();
    if (static_cast<int64_t>(raw.size()) != units) {
      raw.assign(static_cast<size_t>(units), 0.0);
      normalized.assign(static_cast<size_t>(units), 0.0);
      tokens = 0;
    }
    const Tensor c = y.contiguous();
    const float* p = c.data();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = p + r * units;
      double l1 = 0.0;
      for (int64_t i = 0; i < units; ++i) l1 += std::abs(static_cast<double>(row[i]));
      const double inv = l1 > 0.0 ? 1.0 / l1 : 0.0;
      for (int64_t i = 0; i < units; ++i) {
        const double a = std::abs(static_cast<double>(row[i]));
        raw[static_cast<size_t>(i)] += a;
        normalized[static_cast<size_t>(i)] += a * inv;
      }
    }
    tokens += rows;
  }
  void clear() {
    std::fill(raw.begin(), raw.end(), 0.0);
    std::fill(normalized.begin(), normalized.end(), 0.0);
    tokens = 0;
  }
};

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

}  // namespace nr
