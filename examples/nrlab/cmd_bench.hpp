// nrlab/cmd_bench.hpp — `nrlab bench`: throughput of full training steps (or evaluation forward
// passes) of a preset model on random tokens, as one JSON line.
//
//   nrlab bench --preset tiny --threads 2 --steps 10 [--method finetune|lora|adapter|gated-sigmoid|neutral]
//               [--eval] [--batch 16] [--warmup 3]
//
// A training step is nr::train_step: forward, local losses, backward, gradient clipping, AdamW.
// Evaluation (--eval) is a forward pass and the cross-entropy under nr::NoGrad. The first
// --warmup steps are not timed (they size every buffer and warm the caches); then --steps steps
// are timed one by one and the median and the best are reported. Tokens are uniform random
// bytes drawn from a fixed seed, so the work per step is the same in every run.
//
// FLOPs per token: nr::count_flops (train/flops.hpp), the usual dense-transformer count
//   forward 2 N + 4 L T C;  training step 4 N + 2 N_trainable + 12 L T C  (6 N + 12 L T C for a
//   full fine-tune), N = weights used in matrix products (not the embedding lookup)
// gflops is that count times tokens per second. tiny: N = 3.28 M, about 22.8 MFLOP per token.
//
// Output keys: preset, method, mode (train|eval), threads, batch, ctx, steps, tokens_per_s (from
// the median step), best_tokens_per_s, step_ms (median), best_step_ms, flop_per_token, gflops,
// peak_rss_mb (getrusage's ru_maxrss of this process), params, trainable_params, loss.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>

#include <nr/train/flops.hpp>

#include "extension.hpp"

namespace nrlab {

struct BenchOptions {
  std::string preset = "tiny";
  int threads = 0;
  int64_t steps = 10, warmup = 3, batch = 16, ctx = 0;
  std::string method = "finetune";
  bool eval = false;
  uint64_t seed = 1;
};

inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

template <class Model>
int run_bench(Model& model, const nr::ModelConfig& config, const ExtensionSpec& spec, const BenchOptions& o) {
  const int64_t T = o.ctx > 0 ? o.ctx : config.max_position_embeddings;
  if (T > config.max_position_embeddings)
    throw nr::ValueError(fmt::format("--ctx {} exceeds the preset's context {}", T, config.max_position_embeddings));
  if (!method_info(spec.method).trains_backbone) nr::freeze_backbone(model);
  const nr::FlopCount flops = nr::count_flops(model, config, T);

  // Random tokens: inputs and targets uniform over the vocabulary. Every tenth sequence is
  // tagged original (tag 1), so that the neutral residues' l1 loss has work to do.
  std::mt19937_64 gen(o.seed);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(config.vocab_size - 1));
  nr::Batch batch;
  batch.inputs.shape = nr::Shape{o.batch, T};
  batch.targets.shape = nr::Shape{o.batch, T};
  for (int64_t i = 0; i < o.batch * T; ++i) {
    batch.inputs.data.push_back(tok(gen));
    batch.targets.data.push_back(tok(gen));
  }
  for (int64_t b = 0; b < o.batch; ++b) batch.tags.push_back(b % 10 == 0 ? 1 : 0);
  const std::vector<uint8_t> original_of_tag = {0, 1};

  nr::AdamW opt(nr::named_parameters(model), nr::AdamWConfig{.lr = 1e-4});
  double loss = 0.0;
  auto one_step = [&](int64_t step) {
    if (o.eval) {
      nr::NoGrad no_grad;
      nr::ForwardContext ctx;
      ctx.domain_tags = batch.tags;
      ctx.original = nr::original_flags(batch.tags, original_of_tag);
      loss = model.loss(batch.inputs, batch.targets, ctx).item();
    } else {
      loss = nr::train_step(model, opt, batch, 1e-4, 1.0, step, original_of_tag).loss;
    }
  };
  for (int64_t s = 0; s < o.warmup; ++s) one_step(s);
  std::vector<double> ms;
  for (int64_t s = 0; s < o.steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    one_step(o.warmup + s);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  const double best = sorted.front();
  const double tokens = static_cast<double>(o.batch * T);
  const double fpt = flops.per_token(!o.eval);
  const nlohmann::json j = {
      {"preset", o.preset},
      {"method", spec.method},
      {"mode", o.eval ? "eval" : "train"},
      {"threads", nr::num_threads()},
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
      {"params", nr::count_parameters(model)},
      {"trainable_params", nr::count_parameters(model, true)},
      {"loss", loss},
  };
  fmt::print("{}\n", j.dump());
  return 0;
}

inline int run_bench_command(BenchOptions o) {
  if (o.steps < 1) throw nr::ValueError(fmt::format("--steps must be at least 1, got {}", o.steps));
  if (o.warmup < 0) throw nr::ValueError(fmt::format("--warmup must be >= 0, got {}", o.warmup));
  if (o.batch < 1) throw nr::ValueError(fmt::format("--batch must be at least 1, got {}", o.batch));
  apply_threads(o.threads);
  const nr::ModelConfig config = nr::preset(o.preset);
  ExtensionSpec spec;
  spec.method = o.method;
  return build_extended(spec, config, o.seed, [&](auto& model) { return run_bench(model, config, spec, o); });
}

inline void register_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* c = app.add_subcommand("bench", "Time training steps (or evaluation passes) of a preset on random tokens; "
                                            "prints one JSON line");
  c->add_option("--preset", o->preset, "Model preset: nano, tiny, small")->capture_default_str();
  c->add_option("--threads", o->threads, "Threads for BLAS and loops (default: NR_NUM_THREADS or all)");
  c->add_option("--steps", o->steps, "Timed steps")->capture_default_str();
  c->add_option("--warmup", o->warmup, "Untimed steps first")->capture_default_str();
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str();
  c->add_option("--ctx", o->ctx, "Tokens per sequence (default: the preset's context)");
  c->add_option("--method", o->method, "finetune, lora, adapter, gated-sigmoid, neutral (20% extra, frozen backbone)")
      ->capture_default_str();
  c->add_flag("--eval", o->eval, "Time evaluation forward passes (no gradients) instead of training steps");
  c->add_option("--seed", o->seed, "Seed of the weights and tokens")->capture_default_str();
  c->callback([o] { run_bench_command(*o); });
}

}  // namespace nrlab
