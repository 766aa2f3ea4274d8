// nrlab/cmd_extend.hpp — `nrlab extend`: teach a pretrained backbone a new domain with one of
// the extension methods (extension.hpp), on a mixture of the new domain and original-like data.
//
//   nrlab extend --checkpoint BACKBONE --corpus DIR --new fr --mix en-mix --p 0.1
//                --method neutral --steps 300 --out OUT
//
// Each sequence is drawn from the new domain with probability 1 - p and from the mix domain
// with probability p (p = 0: new data only); sequences of the mix domain are flagged original
// (ForwardContext::original = 1), which is what the local losses of gated adapters read.
// OUT receives the full extended model (model.safetensors + config.json with the method under
// "nr"), the extension alone (adapter_model.safetensors + adapter_config.json, not for
// finetune and migu-finetune), the training state (resumable), train_log.jsonl and results.json (BPB of every
// domain before and after, the method and every hyper-parameter; with --mc-items, the
// multiple-choice accuracy of downstream.hpp).
//
// The command is callable in-process: run_extend_command(options, &results) is what the CLI
// runs and what `nrlab reproduce` calls for each run of a table.
#pragma once

#include <chrono>

#include <fmt/ranges.h>

#include <nr/ext/insert_experts.hpp>

#include "downstream.hpp"
#include "extension.hpp"

namespace nrlab {

struct ExtendOptions {
  std::string checkpoint, corpus, new_domain, mix = "en-mix", out;
  double p = 0.1;
  ExtensionSpec spec;
  std::string lora_targets = "gate_proj,up_proj,down_proj";
  double lr = 0.0;  // 0: the method's default
  double weight_decay = 0.1, grad_clip = 1.0, min_lr_ratio = 0.1;
  std::string on_nan = "stop";  // stop | skip-step
  std::string schedule = "cosine";
  int64_t steps = 300, batch = 16, warmup = -1, log_every = 10, save_every = 100, eval_every = 0, eval_tokens = 100000,
          eval_batch = 16;
  bool eval_initial = true;
  uint64_t seed = 1;
  int threads = 0;
  std::vector<std::string> eval_domains;  // domains whose valid BPB is measured (empty: every domain)
  // Downstream evaluation after training (downstream.hpp): the first mc_items items of
  // CORPUS/mc/<lang>.jsonl for each language of mc_langs (empty: the original domain and the new
  // one), scored with each number of shots of mc_shots. mc_items = 0: none.
  int64_t mc_items = 0;
  std::vector<std::string> mc_langs;
  std::vector<int> mc_shots = {0};
  std::string label;        // progress-line label (default "extend METHOD")
  bool print_json = true;   // print results.json's content on stdout at the end
};

// The settings recorded in config.json "nr" and results.json.
inline nlohmann::json extend_fields(const ExtendOptions& o, const ExtensionSpec& spec, double lr, int64_t warmup,
                                    const std::string& original_domain) {
  nlohmann::json j = spec.to_json();
  j.update({{"backbone", o.checkpoint}, {"corpus", o.corpus}, {"new", o.new_domain}, {"mix", o.mix}, {"p", o.p},
            {"original_domain", original_domain}, {"lr", lr}, {"steps", o.steps}, {"batch", o.batch},
            {"warmup", warmup}, {"schedule", o.schedule}, {"min_lr_ratio", o.min_lr_ratio},
            {"weight_decay", o.weight_decay}, {"grad_clip", o.grad_clip}, {"adam_betas", {0.9, 0.95}},
            {"seed", o.seed}});
  return j;
}

// Refuses to resume a run of another method / shape / data mixture.
inline void check_resumable(const fs::path& out, const nlohmann::json& fields) {
  const fs::path file = out / nr::config_file_name;
  if (!fs::exists(file)) return;
  const nr::ConfigJsonDocument doc = nr::load_config_json_document(file);
  const nlohmann::json saved = doc.json.value("nr", nlohmann::json::object());
  for (const char* key : {"method", "gate", "site", "hidden", "rank", "lora_targets", "alpha", "bce_weight", "experts",
                          "top_k", "route_reg", "concentration", "migu_threshold", "new", "mix", "p", "backbone"}) {
    const nlohmann::json a = saved.value(key, nlohmann::json()), b = fields.value(key, nlohmann::json());
    if (a != b)
      throw nr::ValueError(fmt::format("{} holds a run with {} = {}, not {}: choose another --out or the same options",
                                       out.string(), key, a.dump(), b.dump()));
  }
}

// The step-0 evaluation a previous start of the run logged ({} when there is none).
inline nlohmann::json initial_eval_from_log(const fs::path& log_file) {
  if (!fs::exists(log_file)) return nlohmann::json::object();
  std::istringstream lines(nr::read_file(log_file));
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("step", -1) == 0 && j.contains("eval")) return j["eval"];
  }
  return nlohmann::json::object();
}

