// nrlab/cmd_merge.hpp — `nrlab merge`: fold a LoRA into its backbone, W += (alpha / r) B A, and
// write a plain Llama checkpoint (Hugging Face names, no lora_* tensor) that any Llama reader
// loads.
//
//   nrlab merge --checkpoint LORA_OUT --out MERGED
//   nrlab merge --checkpoint BACKBONE --adapter LORA_OUT --out MERGED
// As a check, the command reloads MERGED as an nr::Llama and compares its logits with the
// unmerged model's on a batch of random tokens; it prints the largest difference and fails when
// it exceeds --tolerance times the largest |logit| (float32 rounding of the folded product;
// nr::recipes::merge_lora_checkpoint).
#pragma once

#include <nr/recipes/merge.hpp>

#include "extension.hpp"

namespace nrlab {

struct MergeOptions {
  std::string checkpoint, adapter, out;
  double tolerance = 1e-5;
  int threads = 0;
};

inline void register_merge_command(CLI::App& app) {
  auto o = std::make_shared<MergeOptions>();
  CLI::App* c = app.add_subcommand("merge", "Merge a LoRA into its backbone and write a plain Llama checkpoint");
  c->add_option("--checkpoint", o->checkpoint, "LoRA run directory (nrlab extend --method lora), or the backbone "
                                               "with --adapter")
      ->required();
  c->add_option("--adapter", o->adapter, "LoRA adapter directory (adapter_config.json + adapter_model.safetensors)");
  c->add_option("--out", o->out, "Directory for the merged checkpoint")->required();
  c->add_option("--tolerance", o->tolerance, "Largest logit difference accepted between merged and unmerged, relative to the "
                                               "largest |logit| (at least 1)")
      ->capture_default_str();
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([o]() {
    apply_threads(o->threads);
    const nr::recipes::MergeOutcome r =
        nr::recipes::merge_lora_checkpoint(o->checkpoint, o->adapter, o->out, o->tolerance);
    fmt::print(stderr, "[merge] rank {} (scaling {}) merged into {} projections per layer; wrote {}\n", r.rank,
               r.scaling, r.targets, o->out);
    fmt::print(stderr, "[merge] max |logit difference| merged vs unmerged on {} random tokens: {:.3g} (largest |logit| "
               "{:.3g})\n", r.tokens, r.max_logit_diff, r.max_abs_logit);
    fmt::print("{}\n", nlohmann::json{{"out", o->out}, {"max_logit_diff", r.max_logit_diff},
                                      {"max_abs_logit", r.max_abs_logit}}.dump());
  });
}

}  // namespace nrlab
