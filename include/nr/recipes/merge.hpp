// nr/recipes/merge.hpp — fold a LoRA into its backbone, W += (alpha / r) B A, write a plain Llama
// checkpoint (Hugging Face names, no lora_* tensor), and check it.
//
// The check reloads the written checkpoint as an nr::Llama and compares its logits with the
// unmerged model's on two windows of random tokens (a fixed seed); the largest absolute
// difference is returned, and NumericError is thrown when it exceeds `tolerance` times the
// largest |logit| (at least 1): float32 rounding of the folded product grows with the logits'
// scale and the depth (1e-7 relative for nr's small models, 4e-6 for SmolLM2's 30 layers), while
// a wrong fold (scale, transpose, target) is off by whole units.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "nr/recipes/load.hpp"

namespace nr::recipes {

struct MergeOutcome {
  double max_logit_diff = 0.0;  // merged vs unmerged, on `tokens` random tokens
  int64_t tokens = 0;
  int64_t rank = 0;
  double scaling = 0.0;  // alpha / r
  double max_abs_logit = 0.0;  // of the unmerged model, the scale `tolerance` is relative to
  size_t targets = 0;    // projections per layer that carried a LoRA
};

// Uniform random token windows (B, T) from a fixed seed, for comparing two models.
inline Indices random_token_windows(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  Indices ids;
  ids.shape = Shape{B, T};
  ids.data.resize(static_cast<size_t>(B * T));
  for (int32_t& v : ids.data) v = static_cast<int32_t>(rng.randint(vocab));
  return ids;
}

inline double max_abs_difference(const Tensor& a, const Tensor& b) {
  double m = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return m;
}

// Merges the LoRA model at `checkpoint` (or the backbone `checkpoint` + LoRA `adapter`) into `out`.
inline MergeOutcome merge_lora_checkpoint(const std::filesystem::path& checkpoint, const std::string& adapter,
                                          const std::filesystem::path& out, double tolerance = 1e-5) {
  namespace fs = std::filesystem;
  if (fs::weakly_canonical(out) == fs::weakly_canonical(checkpoint) ||
      (!adapter.empty() && fs::weakly_canonical(out) == fs::weakly_canonical(adapter)))
    throw ValueError(fmt::format("--out {} would overwrite the input; choose another directory", out.string()));
  return with_loaded_model(checkpoint, adapter, [&](auto& model, const LoadedInfo& info) -> MergeOutcome {
    using Model = std::decay_t<decltype(model)>;
    if constexpr (!std::is_same_v<Model, LoraLlama> && !std::is_same_v<Model, MiguLoraLlama>) {
      throw ValueError(fmt::format("{} is not a LoRA model (method '{}'); only LoRA merges into the backbone",
                                   adapter.empty() ? checkpoint.string() : adapter,
                                   info.nr_fields.value("method", info.nr_fields.value("peft_type", "backbone"))));
    } else {
      const ModelConfig& config = info.config;
      const Indices ids = random_token_windows(2, std::min<int64_t>(config.max_position_embeddings, 256),
                                               config.vocab_size, 12345);
      Tensor before;
      {
        NoGrad no_grad;
        before = model(ids).value().clone();
      }
      merge_lora(model);
      nlohmann::json fields = {{"method", "lora-merged"},
                               {"merged_from", adapter.empty() ? checkpoint.string() : adapter},
                               {"lora", spec_to_json(*info.spec)}};
      for (const char* key : {"backbone", "corpus", "new", "mix", "p", "original_domain", "tokenizer"})
        if (info.nr_fields.contains(key)) fields[key] = info.nr_fields[key];
      // The merged model keeps its backbone's tokenizer (a GGUF / Hugging Face backbone's BPE).
      if (const std::string tok = tokenizer_source(checkpoint); !tok.empty()) fields["tokenizer"] = tok;
      save_model(out, model, config, fields);

      Llama merged(config, 0);
      load_model_weights(out, merged);  // strict: plain Llama names only
      MergeOutcome r;
      {
        NoGrad no_grad;
        r.max_logit_diff = max_abs_difference(before, merged(ids).value());
      }
      r.tokens = static_cast<int64_t>(ids.data.size());
      r.rank = *info.spec->rank;
      r.scaling = *info.spec->lora_alpha / static_cast<double>(*info.spec->rank);
      r.targets = info.spec->lora_targets->size();
      for (int64_t i = 0; i < before.numel(); ++i)
        r.max_abs_logit = std::max(r.max_abs_logit, static_cast<double>(std::abs(before.data()[i])));
      const double allowed = tolerance * std::max(1.0, r.max_abs_logit);
      if (!(r.max_logit_diff <= allowed))
        throw NumericError(fmt::format("merged logits differ from the unmerged ones by {:.3g} > tolerance {:.3g} x "
                                       "largest |logit| {:.3g}", r.max_logit_diff, tolerance, r.max_abs_logit));
      return r;
    }
  });
}

}  // namespace nr::recipes
