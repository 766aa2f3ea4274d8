// nr/io/pretrained.hpp — a pretrained model as read from any file format, before it becomes a
// module: its configuration and its weights under Hugging Face Llama names, in FP32.
//
// The GGUF reader (io/gguf_llama.hpp) and the Hugging Face directory reader
// (io/hf_directory.hpp) both produce this; `assign_parameters` (io/checkpoint.hpp) then copies
// the tensors into a model built from `config`. With tied embeddings there is no
// "lm_head.weight": the output head reads "model.embed_tokens.weight".
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "nr/core/tensor.hpp"
#include "nr/nn/config.hpp"

namespace nr {

struct PretrainedModel {
  ModelConfig config;
  std::map<std::string, Tensor> tensors;  // "model.layers.3.mlp.down_proj.weight" -> (out, in), F32
  std::string source;                     // the file or directory it came from, for messages
};

}  // namespace nr
