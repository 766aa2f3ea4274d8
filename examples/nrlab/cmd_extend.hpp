// nrlab/cmd_extend.hpp — `nrlab extend`: teach a pretrained backbone a new domain with one of
// the registered methods (nr/recipes/registry.hpp), on a mixture of the new domain and
// original-like data. The run is nr::recipes::run_extend (nr/recipes/extend.hpp); this file
// parses the flags and prints.
//
//   nrlab extend --checkpoint BACKBONE --corpus DIR --new fr --mix en-mix --p 0.1
//                --method neutral --steps 300 --out OUT
// BACKBONE is an nr backbone, a GGUF file or a Hugging Face directory; the corpus is tokenised with
// its tokenizer (cached next to the text) and --ctx sets the window (default: the model's
// context, at most 1,024 tokens).
// --steps 0 saves and evaluates the freshly initialised extension (identity at initialisation).
#pragma once

#include <fmt/ranges.h>

#include "extension.hpp"

namespace nrlab {

struct ExtendCommand {
  ExtendOptions run;
  std::string lora_targets;
  int threads = 0;
};

// Runs `nrlab extend` after parsing: prints the start-up lines, the statistics, the BPB table
// and results.json's content. Returns the run's status (0, or 128 + signal).
inline int run_extend_command(ExtendCommand& cmd) {
  apply_threads(cmd.threads);
  ExtendOptions& o = cmd.run;
  if (!cmd.lora_targets.empty()) o.spec.lora_targets = split_list(cmd.lora_targets);
  o.show_progress = true;
  o.stop = &stop_signal();
  o.on_message = to_stderr();
  install_stop_handlers();
  nlohmann::json results;
  const int rc = run_extend(o, &results);
  if (rc != 0) return rc;
  if (results.contains("stats")) fmt::print(stderr, "{}", format_stats_table(results["stats"]));
  print_bpb_table(results["backbone_valid_bpb"], results["valid_bpb"]);
  fmt::print("{}\n", results.dump());
  return 0;
}

inline void register_extend_command(CLI::App& app) {
  auto cmd = std::make_shared<ExtendCommand>();
  ExtendOptions* o = &cmd->run;
  CLI::App* c = app.add_subcommand("extend", "Extend a pretrained backbone to a new domain (finetune, LoRA, adapters, "
                                             "gated adapters, neutral residues, new experts, MIGU)");
  c->add_option("--checkpoint", o->checkpoint, "Backbone: nr checkpoint directory (nrlab pretrain's --out), GGUF file or "
                                               "Hugging Face directory")->required();
  c->add_option("--corpus", o->corpus, "Corpus directory")->required();
  c->add_option("--new", o->new_domain, "The new domain to learn (e.g. fr)")->required();
  c->add_option("--mix", o->mix, "Original-like domain mixed in with proportion p")->capture_default_str();
  c->add_option("--p", o->p, "Proportion of mix-domain sequences (0 = new data only)")
      ->capture_default_str()
      ->check(between(0.0, 0.999));
  c->add_option("--method", o->spec.method, join_names(method_names()))
      ->capture_default_str()
      ->check(CLI::IsMember(method_names()));
  add_optional(c, "--gate", o->spec.gate, "Adapter gate: elu, sigmoid, none (default: the method's)")
      ->check(CLI::IsMember({"elu", "sigmoid", "none"}));
  add_optional(c, "--init", o->spec.init, "Adapter init: he, low-variance (default: he for adapter, low-variance for "
                                        "gated methods)")
      ->check(CLI::IsMember({"he", "low-variance"}));
  add_optional(c, "--site", o->spec.site, "Adapter placement: ffn-parallel, ffn-serial, attention-parallel "
                                           "(default: the method's)")
      ->check(CLI::IsMember({"ffn-parallel", "ffn-serial", "attention-parallel"}));
  add_optional(c, "--alpha", o->spec.alpha,
                fmt::format("Weight of the l1 local loss on original data (default: {} for neutral, 0 otherwise)",
                            default_neutral_alpha))
      ->check(non_negative());
  add_optional(c, "--bce-weight", o->spec.bce_weight,
                fmt::format("Weight of the sigmoid gate's classifier loss (default: {} for gated-sigmoid, 0 otherwise)",
                            default_sigmoid_bce))
      ->check(non_negative());
  c->add_option("--extra", o->spec.extra, "New parameters as a fraction of the backbone's (sizes adapters, LoRA and new experts)")
      ->capture_default_str()
      ->check(positive());
  add_optional(c, "--hidden", o->spec.hidden, "Adapter width, or each new expert's width (default: from --extra)")
      ->check(positive());
  add_optional(c, "--experts", o->spec.experts,
                fmt::format("experts: new experts per layer E' (default {} beside a dense FFN; from --extra on a "
                            "mixture-of-experts backbone)", default_new_experts))
      ->check(positive());
  add_optional(c, "--top-k", o->spec.top_k, fmt::format("experts: new experts per token k' (default {})", default_new_top_k))
      ->check(positive());
  add_optional(c, "--route-reg", o->spec.route_reg,
                fmt::format("experts: routing regularisation lambda ||A'||^2 (ModuleFormer Eq. 10; default {})",
                            default_route_reg))
      ->check(non_negative());
  add_optional(c, "--concentration-weight", o->spec.concentration,
                "experts on a mixture-of-experts backbone: load-concentration loss weight (ModuleFormer Eq. 8)")
      ->check(non_negative());
  add_optional(c, "--migu-threshold", o->spec.migu_threshold,
                fmt::format("migu-finetune, migu-lora: fraction T of each weight's rows whose update is masked "
                            "(default {})", default_migu_threshold))
      ->check(between(0.0, 1.0));
  add_optional(c, "--rank", o->spec.rank, "LoRA rank (default: from --extra)")->check(at_least(1));
  add_optional(c, "--lora-alpha", o->spec.lora_alpha, "LoRA alpha; scaling = alpha / rank (default: 2 * rank)")
      ->check(positive());
  c->add_option("--lora-targets", cmd->lora_targets, "Comma-separated projections carrying LoRA (default: "
                                                    "gate_proj,up_proj,down_proj)");
  add_optional(c, "--lr", o->lr,
                fmt::format("Peak learning rate (default: {:.0e} finetune and migu-finetune, {:.0e} lora and "
                            "migu-lora, {:.0e} adapter methods and experts)",
                            default_lr("finetune"), default_lr("lora"), default_lr("neutral")))
      ->check(positive());
  c->add_option("--steps", o->steps, "Optimisation steps (0: save and evaluate the initialised extension)")
      ->capture_default_str()
      ->check(at_least(0));
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str()->check(at_least(1));
  add_optional(c, "--ctx", o->ctx, "Tokens per sequence, training and evaluation (default: the model's context, at "
                                   "most 1024)")
      ->check(at_least(2));
  c->add_option("--original", o->original_domain,
                "The backbone's own domain, whose valid set measures forgetting (default: the one its config.json "
                "records, else en)");
  add_optional(c, "--warmup", o->warmup, "Warmup steps (default: min(100, steps/10))")->check(at_least(0));
  c->add_option("--schedule", o->schedule, "cosine or constant")->capture_default_str();
  c->add_option("--precision", o->precision,
                "Products of the training steps: fp32, bf16 (BF16 x BF16 -> FP32, FP32 master weights; CPUs with "
                "AVX512_BF16) or auto (bf16 where the CPU has it); evaluations run in FP32")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  c->add_flag("--recompute", o->recompute,
              "Recompute each block's activations in the backward pass instead of keeping them (activation "
              "checkpointing): a fraction of the memory, a second forward pass");
  c->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  c->add_option("--grad-clip", o->grad_clip, "Global gradient-norm clip (0 = off)")->capture_default_str();
  c->add_option("--on-nan", o->on_nan,
                "A non-finite loss or gradient: stop (keep the last checkpoint) or skip-step (drop the step)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop", "skip-step"}));
  c->add_option("--seed", o->seed, "Seed for the extension's initialisation and the data order")->capture_default_str();
  c->add_option("--threads", cmd->threads, "Threads for BLAS and loops (default: NR_NUM_THREADS or all)");
  c->add_option("--save-every", o->save_every, "Checkpoint every N steps")->capture_default_str()->check(at_least(1));
  c->add_option("--log-every", o->log_every, "Progress line every N steps")->capture_default_str();
  c->add_option("--eval-every", o->eval_every, "Validation BPB every N steps (0 = only at the end)")->capture_default_str();
  c->add_option("--eval-tokens", o->eval_tokens, "Tokens of each valid.txt to evaluate (bytes for nr's byte-level models; 0 = all)")->capture_default_str();
  c->add_flag("--eval-initial,!--no-eval-initial", o->eval_initial,
              "Evaluate the backbone before training (the 'before' column of results.json)")
      ->capture_default_str();
  c->add_option("--out", o->out, "Output directory (resumes when it holds a training state)")->required();
  c->add_option("--eval-domains", o->eval_domains, "Domains whose valid BPB is measured (default: every domain)")
      ->delimiter(',');
  c->add_option("--mc-items", o->mc_items,
                "Multiple-choice items per language scored after training (CORPUS/mc, built by `nrlab corpus`; 0 = none)")
      ->capture_default_str()
      ->check(at_least(0));
  c->add_option("--mc-langs", o->mc_langs, "Languages of the multiple-choice evaluation (default: the original and the new)")
      ->delimiter(',');
  c->add_option("--mc-shots", o->mc_shots, "Numbers of solved examples before each item, e.g. 0,5")
      ->delimiter(',')
      ->capture_default_str();
  c->callback([cmd]() {
    const int rc = run_extend_command(*cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
