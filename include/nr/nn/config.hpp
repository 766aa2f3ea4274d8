// nr/nn/config.hpp — the model configuration, with Hugging Face Llama field names.
//
// Field names match a Llama `config.json` so that a checkpoint's config reads and writes
// one-to-one. Presets name the sizes the examples and benchmarks use (vocabulary 256: bytes).
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t hidden_size = 128;             // C
  int64_t intermediate_size = 352;       // F, the FFN hidden width
  int64_t num_hidden_layers = 4;         // L
  int64_t num_attention_heads = 4;       // H
  int64_t num_key_value_heads = 4;       // H_kv (grouped-query attention when < H)
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  int64_t max_position_embeddings = 128; // the context length T the model is trained with
  bool tie_word_embeddings = false;      // lm_head shares the embedding matrix
  std::string hidden_act = "silu";       // "silu" (Llama) or "gelu_pytorch_tanh" (Gemma)

  int64_t head_dim() const { return hidden_size / num_attention_heads; }

  // Throws ValueError naming the first inconsistent field.
  void validate() const {
    auto positive = [](int64_t v, const char* name) {
      if (v <= 0) throw ValueError(fmt::format("model config: {} must be positive, got {}", name, v));
    };
    positive(vocab_size, "vocab_size");
    positive(hidden_size, "hidden_size");
    positive(intermediate_size, "intermediate_size");
    positive(num_hidden_layers, "num_hidden_layers");
    positive(num_attention_heads, "num_attention_heads");
    positive(num_key_value_heads, "num_key_value_heads");
    positive(max_position_embeddings, "max_position_embeddings");
    if (hidden_size % num_attention_heads != 0)
      throw ValueError(fmt::format("model config: hidden_size {} is not a multiple of num_attention_heads {}",
                                   hidden_size, num_attention_heads));
    if (num_attention_heads % num_key_value_heads != 0)
      throw ValueError(fmt::format("model config: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                                   num_attention_heads, num_key_value_heads));
    if (head_dim() % 2 != 0)
      throw ValueError(fmt::format("model config: head_dim {} must be even for rotary embeddings", head_dim()));
    if (!(rms_norm_eps > 0.0)) throw ValueError("model config: rms_norm_eps must be positive");
    if (!(rope_theta > 0.0)) throw ValueError("model config: rope_theta must be positive");
    if (hidden_act != "silu" && hidden_act != "gelu_pytorch_tanh")
      throw ValueError(fmt::format("model config: unknown hidden_act '{}' (silu, gelu_pytorch_tanh)", hidden_act));
  }
};

// Named sizes: nano (d 128, L 4, H 4, ffn 352, ctx 128), tiny (d 256, L 4, H 4, ffn 704,
// ctx 256), small (d 512, L 8, H 8, ffn 1408, ctx 512).
inline ModelConfig preset(const std::string& name) {
  ModelConfig c;
  if (name == "nano") {
    c.hidden_size = 128; c.num_hidden_layers = 4; c.num_attention_heads = 4; c.num_key_value_heads = 4;
    c.intermediate_size = 352; c.max_position_embeddings = 128;
  } else if (name == "tiny") {
    c.hidden_size = 256; c.num_hidden_layers = 4; c.num_attention_heads = 4; c.num_key_value_heads = 4;
    c.intermediate_size = 704; c.max_position_embeddings = 256;
  } else if (name == "small") {
    c.hidden_size = 512; c.num_hidden_layers = 8; c.num_attention_heads = 8; c.num_key_value_heads = 8;
    c.intermediate_size = 1408; c.max_position_embeddings = 512;
  } else {
    throw ValueError(fmt::format("unknown preset '{}' (nano, tiny, small)", name));
  }
  return c;
}

}  // namespace nr
