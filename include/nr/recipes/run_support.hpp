// nr/recipes/run_support.hpp — small pieces every run of the recipes shares: messages through a
// callback (the library prints nothing), resuming from a training state, the default warmup.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "nr/backend/cpu/gemm.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/optim/adamw.hpp"

namespace nr::recipes {

// Receives one human-readable line per stage of a run (no trailing newline).
using MessageFn = std::function<void(const std::string&)>;

inline void message(const MessageFn& f, const std::string& line) {
  if (f) f(line);
}

// Resumes from the training state in `dir` when there is one (weights, AdamW moments, step);
// returns the step to start from (0 for a fresh run).
template <class Model>
int64_t resume_if_present(const std::filesystem::path& dir, Model& model, AdamW& opt, const std::string& label,
                          const MessageFn& on_message) {
  if (!has_training_state(dir)) return 0;
  const int64_t step = load_training_state(dir, model, opt);
  message(on_message, fmt::format("[{}] resuming {} at step {}", label, dir.string(), step));
  return step;
}

// The window (tokens per sequence) of training and evaluation when none is given: the model's
// context, at most 1,024 tokens. nr's own models have contexts of 128-512, so this is their
// context; a real model's 8,192 would make each evaluation window cover a whole valid set and
// cost 8x the attention of 1,024 for a few hundredths of a bit.
inline int64_t default_window(const ModelConfig& config) {
  return std::min<int64_t>(config.max_position_embeddings, 1024);
}

// `ctx` when given (checked against the model's context), else default_window. `option` names it
// in the error.
inline int64_t resolve_window(const std::optional<int64_t>& ctx, const ModelConfig& config, const char* option = "--ctx") {
  if (!ctx) return default_window(config);
  if (*ctx < 2 || *ctx > config.max_position_embeddings)
    throw ValueError(fmt::format("{} {}: the window must be between 2 and the model's context, {} tokens", option, *ctx,
                                 config.max_position_embeddings));
  return *ctx;
}

// The precision of a run's products from its option: "fp32", "bf16" (BF16 x BF16 -> FP32 products,
// FP32 master weights, optimizer state and reductions; backend/cpu/gemm.hpp) or "auto" (bf16 on a
// CPU with AVX512_BF16, fp32 elsewhere). "bf16" on a CPU without it runs FP32 products, as
// set_precision documents; the run records which one it used.
inline Precision resolve_precision(const std::string& option) {
  if (option == "fp32") return Precision::fp32;
  if (option == "bf16") return Precision::bf16;
  if (option == "auto") return cpu::onednn_has_bf16() ? Precision::bf16 : Precision::fp32;
  throw ValueError(fmt::format("precision must be fp32, bf16 or auto, got '{}'", option));
}

// The products of a scope in `p` (BF16 runs on oneDNN, the only BF16 backend); restored after.
class PrecisionScope {
 public:
  explicit PrecisionScope(Precision p)
      : scope_(p == Precision::bf16 ? CpuGemmBackend::onednn : cpu_gemm_backend(), p) {}

 private:
  GemmSettingsScope scope_;
};

// Warmup steps when none is given: a tenth of the run, at most 100.
inline int64_t default_warmup(int64_t steps) { return std::min<int64_t>(100, steps / 10); }

}  // namespace nr::recipes
