// nr/recipes/bench.hpp — throughput of training steps (or evaluation forward passes) of a model on
// random tokens: a preset, or a pretrained model (GGUF, Hugging Face directory, nr backbone), with
// or without an extension method, in FP32 or BF16.
//
// A training step is nr::train_step: forward, local losses, backward, gradient clipping, AdamW.
// Evaluation is a forward pass and the cross-entropy under NoGrad. The first `warmup` steps are not
// timed (they size every buffer and warm the caches); then `steps` steps are timed one by one and
// the median and the best are reported. Tokens are uniform random ids from a fixed seed, so the
// work per step is the same in every run; every tenth sequence is tagged original so that the
// neutral residues' l1 loss has work to do.
//
// FLOPs per token: count_flops (train/flops.hpp), the usual dense-transformer count
//   forward 2 N + 4 L T C;  training step 4 N + 2 N_trainable + 12 L T C  (6 N + 12 L T C for a
//   full fine-tune), N = weights used in matrix products (not the embedding lookup).
//
// Precision bf16 (where the CPU has AVX512_BF16; FP32 elsewhere): GEMMs through oneDNN in BF16 with
// FP32 accumulation, every frozen 2-D weight but the embedding stored once in BF16; trainable
// weights, optimizer state and reductions stay FP32 (backend/cpu/gemm.hpp, ops/matmul.hpp).
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/recipes/load.hpp"
#include "nr/train/flops.hpp"
#include "nr/train/step.hpp"

namespace nr::recipes {

struct BenchOptions {
  std::string preset = "tiny";  // used when `checkpoint` is empty
  std::string checkpoint;       // a GGUF file, a Hugging Face directory or an nr backbone
  std::string method = "finetune";
  std::optional<int64_t> rank;  // LoRA rank (default: the 20 % budget)
  int64_t steps = 10, warmup = 3, batch = 16, ctx = 0;  // ctx 0: the model's context, at most 512
  bool eval = false;
  bool recompute = false;  // activations recomputed in the backward (nn/recompute.hpp)
  std::string precision = "fp32";  // fp32 | bf16
  uint64_t seed = 1;
};

inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

template <class Model>
nlohmann::json bench_model(Model& model, const ModelConfig& config, const ExtensionSpec& spec, const BenchOptions& o) {
  const int64_t T = o.ctx > 0 ? o.ctx : std::min<int64_t>(config.max_position_embeddings, 512);
  if (T > config.max_position_embeddings)
    throw ValueError(fmt::format("ctx {} exceeds the model's context {}", T, config.max_position_embeddings));
  if (!method_info(spec.method).trains_backbone) freeze_backbone(model);
  if (o.eval) model.visit_parameters([](const std::string&, Var& p) { p.set_requires_grad(false); }, "");
  int64_t bf16_weights = 0;
  if (bf16_gemm_active())
    model.visit_parameters([&](const std::string& name, Var& p) {
      if (name.find("embed_tokens") == std::string::npos && store_frozen_as_bf16(p)) ++bf16_weights;
    }, "");
  const FlopCount flops = count_flops(model, config, T);

  std::mt19937_64 gen(o.seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config.vocab_size - 1));
  Batch batch;
  batch.inputs.shape = Shape{o.batch, T};
  batch.targets.shape = Shape{o.batch, T};
  for (int64_t i = 0; i < o.batch * T; ++i) {
    batch.inputs.data.push_back(tok(gen));
    batch.targets.data.push_back(tok(gen));
  }
  for (int64_t b = 0; b < o.batch; ++b) batch.tags.push_back(b % 10 == 0 ? 1 : 0);
  const std::vector<uint8_t> original_of_tag = {0, 1};

  AdamW opt(named_parameters(model), AdamWConfig{.lr = 1e-4});
  double loss = 0.0;
  auto one_step = [&](int64_t step) {
    if (o.eval) {
      NoGrad no_grad;
      ForwardContext ctx;
      ctx.domain_tags = batch.tags;
      ctx.original = original_flags(batch.tags, original_of_tag);
      loss = model.loss(batch.inputs, batch.targets, ctx).item();
    } else {
      loss = train_step(model, opt, batch, 1e-4, 1.0, step, original_of_tag, o.recompute).loss;
    }
  };
  for (int64_t s = 0; s < o.warmup; ++s) one_step(s);
  std::vector<double> ms;
  for (int64_t s = 0; s < o.steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    one_step(o.warmup + s);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  const double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  const double best = ms.front();
  const double tokens = static_cast<double>(o.batch * T);
  const double fpt = flops.per_token(!o.eval);
  return {
      {"model", o.checkpoint.empty() ? o.preset : o.checkpoint},
      {"method", spec.method},
      {"mode", o.eval ? "eval" : "train"},
      {"recompute", o.recompute && !o.eval},
      {"precision", bf16_gemm_active() ? "bf16" : "fp32"},
      {"bf16_weights", bf16_weights},
      {"threads", num_threads()},
      {"batch", o.batch},
      {"ctx", T},
      {"steps", o.steps},
      {"tokens_per_s", tokens / (median / 1000.0)},
      {"best_tokens_per_s", tokens / (best / 1000.0)},
      {"step_ms", median},
      {"best_step_ms", best},
      {"flop_per_token", fpt},
      {"gflops", fpt * tokens / (median / 1000.0) / 1e9},
      {"peak_rss_mb", peak_rss_mb()},
      {"params", count_parameters(model)},
      {"trainable_params", count_parameters(model, true)},
      {"loss", loss},
  };
}

// Builds the model (preset or checkpoint, extended by `method`) and times it; one JSON object.
inline nlohmann::json run_bench(const BenchOptions& o) {
  if (o.steps < 1) throw ValueError(fmt::format("bench: steps must be at least 1, got {}", o.steps));
  if (o.warmup < 0) throw ValueError(fmt::format("bench: warmup must be at least 0, got {}", o.warmup));
  if (o.batch < 1) throw ValueError(fmt::format("bench: batch must be at least 1, got {}", o.batch));
  if (o.precision != "fp32" && o.precision != "bf16")
    throw ValueError(fmt::format("bench: precision must be fp32 or bf16, got '{}'", o.precision));
  if (o.precision == "bf16") {
    set_cpu_gemm_backend(CpuGemmBackend::onednn);
    set_precision(Precision::bf16);
  }
  ExtensionSpec spec;
  spec.method = o.method;
  if (o.rank) spec.rank = o.rank;
  if (o.checkpoint.empty()) {
    const ModelConfig config = preset(o.preset);
    return build_extended(spec, config, o.seed, [&](auto& model) { return bench_model(model, config, spec, o); });
  }
  PretrainedModel pretrained = load_pretrained(o.checkpoint);
  return build_extended(spec, pretrained.config, o.seed, [&](auto& model) {
    load_backbone_tensors(pretrained.tensors, pretrained.source, model);
    // The file's copy of the weights is not needed any more: hand its memory back to the system
    // (not only to the storage cache, whose free blocks would otherwise sit beside the step's).
    pretrained.tensors.clear();
    trim_storage_cache();
    return bench_model(model, pretrained.config, spec, o);
  });
}

}  // namespace nr::recipes
