// nr/io/gguf_llama.hpp — a Llama model from a GGUF file (llama.cpp's convert_hf_to_gguf layout)
// as nr's ModelConfig and FP32 tensors under Hugging Face names.
//
// Metadata (general.architecture must be "llama"):
//   llama.block_count                       -> num_hidden_layers          L
//   llama.embedding_length                  -> hidden_size                C
//   llama.feed_forward_length               -> intermediate_size          F
//   llama.attention.head_count              -> num_attention_heads        H
//   llama.attention.head_count_kv           -> num_key_value_heads        H_kv (default H)
//   llama.attention.layer_norm_rms_epsilon  -> rms_norm_eps
//   llama.rope.freq_base                    -> rope_theta                 (default 10000)
//   llama.context_length                    -> max_position_embeddings
//   llama.vocab_size, else the length of tokenizer.ggml.tokens -> vocab_size V
// Float metadata stored as f32 is read as the shortest decimal that round-trips the f32
// (1e-5 stored as f32 reads 1e-5, as in the model's config.json, not 9.99999974738e-06).
// llama.rope.dimension_count, when present, must be the head dimension C / H (nr rotates whole
// heads), and a rope scaling type other than "none" is refused (nr has no rope scaling).
//
// Tensors (GGUF name -> Hugging Face name, nr shape = GGUF ne reversed):
//   token_embd.weight          model.embed_tokens.weight                 (V, C)
//   blk.N.attn_norm.weight     model.layers.N.input_layernorm.weight     (C)
//   blk.N.attn_q.weight        model.layers.N.self_attn.q_proj.weight    (H hd, C)    rows permuted, see below
//   blk.N.attn_k.weight        model.layers.N.self_attn.k_proj.weight    (H_kv hd, C) rows permuted
//   blk.N.attn_v.weight        model.layers.N.self_attn.v_proj.weight    (H_kv hd, C)
//   blk.N.attn_output.weight   model.layers.N.self_attn.o_proj.weight    (C, H hd)
//   blk.N.ffn_norm.weight      model.layers.N.post_attention_layernorm.weight (C)
//   blk.N.ffn_gate.weight      model.layers.N.mlp.gate_proj.weight       (F, C)
//   blk.N.ffn_up.weight        model.layers.N.mlp.up_proj.weight         (F, C)
//   blk.N.ffn_down.weight      model.layers.N.mlp.down_proj.weight       (C, F)
//   output_norm.weight         model.norm.weight                         (C)
//   output.weight              lm_head.weight                            (V, C); absent: tie_word_embeddings
// Any other tensor is refused (nr would silently ignore what it stands for).
//
// The rotary permutation. Hugging Face's Llama (and nr, ops/rope.hpp) rotates the two halves of
// each head: dimension i pairs with i + hd/2. llama.cpp rotates adjacent pairs (2i, 2i + 1), so
// its converter reorders the rows of q_proj (per head of H) and k_proj (per head of H_kv):
//   gguf = hf.reshape(heads, 2, hd/2, C).swapaxes(1, 2).reshape(heads * hd, C)
// i.e. GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i (i < hd/2, j in {0, 1}). The loader
// undoes it: HF row h*hd + j*hd/2 + i = GGUF row h*hd + 2i + j.
//
// Errors: nr::IoError naming the file and the key or tensor (missing, wrong type, wrong shape
// for the config, unknown name, an architecture other than llama, a config that fails
// ModelConfig::validate()).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"
#include "nr/core/tensor.hpp"
#include "nr/io/gguf.hpp"
#include "nr/io/pretrained.hpp"
#include "nr/nn/config.hpp"

namespace nr {

namespace detail {

inline int64_t gguf_config_int(const GgufFile& f, const char* key, int64_t fallback = -1) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback >= 0) return fallback;
    throw IoError(fmt::format("GGUF file '{}': the Llama metadata key '{}' is missing", f.source(), key));
  }
  const uint64_t u = [&] {
    try {
      return v->as_u64();
    } catch (const IoError& e) {
      throw IoError(fmt::format("GGUF file '{}': {}", f.source(), e.what()));
    }
  }();
  if (u == 0 || u > (uint64_t{1} << 40))
    throw IoError(fmt::format("GGUF file '{}': key '{}' = {} is not a plausible size (1 to 2^40)", f.source(), key, u));
  return static_cast<int64_t>(u);
}

// A float metadata value; f32 values as the shortest decimal that round-trips the float.
inline double gguf_config_float(const GgufFile& f, const char* key, double fallback) {
  const GgufValue* v = f.find(key);
  if (!v) return fallback;
  if (v->type() == GgufType::f32) {
    const std::string text = fmt::format("{}", static_cast<float>(v->as_f64()));
    return std::strtod(text.c_str(), nullptr);
  }
  try {
    return v->as_f64();
  } catch (const IoError& e) {
    throw IoError(fmt::format("GGUF file '{}': {}", f.source(), e.what()));
  }
}