inline void print_bpb_table(const nlohmann::json& before, const nlohmann::json& after) {
  std::string s = fmt::format("{:<10} {:>9} {:>9} {:>9}\n", "domain", "backbone", "extended", "change");
  for (auto it = after.begin(); it != after.end(); ++it) {
    const double a = it.value().get<double>();
    if (before.contains(it.key())) {
      const double b = before[it.key()].get<double>();
      s += fmt::format("{:<10} {:>9.4f} {:>9.4f} {:>+9.4f}\n", it.key(), b, a, a - b);
    } else {
      s += fmt::format("{:<10} {:>9} {:>9.4f} {:>9}\n", it.key(), "-", a, "-");
    }
  }
  fmt::print(stderr, "{}", s);
}

// A one-line description of the method's settings for the start-up line.
inline std::string describe_spec(const ExtensionSpec& spec) {
  std::string s;
  if (spec.is_adapter())
    s = fmt::format(" (gate {}, init {}, hidden {}, site {}, alpha {}, bce {})", spec.gate, spec.init, spec.hidden,
                    spec.site, spec.alpha, spec.bce_weight);
  else if (spec.is_lora())
    s = fmt::format(" (rank {}, alpha {}, targets {})", spec.rank, spec.lora_alpha, join_list(spec.lora_targets));
  else if (spec.is_experts())
    s = fmt::format(" ({} new experts per layer of width {}, top-{}, routing regularisation {}{})", spec.experts,
                    spec.hidden, spec.top_k, spec.route_reg,
                    spec.concentration > 0.0 ? fmt::format(", concentration {}", spec.concentration) : std::string());
  if (spec.is_migu()) s += fmt::format(" (MIGU: update masked on a fraction T = {} of each weight's rows)", spec.migu_threshold);
  return s;
}

