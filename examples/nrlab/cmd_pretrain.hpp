// nrlab/cmd_pretrain.hpp — `nrlab pretrain`: train a backbone from scratch on one domain.
#pragma once

#include "common.hpp"

namespace nrlab {

struct PretrainOptions {
  std::string corpus, domain = "en", preset = "nano", out;
  int64_t steps = 300, batch = 16, ctx = 0, warmup = -1, log_every = 10, save_every = 100, eval_every = 0,
          eval_tokens = 200000;
  double lr = 3e-3, weight_decay = 0.1, grad_clip = 1.0, min_lr_ratio = 0.1;
  std::string schedule = "cosine";
  uint64_t seed = 1;
  int threads = 0;
};

template <class Model>
int run_pretrain(Model& model, const nr::ModelConfig& config, const PretrainOptions& o) {
  const nr::DomainText text = nr::load_domain(o.corpus, o.domain);
  const std::vector<int32_t> train = tokenize(text.train);
  std::vector<int32_t> valid = tokenize(text.valid);
  if (o.eval_tokens > 0 && static_cast<int64_t>(valid.size()) > o.eval_tokens) valid.resize(static_cast<size_t>(o.eval_tokens));
  const int64_t ctx = config.max_position_embeddings;
  nr::MixtureSampler sampler = nr::single_domain_sampler(o.domain, train, o.batch, ctx, o.seed);
  nr::AdamW opt(nr::named_parameters(model), nr::AdamWConfig{.lr = o.lr, .weight_decay = o.weight_decay});

  nr::TrainLoopOptions loop;
  loop.label = "pretrain";
  loop.steps = o.steps;
  loop.start_step = resume_if_present(o.out, model, opt, "pretrain");
  loop.schedule = nr::LrSchedule{.peak = o.lr, .warmup = default_warmup(o.warmup, o.steps), .total = o.steps,
                                 .kind = nr::LrSchedule::parse_kind(o.schedule), .min_ratio = o.min_lr_ratio};
  loop.grad_clip = o.grad_clip;
  loop.log_every = o.log_every;
  loop.save_every = o.save_every;
  loop.eval_every = o.eval_every;
  loop.stop = &stop_signal();
  fs::create_directories(o.out);
  nr::JsonlLog log((fs::path(o.out) / "train_log.jsonl").string());
  loop.log = &log;

  const nlohmann::json nr_fields = {{"method", "backbone"}, {"domain", o.domain}, {"seed", o.seed}};
  nr::TrainCallbacks callbacks;
  callbacks.save = [&](int64_t step) {
    nr::save_training_state(o.out, model, opt, step);
    nr::save_model(o.out, model, config, nr_fields);
  };
  callbacks.eval = [&](int64_t) {
    const nr::BpbResult bpb = nr::bits_per_byte(model, valid, ctx);
    return nlohmann::json{{"domain", o.domain}, {"valid_bpb", bpb.bpb}, {"tokens", bpb.tokens}};
  };
  fmt::print(stderr, "[pretrain] {} parameters, {} train tokens, batch {} x ctx {}, {} threads\n",
             nr::count_parameters(model), train.size(), o.batch, ctx, nr::num_threads());
  install_stop_handlers();
  const nr::TrainOutcome run = nr::train(model, opt, sampler, loop, callbacks);
  if (run.stopped) return 128 + run.stop_signal;
  nlohmann::json result = run.final_eval;
  result["steps"] = o.steps;
  log.write(result);
  if (run.end_step > run.start_step) result["tokens_per_second"] = run.tokens_per_second();
  fmt::print("{}\n", result.dump());
  return 0;
}

inline void register_pretrain_command(CLI::App& app) {
  auto o = std::make_shared<PretrainOptions>();
  CLI::App* c = app.add_subcommand("pretrain", "Train a backbone from scratch on one domain of a corpus");
  c->add_option("--corpus", o->corpus, "Corpus directory (built by `nrlab corpus`)")->required();
  c->add_option("--domain", o->domain, "Domain to train on")->capture_default_str();
  c->add_option("--preset", o->preset, "Model size: nano, tiny, small")->capture_default_str();
  c->add_option("--steps", o->steps, "Optimisation steps")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--ctx", o->ctx, "Context length (default: the preset's)")->check(CLI::NonNegativeNumber);
  c->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--warmup", o->warmup, "Warmup steps (default: min(100, steps/10))");
  c->add_option("--schedule", o->schedule, "cosine or constant")->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  c->add_option("--grad-clip", o->grad_clip, "Global gradient-norm clip (0 = off)")->capture_default_str();
  c->add_option("--seed", o->seed, "Seed for initialisation and data order")->capture_default_str();
  c->add_option("--threads", o->threads, "Threads for BLAS and loops (default: NR_NUM_THREADS or all)");
  c->add_option("--save-every", o->save_every, "Checkpoint every N steps")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--log-every", o->log_every, "Progress line every N steps")->capture_default_str();
  c->add_option("--eval-every", o->eval_every, "Validation BPB every N steps (0 = only at the end)")->capture_default_str();
  c->add_option("--eval-tokens", o->eval_tokens, "Validation bytes for the BPB (0 = all)")->capture_default_str();
  c->add_option("--out", o->out, "Checkpoint directory (resumes when it holds a training state)")->required();
  c->callback([o]() {
    apply_threads(o->threads);
    nr::ModelConfig config = nr::preset(o->preset);
    if (o->ctx > 0) config.max_position_embeddings = o->ctx;
    if (nr::has_training_state(o->out) && fs::exists(fs::path(o->out) / nr::config_file_name)) {
      const nr::ModelConfig saved = nr::load_config_json(fs::path(o->out) / nr::config_file_name);
      if (saved.hidden_size != config.hidden_size || saved.num_hidden_layers != config.num_hidden_layers ||
          saved.max_position_embeddings != config.max_position_embeddings)
        throw nr::ValueError(fmt::format("{} holds a checkpoint of another model size; choose another --out or the same --preset",
                                         o->out));
    }
    const int rc = with_model(config, o->seed, [&](auto& model) { return run_pretrain(model, config, *o); });
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