struct GgufLlamaTensor {
  const char* gguf;  // blk.N.<gguf>.weight
  const char* hf;    // model.layers.N.<hf>.weight
};
inline constexpr GgufLlamaTensor gguf_llama_layer_tensors[] = {
    {"attn_norm", "input_layernorm"}, {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},    {"ffn_up", "mlp.up_proj"},         {"ffn_down", "mlp.down_proj"},
};

}  // namespace detail

// Undoes llama.cpp's rotary row permutation of a contiguous (heads * hd, C) q or k projection
// in place (see above), one head at a time through a buffer of hd rows.
inline void gguf_unpermute_rotary_rows_inplace(Tensor& w, int64_t heads) {
  if (w.rank() != 2 || !w.is_contiguous() || heads <= 0 || w.shape()[0] % heads != 0 || (w.shape()[0] / heads) % 2 != 0)
    throw ShapeError(fmt::format("gguf_unpermute_rotary_rows: shape {} is not a contiguous (heads * even head_dim, C) "
                                 "for {} heads",
                                 w.shape().str(), heads));
  const int64_t hd = w.shape()[0] / heads, half = hd / 2, cols = w.shape()[1];
  const auto row_bytes = static_cast<size_t>(cols) * sizeof(float);
  std::vector<float> head(static_cast<size_t>(hd * cols));  // (hd, C): one head in GGUF order
  for (int64_t h = 0; h < heads; ++h) {
    float* rows = w.data() + h * hd * cols;
    std::memcpy(head.data(), rows, static_cast<size_t>(hd) * row_bytes);
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i)  // HF row j*hd/2 + i <- GGUF row 2i + j
        std::memcpy(rows + (j * half + i) * cols, head.data() + (2 * i + j) * cols, row_bytes);
  }
}

// The same on a copy: returns the (heads * hd, C) projection in Hugging Face row order.
inline Tensor gguf_unpermute_rotary_rows(const Tensor& w, int64_t heads) {
  Tensor out = Tensor::empty(w.shape());
  const Tensor src = w.contiguous();
  std::memcpy(out.data(), src.data(), static_cast<size_t>(src.numel()) * sizeof(float));
  gguf_unpermute_rotary_rows_inplace(out, heads);
  return out;
}

inline ModelConfig llama_config_from_gguf(const GgufFile& f) {
  const GgufValue* arch = f.find("general.architecture");
  if (!arch) throw IoError(fmt::format("GGUF file '{}': no general.architecture key (not a model file?)", f.source()));
  if (arch->type() != GgufType::string || arch->as_string() != "llama")
    throw IoError(fmt::format("GGUF file '{}': general.architecture is {}, not \"llama\" (nr loads Llama models)",
                              f.source(), arch->str()));
  ModelConfig c;
  c.num_hidden_layers = detail::gguf_config_int(f, "llama.block_count");
  c.hidden_size = detail::gguf_config_int(f, "llama.embedding_length");
  c.intermediate_size = detail::gguf_config_int(f, "llama.feed_forward_length");
  c.num_attention_heads = detail::gguf_config_int(f, "llama.attention.head_count");
  c.num_key_value_heads = detail::gguf_config_int(f, "llama.attention.head_count_kv", c.num_attention_heads);
  c.max_position_embeddings = detail::gguf_config_int(f, "llama.context_length");
  if (!f.find("llama.attention.layer_norm_rms_epsilon"))
    throw IoError(fmt::format("GGUF file '{}': the Llama metadata key 'llama.attention.layer_norm_rms_epsilon' is missing",
                              f.source()));
  c.rms_norm_eps = detail::gguf_config_float(f, "llama.attention.layer_norm_rms_epsilon", 0.0);
  c.rope_theta = detail::gguf_config_float(f, "llama.rope.freq_base", 10000.0);
  if (f.find("llama.vocab_size")) {
    c.vocab_size = detail::gguf_config_int(f, "llama.vocab_size");
  } else if (const GgufValue* tokens = f.find("tokenizer.ggml.tokens"); tokens && tokens->is_array()) {
    c.vocab_size = static_cast<int64_t>(tokens->size());
  } else {
    throw IoError(fmt::format("GGUF file '{}': no llama.vocab_size and no tokenizer.ggml.tokens to size the vocabulary",
                              f.source()));
  }
  c.tie_word_embeddings = f.find_tensor("output.weight") == nullptr;
  c.hidden_act = "silu";
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw IoError(fmt::format("GGUF file '{}': the Llama metadata does not make a valid config: {}", f.source(), e.what()));
  }
  if (f.find("llama.rope.dimension_count")) {
    const int64_t rot = detail::gguf_config_int(f, "llama.rope.dimension_count");
    if (rot != c.head_dim())
      throw IoError(fmt::format("GGUF file '{}': llama.rope.dimension_count {} differs from the head dimension {} (nr "
                                "rotates whole heads)",
                                f.source(), rot, c.head_dim()));
  }
  if (const GgufValue* s = f.find("llama.rope.scaling.type");
      s && !(s->type() == GgufType::string && s->as_string() == "none"))
    throw IoError(fmt::format("GGUF file '{}': llama.rope.scaling.type is {}; nr has no rope scaling", f.source(), s->str()));
  return c;
}

