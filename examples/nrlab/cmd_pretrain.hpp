// nrlab/cmd_pretrain.hpp — `nrlab pretrain`: train a backbone from scratch on one domain or on a
// mixture of domains (nr::recipes::run_pretrain, nr/recipes/pretrain.hpp; this file parses and prints).
//
//   nrlab pretrain --corpus DIR --domain en --out BACKBONE                      English only
//   nrlab pretrain --corpus DIR --domain en:0.875,fr:0.0625,de:0.0625 --out ML  multilingual
//
// A mixture draws each sequence's domain independently with the given proportions (weights are
// normalised), as the paper's Trans-ML backbone saw about 12.5 % non-English text. The domain
// of largest weight is recorded as the backbone's original domain (config.json "nr".domain;
// the whole mixture under "nr".mixture), which `nrlab extend` reads. The validation BPB is
// measured on every domain of the mixture. A finished run writes OUT/results.json.
//
//   nrlab pretrain --corpus DIR --out MOE --arch moe --attention stick-breaking --experts 8 --top-k 2
// pretrains a mixture-of-experts backbone (nr/recipes/models.hpp): every FFN a sparse mixture of E
// SiLU experts, top k per token, with ModuleFormer's mutual-information load-balancing loss
// (Eq. 6-7, weight --mi-weight) added to the LM loss; the attention is softmax with RoPE or
// stick-breaking (Section 3.2).
#pragma once

#include "common.hpp"

namespace nrlab {

struct PretrainCommand {
  PretrainOptions run;
  int threads = 0;
};

// Runs `nrlab pretrain` after parsing; prints the final evaluation on stdout.
inline int run_pretrain_command(PretrainCommand& cmd) {
  apply_threads(cmd.threads);
  cmd.run.show_progress = true;
  cmd.run.stop = &stop_signal();
  cmd.run.on_message = to_stderr();
  install_stop_handlers();
  nlohmann::json record;
  const int rc = run_pretrain(cmd.run, &record);
  if (rc == 0) {
    nlohmann::json shown = nlohmann::json::object();
    for (const char* key : {"domain", "valid_bpb", "tokens", "valid_bpb_by_domain", "steps", "tokens_per_second"})
      if (record.contains(key)) shown[key] = record[key];
    fmt::print("{}\n", shown.dump());
  }
  return rc;
}

inline void register_pretrain_command(CLI::App& app) {
  auto cmd = std::make_shared<PretrainCommand>();
  PretrainOptions* o = &cmd->run;
  CLI::App* c = app.add_subcommand("pretrain", "Train a backbone from scratch on one domain or a mixture of domains of a corpus");
  c->add_option("--corpus", o->corpus, "Corpus directory (built by `nrlab corpus`)")->required();
  c->add_option("--domain", o->domain, "Domain to train on, or a mixture NAME:WEIGHT,... (e.g. en:0.875,fr:0.0625,de:0.0625)")
      ->capture_default_str();
  c->add_option("--preset", o->preset, "Model size: nano, tiny, small")->capture_default_str();
  c->add_option("--steps", o->steps, "Optimisation steps")->capture_default_str()->check(at_least(1));
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str()->check(positive());
  c->add_option("--ctx", o->ctx, "Context length (default: the preset's)")->check(non_negative());
  c->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str()->check(positive());
  c->add_option("--warmup", o->warmup, "Warmup steps (default: min(100, steps/10))");
  c->add_option("--schedule", o->schedule, "cosine or constant")->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  c->add_option("--grad-clip", o->grad_clip, "Global gradient-norm clip (0 = off)")->capture_default_str();
  c->add_option("--on-nan", o->on_nan,
                "A non-finite loss or gradient: stop (keep the last checkpoint) or skip-step (drop the step)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop", "skip-step"}));
  c->add_option("--seed", o->seed, "Seed for initialisation and data order")->capture_default_str();
  c->add_option("--threads", cmd->threads, "Threads for BLAS and loops (default: NR_NUM_THREADS or all)");
  c->add_option("--save-every", o->save_every, "Checkpoint every N steps")->capture_default_str()->check(positive());
  c->add_option("--log-every", o->log_every, "Progress line every N steps")->capture_default_str();
  c->add_option("--eval-every", o->eval_every, "Validation BPB every N steps (0 = only at the end)")->capture_default_str();
  c->add_option("--eval-tokens", o->eval_tokens, "Validation bytes for the BPB (0 = all)")->capture_default_str();
  c->add_option("--out", o->out, "Checkpoint directory (resumes when it holds a training state)")->required();
  c->add_option("--arch", o->arch, "dense (Llama) or moe (every FFN a sparse mixture of experts)")
      ->capture_default_str()
      ->check(CLI::IsMember({"dense", "moe"}));
  c->add_option("--attention", o->attention, "moe: softmax (with RoPE) or stick-breaking attention")
      ->capture_default_str()
      ->check(CLI::IsMember(attention_names()));
  c->add_option("--experts", o->experts, "moe: experts per layer E")->capture_default_str()->check(positive());
  c->add_option("--top-k", o->top_k, "moe: experts per token k")->capture_default_str()->check(positive());
  c->add_option("--expert-hidden", o->expert_hidden, "moe: hidden width of each expert (0: intermediate_size / k)")
      ->capture_default_str()
      ->check(non_negative());
  c->add_option("--mi-weight", o->mi_weight,
                "moe: weight of the mutual-information load-balancing loss H(e|x) - H(e) (ModuleFormer Eq. 6-7)")
      ->capture_default_str()
      ->check(non_negative());
  c->callback([cmd]() {
    const int rc = run_pretrain_command(*cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