template <class Model>
int run_extend(Model& model, const nr::ModelConfig& config, const ExtensionSpec& spec, const ExtendOptions& o,
               const std::string& original_domain, nlohmann::json* results_out = nullptr,
               const nlohmann::json& model_fields = nlohmann::json::object()) {
  const fs::path out = o.out;
  // Backbone weights into the extended model; the extension keeps its fresh initialisation.
  const int64_t backbone_params = [&] {
    int64_t n = 0;
    model.visit_parameters([&](const std::string& name, nr::Var& v) {
      if (!nr::is_extension_parameter(name)) n += v.numel();
    }, "");
    return n;
  }();
  nr::load_backbone(o.checkpoint, model);
  const int64_t new_params = nr::count_parameters(model) - backbone_params;
  if (!spec.is_full()) nr::freeze_backbone(model);
  const int64_t trainable = nr::count_parameters(model, true);
  const double extra_fraction = static_cast<double>(new_params) / static_cast<double>(backbone_params);

  // Data: the new domain, and a proportion p of the mix domain (tag 1, flagged original).
  const nr::DomainText new_text = nr::load_domain(o.corpus, o.new_domain);
  const std::vector<int32_t> new_train = tokenize(new_text.train);
  std::vector<int32_t> mix_train;
  std::vector<nr::MixtureDomain> mixture = {{o.new_domain, &new_train, 1.0 - o.p}};
  std::vector<uint8_t> original_of_tag = {0};
  if (o.p > 0.0) {
    mix_train = tokenize(nr::load_domain(o.corpus, o.mix).train);
    mixture.push_back({o.mix, &mix_train, o.p});
    original_of_tag.push_back(1);
  }
  const int64_t ctx = config.max_position_embeddings;
  const nr::MixtureSampler sampler(mixture, o.batch, ctx, o.seed);
  std::vector<ValidSet> valid = load_valid_sets(o.corpus, o.eval_tokens);
  if (!o.eval_domains.empty()) {
    for (const std::string& d : o.eval_domains)
      if (std::none_of(valid.begin(), valid.end(), [&](const ValidSet& v) { return v.name == d; }))
        throw nr::ValueError(fmt::format("evaluation domain '{}' is not in the corpus {}", d, o.corpus));
    std::erase_if(valid, [&](const ValidSet& v) {
      return std::find(o.eval_domains.begin(), o.eval_domains.end(), v.name) == o.eval_domains.end();
    });
  }
  std::vector<std::string> mc_langs = o.mc_langs;
  if (mc_langs.empty()) mc_langs = {original_domain, o.new_domain};
  std::map<std::string, std::vector<nr::ChoiceItem>> mc_sets;
  if (o.mc_items > 0) mc_sets = load_mc_items(fs::path(o.corpus) / mc_dir_name, mc_langs, o.mc_items);

  const double lr = o.lr > 0.0 ? o.lr : default_lr(spec.method);
  const int64_t warmup = default_warmup(o.warmup, o.steps);
  nlohmann::json fields = extend_fields(o, spec, lr, warmup, original_domain);
  fields.update(model_fields);  // a MoE backbone's architecture (moe_backbone.hpp)
  nr::AdamW opt(nr::named_parameters(model),
                nr::AdamWConfig{.lr = lr, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = o.weight_decay});
  check_resumable(out, fields);
  // MIGU: the layers record their output magnitudes in the forward pass; before every optimizer
  // step the mask keeps the update of the top (1 - T) rows of each weight only.
  if constexpr (is_migu_model<Model>()) {
    const nr::MiguMask migu(model, spec.migu_config());
    migu.attach(opt);  // the hook shares the mask's state and outlives this object
  }

  nr::TrainLoopOptions loop;
  loop.label = o.label.empty() ? fmt::format("extend {}", spec.method) : o.label;
  loop.steps = o.steps;
  loop.start_step = resume_if_present(out, model, opt, "extend");
  loop.schedule = nr::LrSchedule{.peak = lr, .warmup = warmup, .total = o.steps,
                                 .kind = nr::LrSchedule::parse_kind(o.schedule), .min_ratio = o.min_lr_ratio};
  loop.grad_clip = o.grad_clip;
  loop.on_nan = nr::parse_nan_policy(o.on_nan);
  loop.log_every = o.log_every;
  loop.save_every = o.save_every;
  loop.eval_every = o.eval_every;
  loop.original_of_tag = original_of_tag;
  loop.stop = &stop_signal();
  fs::create_directories(out);
  nr::JsonlLog log((out / "train_log.jsonl").string());
  loop.log = &log;

  fmt::print(stderr,
             "[extend] method {}{}: backbone {} parameters, new {} ({:.2f}% of the backbone), trainable {}; "
             "lr {:.2e}; {} x {} tokens per step; new '{}' {:.0f}% + mix '{}' {:.0f}%; {} threads\n",
             spec.method, describe_spec(spec),
             backbone_params, new_params, 100.0 * extra_fraction, trainable, lr, o.batch, ctx, o.new_domain,
             100.0 * (1.0 - o.p), o.mix, 100.0 * o.p, nr::num_threads());

  // adapter_config.json: PEFT's fields only for LoRA (PEFT refuses unknown keys in older
  // versions); nr's adapters also record the training settings, which `eval --stats` reads.
  nlohmann::json adapter_config = spec.adapter_file_config(o.checkpoint);
  if (spec.is_adapter() || spec.is_experts()) adapter_config.update(fields);
  auto save = [&](int64_t step) {
    nr::save_checkpoint(out, model, config, fields, opt, step, {{"method", spec.method}}, [&] {
      if (!spec.is_full()) nr::save_adapter_file(out, model, adapter_config);
    });
  };
  auto evaluate = [&](nlohmann::json* stats) {
    return evaluate_domains(model, valid, ctx, o.eval_batch, original_domain, o.new_domain, stats);
  };

  nlohmann::json before = nlohmann::json::object();
  const fs::path results_file = out / "results.json";
  if (loop.start_step == 0 && o.eval_initial) {
    fmt::print(stderr, "[extend] evaluating the backbone on {} domains ({} bytes each at most)\n", valid.size(),
               o.eval_tokens);
    before = evaluate(nullptr);
    log.write({{"step", 0}, {"eval", before}});
  } else {
    before = initial_eval_from_log(out / "train_log.jsonl");  // a resumed run: the first start's figures
  }

  nr::TrainCallbacks callbacks;
  callbacks.save = save;
  // The final evaluation also collects the adapter / new-expert statistics (same forward passes).
  nlohmann::json final_stats;
  callbacks.eval = [&](int64_t step) {
    return evaluate(has_extension_stats<Model>() && step == o.steps ? &final_stats : nullptr);
  };
  install_stop_handlers();
  const nr::TrainOutcome run = nr::train(model, opt, sampler, loop, callbacks);
  if (run.stopped) return 128 + run.stop_signal;

  nlohmann::json result = fields;
  result["backbone_params"] = backbone_params;
  result["new_params"] = new_params;
  result["trainable_params"] = trainable;
  result["extra_fraction"] = extra_fraction;
  result["valid_bpb"] = run.final_eval;
  result["backbone_valid_bpb"] = before;
  result["eval_tokens"] = o.eval_tokens;
  result["final_loss"] = run.last_loss;
  if (run.end_step > run.start_step) {
    result["train_seconds"] = run.train_seconds;
    result["wall_seconds"] = run.seconds;
    result["tokens_per_second"] = run.tokens_per_second();
  }
  if (!final_stats.is_null()) {
    result["stats"] = final_stats;
    fmt::print(stderr, "{}", format_stats_table(final_stats));
  }
  if (!mc_sets.empty()) {
    fmt::print(stderr, "[extend] multiple-choice evaluation: {} items x {} languages, shots {}\n", o.mc_items,
               mc_sets.size(), fmt::join(o.mc_shots, ","));
    const auto t0 = std::chrono::steady_clock::now();
    result["mc"] = evaluate_mc(model, mc_sets, o.mc_shots, ctx);
    result["mc_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result["mc_items"] = o.mc_items;
    result["mc_shots"] = o.mc_shots;
  }
  nr::write_file_atomic(results_file, result.dump(2) + "\n");
  log.write({{"results", result}});
  print_bpb_table(before, run.final_eval);
  if (o.print_json) fmt::print("{}\n", result.dump());
  if (results_out) *results_out = result;
  return 0;
}

// `--method experts` on a mixture-of-experts backbone: E' new experts of the old experts' width
// are inserted into every expert layer (ModuleFormer Section 4.3, ext/insert_experts.hpp), with
// extra slots: each token keeps its k old experts exactly as routed before and also goes to its
// top k' new experts, weighted by their probability in softmax([A; A'] gelu(W x)) (Eq. 9). The
// old experts, the router's W and A stay frozen; the new experts and A' train, A' under the
// routing regularisation of Eq. 10; --concentration-weight adds the load-concentration loss of
// Eq. 8. E' defaults to what --extra pays for: per layer a new expert costs 3 C h + D_emb.
inline int extend_moe_backbone(ExtensionSpec spec, const nr::ModelConfig& config, const nlohmann::json& backbone_nr,
                               const ExtendOptions& o, const std::string& original_domain, nlohmann::json* results) {
  spec.resolve_defaults();
  if (!spec.is_experts())
    throw nr::ValueError(fmt::format("{} is a mixture-of-experts backbone: extend it with --method experts (new experts "
                                     "inserted into its expert layers), not '{}'", o.checkpoint, spec.method));
  const std::string source = (fs::path(o.checkpoint) / nr::config_file_name).string();
  MoeArch arch = moe_arch_of(backbone_nr, config, source);
  if (arch.moe.new_experts.count > 0)
    throw nr::ValueError(fmt::format("{} already holds inserted experts; extend the backbone it was trained from",
                                     o.checkpoint));
  arch.moe.mi_weight = 0.0;  // the pretraining loss; fine-tuning uses load concentration
  arch.moe.concentration_weight = spec.concentration;
  return with_moe_model(config, arch.moe, arch.attention, o.seed, [&](auto& model) {
    const auto& mlp = model.layers.front().mlp;
    const int64_t h = mlp.hidden();
    if (spec.hidden > 0 && spec.hidden != h)
      throw nr::ValueError(fmt::format("--hidden {}: experts inserted into a mixture-of-experts layer have the width of "
                                       "its experts, {}", spec.hidden, h));
    spec.hidden = h;
    if (spec.experts <= 0) {
      nr::check_extra_fraction(spec.extra);
      const double per_expert = 3.0 * static_cast<double>(config.hidden_size * h) +
                                static_cast<double>(mlp.router.feature_width());
      const double budget = spec.extra * static_cast<double>(nr::count_parameters(model)) /
                            static_cast<double>(config.num_hidden_layers);
      spec.experts = std::max<int64_t>(1, std::llround(budget / per_expert));
    }
    if (spec.top_k > spec.experts)
      throw nr::ValueError(fmt::format("--top-k {} exceeds the {} new experts", spec.top_k, spec.experts));
    const nr::NewExpertsConfig cfg{.count = spec.experts, .routing = nr::NewExpertRouting::extra_slots,
                                   .top_k = spec.top_k, .routing_reg_weight = spec.route_reg};
    nr::Rng rng(o.seed * 0x9E3779B97F4A7C15ull + 0xE8);
    nr::insert_experts(model, arch.moe, cfg, rng);
    return run_extend(model, config, spec, o, original_domain, results, moe_fields(arch.attention, arch.moe, config));
  });
}

// Runs one extension (what `nrlab extend` does): returns 0 when the run is complete, with
// results.json's content in *results when given, or 128 + the signal when SIGINT / SIGTERM
// stopped it (the same call resumes it). Errors are thrown as nr::Error.
inline int run_extend_command(ExtendOptions o, nlohmann::json* results = nullptr) {
  o.spec.lora_targets = split_list(o.lora_targets);
  apply_threads(o.threads);
  const fs::path backbone = o.checkpoint;
  const nr::ConfigJsonDocument doc = nr::load_config_json_document(backbone / nr::config_file_name);
  const nlohmann::json backbone_nr = doc.json.value("nr", nlohmann::json::object());
  if (backbone_nr.is_object() && backbone_nr.value("method", "backbone") != "backbone")
    throw nr::ValueError(fmt::format("{} is not a backbone (its config.json says method '{}'); extend the backbone it "
                                     "was trained from", o.checkpoint, backbone_nr.value("method", "")));
  const std::string original_domain = backbone_nr.is_object() ? backbone_nr.value("domain", "en") : "en";
  if (o.new_domain == o.mix && o.p > 0.0)
    throw nr::ValueError(fmt::format("--new and --mix are both '{}'", o.new_domain));
  ExtensionSpec spec = o.spec;
  if (is_moe_checkpoint(backbone_nr)) return extend_moe_backbone(spec, doc.config, backbone_nr, o, original_domain, results);
  return with_extended_model(spec, doc.config, o.seed, [&](auto& model) {
    return run_extend(model, doc.config, spec, o, original_domain, results);
  });
}

inline void register_extend_command(CLI::App& app) {
  auto o = std::make_shared<ExtendOptions>();
  CLI::App* c = app.add_subcommand("extend", "Extend a pretrained backbone to a new domain (finetune, LoRA, adapters, "
                                             "gated adapters, neutral residues, new experts, MIGU)");
  c->add_option("--checkpoint", o->checkpoint, "Backbone checkpoint directory (nrlab pretrain's --out)")->required();
  c->add_option("--corpus", o->corpus, "Corpus directory")->required();
  c->add_option("--new", o->new_domain, "The new domain to learn (e.g. fr)")->required();
  c->add_option("--mix", o->mix, "Original-like domain mixed in with proportion p")->capture_default_str();
  c->add_option("--p", o->p, "Proportion of mix-domain sequences (0 = new data only)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999));
  c->add_option("--method", o->spec.method, join_list(method_names()))
      ->capture_default_str()
      ->check(CLI::IsMember(method_names()));
  c->add_option("--gate", o->spec.gate, "Adapter gate: elu, sigmoid, none (default: the method's)")
      ->check(CLI::IsMember({"elu", "sigmoid", "none"}));
  c->add_option("--init", o->spec.init, "Adapter init: he, low-variance (default: he for adapter, low-variance for "
                                        "gated methods)")
      ->check(CLI::IsMember({"he", "low-variance"}));
  c->add_option("--site", o->spec.site, "Adapter placement: ffn-parallel, ffn-serial, attention-parallel")
      ->capture_default_str()
      ->check(CLI::IsMember({"ffn-parallel", "ffn-serial", "attention-parallel"}));
  c->add_option("--alpha", o->spec.alpha,
                fmt::format("Weight of the l1 local loss on original data (default: {} for neutral, 0 otherwise)",
                            default_neutral_alpha))
      ->check(CLI::NonNegativeNumber);
  c->add_option("--bce-weight", o->spec.bce_weight,
                fmt::format("Weight of the sigmoid gate's classifier loss (default: {} for gated-sigmoid, 0 otherwise)",
                            default_sigmoid_bce))
      ->check(CLI::NonNegativeNumber);
  c->add_option("--extra", o->spec.extra, "New parameters as a fraction of the backbone's (sizes adapters, LoRA and new experts)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_option("--hidden", o->spec.hidden, "Adapter width, or each new expert's width (default: from --extra)")
      ->check(CLI::PositiveNumber);
  c->add_option("--experts", o->spec.experts,
                fmt::format("experts: new experts per layer E' (default {} beside a dense FFN; from --extra on a "
                            "mixture-of-experts backbone)", default_new_experts))
      ->check(CLI::PositiveNumber);
  c->add_option("--top-k", o->spec.top_k, fmt::format("experts: new experts per token k' (default {})", default_new_top_k))
      ->check(CLI::PositiveNumber);
  c->add_option("--route-reg", o->spec.route_reg,
                fmt::format("experts: routing regularisation lambda ||A'||^2 (ModuleFormer Eq. 10; default {})",
                            default_route_reg))
      ->check(CLI::NonNegativeNumber);
  c->add_option("--concentration-weight", o->spec.concentration,
                "experts on a mixture-of-experts backbone: load-concentration loss weight (ModuleFormer Eq. 8)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--migu-threshold", o->spec.migu_threshold,
                fmt::format("migu-finetune, migu-lora: fraction T of each weight's rows whose update is masked "
                            "(default {})", default_migu_threshold))
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--rank", o->spec.rank, "LoRA rank (default: from --extra)")->check(CLI::PositiveNumber);
  c->add_option("--lora-alpha", o->spec.lora_alpha, "LoRA alpha; scaling = alpha / rank (default: 2 * rank)")
      ->check(CLI::PositiveNumber);
  c->add_option("--lora-targets", o->lora_targets, "Comma-separated projections carrying LoRA")->capture_default_str();
  c->add_option("--lr", o->lr,
                fmt::format("Peak learning rate (default: {:.0e} finetune and migu-finetune, {:.0e} lora and "
                            "migu-lora, {:.0e} adapter methods and experts)",
                            default_lr("finetune"), default_lr("lora"), default_lr("neutral")))
      ->check(CLI::PositiveNumber);
  c->add_option("--steps", o->steps, "Optimisation steps")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--batch", o->batch, "Sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--warmup", o->warmup, "Warmup steps (default: min(100, steps/10))");
  c->add_option("--schedule", o->schedule, "cosine or constant")->capture_default_str();
  c->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay")->capture_default_str();
  c->add_option("--grad-clip", o->grad_clip, "Global gradient-norm clip (0 = off)")->capture_default_str();
  c->add_option("--on-nan", o->on_nan,
                "A non-finite loss or gradient: stop (keep the last checkpoint) or skip-step (drop the step)")
      ->capture_default_str()
      ->check(CLI::IsMember({"stop", "skip-step"}));
  c->add_option("--seed", o->seed, "Seed for the extension's initialisation and the data order")->capture_default_str();
  c->add_option("--threads", o->threads, "Threads for BLAS and loops (default: NR_NUM_THREADS or all)");
  c->add_option("--save-every", o->save_every, "Checkpoint every N steps")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--log-every", o->log_every, "Progress line every N steps")->capture_default_str();
  c->add_option("--eval-every", o->eval_every, "Validation BPB every N steps (0 = only at the end)")->capture_default_str();
  c->add_option("--eval-tokens", o->eval_tokens, "Bytes of each valid.txt to evaluate (0 = all)")->capture_default_str();
  c->add_flag("--eval-initial,!--no-eval-initial", o->eval_initial,
              "Evaluate the backbone before training (the 'before' column of results.json)")
      ->capture_default_str();
  c->add_option("--out", o->out, "Output directory (resumes when it holds a training state)")->required();
  c->add_option("--eval-domains", o->eval_domains, "Domains whose valid BPB is measured (default: every domain)")
      ->delimiter(',');
  c->add_option("--mc-items", o->mc_items,
                "Multiple-choice items per language scored after training (CORPUS/mc, built by `nrlab corpus`; 0 = none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--mc-langs", o->mc_langs, "Languages of the multiple-choice evaluation (default: the original and the new)")
      ->delimiter(',');
  c->add_option("--mc-shots", o->mc_shots, "Numbers of solved examples before each item, e.g. 0,5")
      ->delimiter(',')
      ->capture_default_str();
  c->callback([o]() {
    const int rc = run_extend_command(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
