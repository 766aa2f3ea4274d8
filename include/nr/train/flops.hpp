// nr/train/flops.hpp — floating-point operations per token of a training step or an evaluation
// forward pass, from the model's parameters and the context length.
//
// The usual dense-transformer count (Kaplan et al. 2020; PaLM's model FLOPs utilisation):
//   N      weights used in matrix products: every 2-D parameter except the embedding table (a
//          lookup, not a product); the output head's C V, counted once more when it reads the
//          tied embedding matrix; an extension's matrices (adapters, LoRA) are included
//   attn   4 L T C per token in the forward: Q K^T and P V over all T keys, the causal mask not
//          discounted (PyTorch's dense kernel computes them too; nr's fused kernel skips the
//          blocks above the diagonal, so it does a little less work than counted)
//   forward          2 N + attn
//   training step    forward + backward = 2 N + 2 N + 2 N_trainable + 3 attn
//                    (input gradients through every product, weight gradients only for trainable
//                    weights); a full fine-tune gives the familiar 6 N + 12 L T C
// Element-wise work (norms, activations, softmax, the optimizer) is not counted. With the tiny
// preset (C 256, L 4, F 704, V 256, T 256): N = 3.28 M, 22.8 MFLOP per token for training.
#pragma once

#include <cstdint>
#include <string>

#include "nr/nn/config.hpp"
#include "nr/nn/module.hpp"

namespace nr {

struct FlopCount {
  double matmul_params = 0.0;     // N
  double trainable_matmul = 0.0;  // N_trainable
  double attention = 0.0;         // 4 L T C (forward, per token)

  double forward_per_token() const { return 2.0 * matmul_params + attention; }
  double train_per_token() const { return 4.0 * matmul_params + 2.0 * trainable_matmul + 3.0 * attention; }
  double per_token(bool train) const { return train ? train_per_token() : forward_per_token(); }
};

// Counts for `model` (a LanguageModel: reads embed_tokens) at context length T; which weights
// are trainable is read from requires_grad, so freeze before counting.
template <class Model>
FlopCount count_flops(Model& model, const ModelConfig& c, int64_t T) {
  FlopCount f;
  model.visit_parameters([&](const std::string& name, Var& v) {
    if (v.shape().rank() != 2 || name == "model.embed_tokens.weight") return;
    f.matmul_params += static_cast<double>(v.numel());
    if (v.requires_grad()) f.trainable_matmul += static_cast<double>(v.numel());
  }, "");
  if (c.tie_word_embeddings) {  // the head reads the embedding matrix
    const double cv = static_cast<double>(c.hidden_size) * static_cast<double>(c.vocab_size);
    f.matmul_params += cv;
    if (model.embed_tokens.weight.requires_grad()) f.trainable_matmul += cv;
  }
  f.attention = 4.0 * static_cast<double>(c.num_hidden_layers) * static_cast<double>(T) *
                static_cast<double>(c.num_attention_heads * c.head_dim());
  return f;
}

}  // namespace nr
