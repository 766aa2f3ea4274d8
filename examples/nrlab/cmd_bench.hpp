// nrlab/cmd_bench.hpp — `nrlab bench`: throughput of training steps (or evaluation forward passes)
// on random tokens, as one JSON line (nr::recipes::run_bench, recipes/bench.hpp).
//
//   nrlab bench --preset tiny --threads 2 --steps 10 [--method finetune|lora|adapter|gated-sigmoid|neutral|...]
//               [--eval] [--batch 16] [--warmup 3] [--precision fp32|bf16] [--recompute]
//   nrlab bench --checkpoint SmolLM2.gguf --method lora --rank 16 --batch 4 --ctx 512 --threads 2
//
// Output keys: model, method, mode (train|eval), recompute, precision, bf16_weights, threads, batch, ctx,
// steps, tokens_per_s (from the median step), best_tokens_per_s, step_ms (median), best_step_ms,
// flop_per_token, gflops, peak_rss_mb (getrusage's ru_maxrss of this process), params,
// trainable_params, loss.
#pragma once

#include <nr/recipes/bench.hpp>

#include "common.hpp"

namespace nrlab {

inline void register_bench_command(CLI::App& app) {
  auto o = std::make_shared<nr::recipes::BenchOptions>();
  auto threads = std::make_shared<int>(0);
  auto rank = std::make_shared<int64_t>(0);
  CLI::App* c = app.add_subcommand("bench", "Time training steps (or evaluation passes) of a model on random tokens; "
                                            "prints one JSON line");
  auto* preset = c->add_option("--preset", o->preset, "Model preset: nano, tiny, small")->capture_default_str();
  c->add_option("--checkpoint", o->checkpoint, "A pretrained model instead: GGUF file, Hugging Face directory or nr "
                                               "backbone")
      ->excludes(preset);
  c->add_option("--threads", *threads, "Threads (default: NR_NUM_THREADS or all)");
  c->add_option("--steps", o->steps, "Timed steps")->capture_default_str()->check(at_least(1));
  c->add_option("--warmup", o->warmup, "Untimed steps first")->capture_default_str()->check(non_negative());
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str()->check(at_least(1));
  c->add_option("--ctx", o->ctx, "Tokens per sequence (default: the model's context, at most 512)")
      ->check(non_negative());
  c->add_option("--method", o->method, "Method (nrlab extend --help lists them); extensions at the 20% budget, "
                                       "frozen backbone")
      ->capture_default_str();
  auto* rank_opt = c->add_option("--rank", *rank, "LoRA rank (default: the 20% budget)")->check(at_least(1));
  c->add_option("--precision", o->precision, "fp32, or bf16 (BF16 products with FP32 accumulation and master weights, "
                                             "where the CPU has AVX512_BF16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  c->add_flag("--recompute", o->recompute, "Recompute each block's activations in the backward pass (activation "
                                            "checkpointing)");
  c->add_flag("--eval", o->eval, "Time evaluation forward passes (no gradients) instead of training steps");
  c->add_option("--seed", o->seed, "Seed of the weights and tokens")->capture_default_str();
  c->callback([o, threads, rank, rank_opt] {
    apply_threads(*threads);
    if (rank_opt->count() > 0) o->rank = *rank;
    fmt::print("{}\n", nr::recipes::run_bench(*o).dump());
  });
}

}  // namespace nrlab