// A parsed Llama GGUF file's config and every weight as F32 under Hugging Face names.
inline PretrainedModel load_llama_gguf(const GgufFile& f) {
  PretrainedModel m;
  m.source = f.source();
  m.config = llama_config_from_gguf(f);
  const ModelConfig& c = m.config;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, hd = c.head_dim();
  const int64_t H = c.num_attention_heads, Hkv = c.num_key_value_heads;

  // Every tensor the config calls for, checked (names, shapes, nothing extra) before any is read.
  struct Wanted {
    std::string gguf, hf;
    Shape shape;
    int64_t rotary_heads;  // > 0: undo the rotary row permutation for that many heads
  };
  // Each is looked up as it is listed, so a forged block_count fails at the first missing layer
  // instead of listing billions of names.
  std::vector<Wanted> wanted;
  std::map<std::string_view, const GgufTensorInfo*> infos;
  auto want = [&](Wanted w) {
    const GgufTensorInfo* info = f.find_tensor(w.gguf);
    if (!info)
      throw IoError(fmt::format("GGUF file '{}': tensor '{}' ({}) is missing", f.source(), w.gguf, w.hf));
    if (info->shape() != w.shape)
      throw IoError(fmt::format("GGUF file '{}': tensor '{}' has shape {} but the config needs {} for {}", f.source(),
                                w.gguf, info->shape().str(), w.shape.str(), w.hf));
    infos[info->name] = info;
    wanted.push_back(std::move(w));
  };
  want({"token_embd.weight", "model.embed_tokens.weight", Shape{V, C}, 0});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (const auto& [g, h] : detail::gguf_llama_layer_tensors) {
      const std::string_view gv = g;
      Wanted w{fmt::format("blk.{}.{}.weight", l, g), fmt::format("model.layers.{}.{}.weight", l, h), Shape{C, F}, 0};
      if (gv == "attn_norm" || gv == "ffn_norm") {
        w.shape = Shape{C};
      } else if (gv == "attn_q") {
        w.shape = Shape{H * hd, C};
        w.rotary_heads = H;
      } else if (gv == "attn_k") {
        w.shape = Shape{Hkv * hd, C};
        w.rotary_heads = Hkv;
      } else if (gv == "attn_v") {
        w.shape = Shape{Hkv * hd, C};
      } else if (gv == "attn_output") {
        w.shape = Shape{C, H * hd};
      } else if (gv == "ffn_gate" || gv == "ffn_up") {
        w.shape = Shape{F, C};
      }  // ffn_down: (C, F)
      want(std::move(w));
    }
  }
  want({"output_norm.weight", "model.norm.weight", Shape{C}, 0});
  if (!c.tie_word_embeddings) want({"output.weight", "lm_head.weight", Shape{V, C}, 0});

  for (const GgufTensorInfo& t : f.tensors())
    if (!infos.count(t.name))
      throw IoError(fmt::format("GGUF file '{}': tensor '{}' is not part of a {}-layer Llama model as nr reads it",
                                f.source(), t.name, c.num_hidden_layers));

  std::vector<const GgufTensorInfo*> order;
  for (const Wanted& w : wanted) order.push_back(infos[w.gguf]);
  std::vector<Tensor> values = f.dequantize_all(order);
  for (size_t i = 0; i < wanted.size(); ++i) {
    Tensor t = std::move(values[i]);
    if (wanted[i].rotary_heads > 0) gguf_unpermute_rotary_rows_inplace(t, wanted[i].rotary_heads);
    m.tensors.emplace(wanted[i].hf, std::move(t));
  }
  return m;
}

// Reads a Llama GGUF file (memory-mapped while it is converted).
inline PretrainedModel load_llama_gguf(const std::filesystem::path& path) { return load_llama_gguf(GgufFile::open(path)); }

}  // namespace nr
