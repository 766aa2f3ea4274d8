// nr/recipes/extend.hpp — the extend run: teach a pretrained backbone a new domain with one of the
// registered methods (registry.hpp), on a mixture of the new domain and original-like data, then
// evaluate it. What `nrlab extend` runs, callable from any program; it prints nothing (messages
// go to ExtendOptions::on_message, the training loop's progress lines to stderr only with
// show_progress).
//
//   nr::recipes::ExtendOptions o{.checkpoint = "runs/quick/backbone-en", .corpus = "cache/corpus",
//                                .new_domain = "fr", .out = "runs/neutral"};
//   o.spec.method = "neutral";
//   nlohmann::json results;
//   nr::recipes::run_extend(o, &results);      // 0 when finished; results.json's content
//
// Each sequence is drawn from the new domain with probability 1 - p and from the mix domain with
// probability p; mix sequences are flagged original (ForwardContext::original = 1), which is what
// the local losses of gated adapters read. OUT receives the full extended model
// (model.safetensors + config.json with the method under "nr"), the extension alone
// (adapter_model.safetensors + adapter_config.json, unless the method trains the backbone), the
// training state (resumable), train_log.jsonl and results.json (BPB of every domain before and
// after, the method and every hyper-parameter; with mc_items, the multiple-choice accuracy).
// steps = 0 saves and evaluates the freshly initialised extension (identity at initialisation).
//
// The backbone is any model load.hpp knows: an nr backbone (byte-level), a GGUF file or a Hugging
// Face directory (trained with its own tokenizer). The corpus is tokenised with the model's
// tokenizer once and cached next to the text (data/domain_tokens.hpp); bits per byte divide by
// the predicted tokens' UTF-8 bytes, so the before / after figures are comparable across
// tokenizers. The window is `ctx` tokens (default: the model's context, at most 1,024).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/backend/cpu/threads.hpp"
#include "nr/data/domain_tokens.hpp"
#include "nr/data/sampler.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/insert_experts.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/optim/adamw.hpp"
#include "nr/optim/gradient_mask.hpp"
#include "nr/recipes/downstream.hpp"
#include "nr/recipes/evaluate.hpp"
#include "nr/recipes/load.hpp"
#include "nr/recipes/models.hpp"
#include "nr/recipes/registry.hpp"
#include "nr/recipes/run_support.hpp"
#include "nr/train/trainer.hpp"

namespace nr::recipes {

struct ExtendOptions {
  std::string checkpoint, corpus, new_domain, mix = "en-mix", out;
  double p = 0.1;                    // proportion of mix-domain sequences
  std::optional<int64_t> ctx = std::nullopt;  // tokens per sequence, training and evaluation (empty: default_window)
  std::string original_domain = "";  // the backbone's language (empty: its config.json "nr" domain, else en)
  ExtensionSpec spec;                // the method and its settings (empty: the method's defaults)
  std::optional<double> lr;          // peak learning rate (empty: the method's default)
  double weight_decay = 0.1, grad_clip = 1.0, min_lr_ratio = 0.1;
  std::string on_nan = "stop";       // stop | skip-step
  std::string schedule = "cosine";   // cosine | constant
  // Products of the training steps: fp32, bf16 or auto (run_support.hpp resolve_precision).
  // Evaluations always run in FP32, so that BPB compares across precisions.
  std::string precision = "fp32";
  // Recompute each block's activations in the backward instead of keeping them: far less memory
  // for a second forward pass (nn/recompute.hpp); the trained weights are the same.
  bool recompute = false;
  int64_t steps = 300, batch = 16;
  std::optional<int64_t> warmup;     // empty: min(100, steps / 10)
  // eval_tokens: tokens of each valid.txt evaluated (bytes for a byte-level model; 0 = all).
  int64_t log_every = 10, save_every = 100, eval_every = 0, eval_tokens = 100000, eval_batch = 16;
  bool eval_initial = true;          // evaluate the backbone first (results.json "backbone_valid_bpb")
  uint64_t seed = 1;                 // the extension's initialisation and the data order (seeds.hpp)
  std::vector<std::string> eval_domains;  // domains whose valid BPB is measured (empty: every domain)
  // Multiple choice after training: the first mc_items items of CORPUS/mc/<lang>.jsonl for each
  // language of mc_langs (empty: the original and the new domain), with each number of shots.
  int64_t mc_items = 0;
  std::vector<std::string> mc_langs;
  std::vector<int> mc_shots = {0};
  // Run control.
  std::string label;                  // progress-line label (default "extend METHOD")
  bool show_progress = false;         // the training loop's progress lines on stderr
  const std::atomic<int>* stop = nullptr;  // non-zero: save and stop after the current step
  MessageFn on_message;               // one line per stage (start-up, evaluation, resume)
};

// The settings recorded in config.json "nr" and results.json.
// "tokenizer" (the backbone's path, load.hpp model_tokenizer) only for a backbone with its own.
inline nlohmann::json extend_fields(const ExtendOptions& o, const ExtensionSpec& spec, double lr, int64_t warmup,
                                    const std::string& original_domain, int64_t ctx) {
  nlohmann::json j = spec_to_json(spec);
  const std::string tokenizer = tokenizer_source(o.checkpoint);
  if (!tokenizer.empty()) j["tokenizer"] = tokenizer;
  j.update({{"backbone", o.checkpoint}, {"corpus", o.corpus}, {"new", o.new_domain}, {"mix", o.mix}, {"p", o.p},
            {"original_domain", original_domain}, {"lr", lr}, {"steps", o.steps}, {"batch", o.batch}, {"ctx", ctx},
            {"warmup", warmup}, {"schedule", o.schedule}, {"min_lr_ratio", o.min_lr_ratio},
            {"weight_decay", o.weight_decay}, {"grad_clip", o.grad_clip}, {"adam_betas", {0.9, 0.95}},
            {"seed", o.seed}});
  return j;
}

// Refuses to resume a run of another method / shape / data mixture.
inline void check_resumable(const std::filesystem::path& out, const nlohmann::json& fields) {
  const std::filesystem::path file = out / config_file_name;
  if (!std::filesystem::exists(file)) return;
  const ConfigJsonDocument doc = load_config_json_document(file);
  const nlohmann::json saved = doc.json.value("nr", nlohmann::json::object());
  for (const char* key : {"method", "gate", "site", "hidden", "rank", "lora_targets", "alpha", "bce_weight", "experts",
                          "top_k", "route_reg", "concentration", "migu_threshold", "new", "mix", "p", "backbone"}) {
    const nlohmann::json a = saved.value(key, nlohmann::json()), b = fields.value(key, nlohmann::json());
    if (a != b)
      throw ValueError(fmt::format("{} holds a run with {} = {}, not {}: choose another --out or the same options",
                                   out.string(), key, a.dump(), b.dump()));
  }
  if (saved.contains("ctx") && saved["ctx"] != fields.value("ctx", nlohmann::json()))  // runs before --ctx have none
    throw ValueError(fmt::format("{} holds a run with ctx = {}, not {}: choose another --out or the same --ctx",
                                 out.string(), saved["ctx"].dump(), fields.value("ctx", nlohmann::json()).dump()));
}

// The step-0 evaluation a previous start of the run logged ({} when there is none).
inline nlohmann::json initial_eval_from_log(const std::filesystem::path& log_file) {
  if (!std::filesystem::exists(log_file)) return nlohmann::json::object();
  std::istringstream lines(read_file(log_file));
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("step", -1) == 0 && j.contains("eval")) return j["eval"];
  }
  return nlohmann::json::object();
}

// Trains and evaluates `model` (built by build_extended or by insert_experts, with the
// extension freshly initialised and random backbone weights): loads the backbone (from
// *pretrained when given, whose tensors it then releases; else the nr checkpoint o.checkpoint),
// freezes it unless the method trains it, trains, evaluates, writes OUT. `tokenizer` is the
// backbone's. Returns 0, or 128 + the signal when *o.stop stopped it (the same call resumes).
template <class Model>
int extend_model(Model& model, const ModelConfig& config, const ExtensionSpec& spec, const ExtendOptions& o,
                 const std::string& original_domain, nlohmann::json* results_out = nullptr,
                 const nlohmann::json& model_fields = nlohmann::json::object(), const AnyTokenizer& tokenizer = {},
                 PretrainedModel* pretrained = nullptr) {
  namespace fs = std::filesystem;
  if (tokenizer.vocab_size() > config.vocab_size)
    throw ValueError(fmt::format("{}: the tokenizer has {} tokens, more than the model's vocabulary of {}", o.checkpoint,
                                 tokenizer.vocab_size(), config.vocab_size));
  const int64_t ctx = resolve_window(o.ctx, config);
  const MethodInfo& method = method_info(spec.method);
  const fs::path out = o.out;
  // Backbone weights into the extended model; the extension keeps its fresh initialisation.
  const int64_t backbone_params = [&] {
    int64_t n = 0;
    model.visit_parameters([&](const std::string& name, Var& v) {
      if (!is_extension_parameter(name)) n += v.numel();
    }, "");
    return n;
  }();
  if (pretrained) {
    load_backbone_tensors(pretrained->tensors, pretrained->source, model);
    pretrained->tensors.clear();  // the model holds the weights now
  } else {
    load_backbone(o.checkpoint, model);
  }
  const int64_t new_params = count_parameters(model) - backbone_params;
  if (!method.trains_backbone) freeze_backbone(model);
  const int64_t trainable = count_parameters(model, true);
  const double extra_fraction = static_cast<double>(new_params) / static_cast<double>(backbone_params);

  // Data: the new domain, and a proportion p of the mix domain (tag 1, flagged original), as the
  // model's tokens (cached token files for a BPE model).
  const DomainTokens new_train = domain_tokens(o.corpus, o.new_domain, "train", tokenizer);
  std::optional<DomainTokens> mix_train;
  std::vector<MixtureDomain> mixture = {{.name = o.new_domain, .weight = 1.0 - o.p, .ids = new_train.ids()}};
  std::vector<uint8_t> original_of_tag = {0};
  if (o.p > 0.0) {
    mix_train = domain_tokens(o.corpus, o.mix, "train", tokenizer);
    mixture.push_back({.name = o.mix, .weight = o.p, .ids = mix_train->ids()});
    original_of_tag.push_back(1);
  }
  const MixtureSampler sampler(mixture, o.batch, ctx, o.seed, tokenizer);
  std::vector<ValidSet> valid = load_valid_sets(o.corpus, o.eval_tokens, tokenizer);
  if (!o.eval_domains.empty()) {
    for (const std::string& d : o.eval_domains)
      if (std::none_of(valid.begin(), valid.end(), [&](const ValidSet& v) { return v.name == d; }))
        throw ValueError(fmt::format("evaluation domain '{}' is not in the corpus {}", d, o.corpus));
    std::erase_if(valid, [&](const ValidSet& v) {
      return std::find(o.eval_domains.begin(), o.eval_domains.end(), v.name) == o.eval_domains.end();
    });
  }
  std::vector<std::string> mc_langs = o.mc_langs;
  if (mc_langs.empty()) mc_langs = {original_domain, o.new_domain};
  std::map<std::string, std::vector<ChoiceItem>> mc_sets;
  if (o.mc_items > 0) mc_sets = load_mc_items(fs::path(o.corpus) / mc_dir_name, mc_langs, o.mc_items);

  const double lr = o.lr.value_or(method.defaults.lr);
  const int64_t warmup = o.warmup.value_or(default_warmup(o.steps));
  const Precision precision = resolve_precision(o.precision);
  const bool bf16 = bf16_compute(precision);
  nlohmann::json fields = extend_fields(o, spec, lr, warmup, original_domain, ctx);
  fields["precision"] = bf16 ? "bf16" : "fp32";
  fields.update(model_fields);  // a MoE backbone's architecture (models.hpp)
  AdamW opt(named_parameters(model), AdamWConfig{.lr = lr, .beta1 = 0.9, .beta2 = 0.95, .weight_decay = o.weight_decay});
  check_resumable(out, fields);
  // MIGU: the layers record their output magnitudes in the forward pass; before every optimizer
  // step the mask keeps the update of the top (1 - T) rows of each weight only.
  if constexpr (is_migu_model<Model>()) {
    const MiguMask migu(model, spec.migu_config());
    migu.attach(opt);  // the hook shares the mask's state and outlives this object
  }

  TrainLoopOptions loop;
  loop.label = o.label.empty() ? fmt::format("extend {}", spec.method) : o.label;
  loop.steps = o.steps;
  loop.start_step = resume_if_present(out, model, opt, "extend", o.on_message);
  loop.schedule = LrSchedule{.peak = lr, .warmup = warmup, .total = o.steps,
                             .kind = LrSchedule::parse_kind(o.schedule), .min_ratio = o.min_lr_ratio};
  loop.grad_clip = o.grad_clip;
  loop.on_nan = parse_nan_policy(o.on_nan);
  loop.log_every = o.log_every;
  loop.save_every = o.save_every;
  loop.eval_every = o.eval_every;
  loop.original_of_tag = original_of_tag;
  loop.stop = o.stop;
  loop.show_progress = o.show_progress;
  loop.recompute_blocks = o.recompute;
  fs::create_directories(out);
  JsonlLog log((out / "train_log.jsonl").string());
  loop.log = &log;

  const std::string settings = describe(spec);
  message(o.on_message,
          fmt::format("[extend] method {}{}: backbone {} parameters, new {} ({:.2f}% of the backbone), trainable {}; "
                      "lr {:.2e}; {} x {} tokens per step; new '{}' {:.0f}% + mix '{}' {:.0f}%; {} threads; {} products",
                      spec.method, settings.empty() ? "" : " (" + settings + ")", backbone_params, new_params,
                      100.0 * extra_fraction, trainable, lr, o.batch, ctx, o.new_domain, 100.0 * (1.0 - o.p), o.mix,
                      100.0 * o.p, num_threads(), bf16 ? "BF16" : "FP32"));
  if (!tokenizer.ids_are_bytes())
    message(o.on_message, fmt::format("[extend] tokens (vocabulary {}): train '{}' {}{}", tokenizer.vocab_size(),
                                      o.new_domain, new_train.size(),
                                      mix_train ? fmt::format(", '{}' {}", o.mix, mix_train->size()) : std::string()));

  // adapter_config.json: PEFT's fields only for LoRA (PEFT refuses unknown keys in older
  // versions); nr's adapters also record the training settings, which `eval --stats` reads.
  nlohmann::json adapter_config = adapter_file_config(spec, o.checkpoint);
  if (method.family == MethodFamily::adapter || method.family == MethodFamily::experts) adapter_config.update(fields);
  auto save = [&](int64_t step) {
    save_checkpoint(out, model, config, fields, opt, step, {{"method", spec.method}}, [&] {
      if (!method.trains_backbone) save_adapter_file(out, model, adapter_config);
    }, /*trainable_only=*/!method.trains_backbone);
  };
  auto evaluate = [&](nlohmann::json* stats) {
    const PrecisionScope fp32(Precision::fp32);
    return evaluate_domains(model, valid, ctx, o.eval_batch, original_domain, o.new_domain, stats, nullptr, tokenizer);
  };

  nlohmann::json before = nlohmann::json::object();
  if (loop.start_step == 0 && o.eval_initial) {
    message(o.on_message, fmt::format("[extend] evaluating the backbone on {} domains ({} {} each at most)",
                                      valid.size(), o.eval_tokens, tokenizer.ids_are_bytes() ? "bytes" : "tokens"));
    before = evaluate(nullptr);
    log.write({{"step", 0}, {"eval", before}});
  } else {
    before = initial_eval_from_log(out / "train_log.jsonl");  // a resumed run: the first start's figures
  }

  TrainCallbacks callbacks;
  callbacks.save = save;
  // The final evaluation also collects the adapter / new-expert statistics (same forward passes).
  nlohmann::json final_stats;
  callbacks.eval = [&](int64_t step) {
    return evaluate(has_extension_stats<Model>() && step == o.steps ? &final_stats : nullptr);
  };
  const TrainOutcome run = [&] {
    const PrecisionScope scope(precision);
    return train(model, opt, sampler, loop, callbacks);
  }();
  if (run.stopped) return 128 + run.stop_signal;
  if (o.steps == 0) save(0);  // the loop saves after a step only: keep the initialised extension

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
  if (!final_stats.is_null()) result["stats"] = final_stats;
  if (!mc_sets.empty()) {
    message(o.on_message, fmt::format("[extend] multiple-choice evaluation: {} items x {} languages", o.mc_items,
                                      mc_sets.size()));
    const auto t0 = std::chrono::steady_clock::now();
    result["mc"] = evaluate_mc(model, mc_sets, o.mc_shots, ctx, tokenizer);
    result["mc_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result["mc_items"] = o.mc_items;
    result["mc_shots"] = o.mc_shots;
  }
  write_file_atomic(out / "results.json", result.dump(2) + "\n");
  log.write({{"results", result}});
  if (results_out) *results_out = result;
  return 0;
}

// `experts` over a mixture-of-experts backbone: E' new experts of the old experts' width are
// inserted into every expert layer (ModuleFormer Section 4.3, ext/insert_experts.hpp), with extra
// slots: each token keeps its k old experts exactly as routed before and also goes to its top k'
// new experts, weighted by their probability in softmax([A; A'] gelu(W x)) (Eq. 9). The old
// experts, the router's W and A stay frozen; the new experts and A' train, A' under the routing
// regularisation of Eq. 10; `concentration` adds the load-concentration loss of Eq. 8. E'
// defaults to what `extra` pays for: per layer a new expert costs 3 C h + D_emb.
inline int extend_moe_backbone(ExtensionSpec spec, const ModelConfig& config, const nlohmann::json& backbone_nr,
                               const ExtendOptions& o, const std::string& original_domain, nlohmann::json* results,
                               const AnyTokenizer& tokenizer) {
  resolve_defaults(spec);
  if (method_info(spec.method).family != MethodFamily::experts)
    throw ValueError(fmt::format("{} is a mixture-of-experts backbone: extend it with --method experts (new experts "
                                 "inserted into its expert layers), not '{}'", o.checkpoint, spec.method));
  const std::string source = (std::filesystem::path(o.checkpoint) / config_file_name).string();
  MoeArch arch = moe_arch_of(backbone_nr, config, source);
  if (arch.moe.new_experts.count > 0)
    throw ValueError(fmt::format("{} already holds inserted experts; extend the backbone it was trained from",
                                 o.checkpoint));
  arch.moe.mi_weight = 0.0;  // the pretraining loss; fine-tuning uses load concentration
  arch.moe.concentration_weight = spec.concentration.value_or(0.0);
  return with_moe_model(config, arch.moe, arch.attention, o.seed, [&](auto& model) {
    const auto& mlp = model.layers.front().mlp;
    const int64_t h = mlp.hidden();
    if (spec.hidden && *spec.hidden != h)
      throw ValueError(fmt::format("--hidden {}: experts inserted into a mixture-of-experts layer have the width of "
                                   "its experts, {}", *spec.hidden, h));
    spec.hidden = h;
    if (!spec.experts) {
      check_extra_fraction(spec.extra);
      const double per_expert = 3.0 * static_cast<double>(config.hidden_size * h) +
                                static_cast<double>(mlp.router.feature_width());
      const double budget = spec.extra * static_cast<double>(count_parameters(model)) /
                            static_cast<double>(config.num_hidden_layers);
      spec.experts = std::max<int64_t>(1, std::llround(budget / per_expert));
    }
    if (*spec.top_k > *spec.experts)
      throw ValueError(fmt::format("--top-k {} exceeds the {} new experts", *spec.top_k, *spec.experts));
    const NewExpertsConfig cfg{.count = *spec.experts, .routing = NewExpertRouting::extra_slots,
                               .top_k = *spec.top_k, .routing_reg_weight = *spec.route_reg};
    Rng rng(derive_seed(o.seed, SeedStream::inserted_experts));
    insert_experts(model, arch.moe, cfg, rng);
    return extend_model(model, config, spec, o, original_domain, results, moe_fields(arch.attention, arch.moe, config),
                        tokenizer);
  });
}

// Runs one extension (what `nrlab extend` does): opens the backbone (an nr backbone, a GGUF file
// or a Hugging Face directory, load.hpp) and its tokenizer, builds the method's model
// (build_extended, or new experts inserted into a MoE backbone) and calls extend_model. Returns 0
// when the run is complete, with results.json's content in *results when given, or 128 + the
// signal when *o.stop stopped it (the same call resumes it). Errors are thrown as nr::Error.
inline int run_extend(const ExtendOptions& o, nlohmann::json* results = nullptr) {
  if (o.new_domain == o.mix && o.p > 0.0) throw ValueError(fmt::format("--new and --mix are both '{}'", o.new_domain));
  if (o.steps < 0) throw ValueError(fmt::format("steps must be 0 or more, got {}", o.steps));
  resolve_precision(o.precision);  // a bad value is refused before anything loads
  const std::filesystem::path backbone = o.checkpoint;
  ExtensionSpec spec = o.spec;
  if (model_format(backbone) != ModelFormat::nr_checkpoint) {  // a GGUF file or a Hugging Face directory
    PretrainedModel pretrained = load_pretrained(backbone);
    const AnyTokenizer tokenizer = model_tokenizer(backbone);
    const std::string original_domain = o.original_domain.empty() ? "en" : o.original_domain;
    const ModelConfig config = pretrained.config;
    return build_extended(spec, config, o.seed, [&](auto& model) {
      return extend_model(model, config, spec, o, original_domain, results, nlohmann::json::object(), tokenizer,
                          &pretrained);
    });
  }
  const ConfigJsonDocument doc = load_config_json_document(backbone / config_file_name);
  const nlohmann::json backbone_nr = doc.json.value("nr", nlohmann::json::object());
  if (backbone_nr.is_object() && backbone_nr.value("method", "backbone") != "backbone")
    throw ValueError(fmt::format("{} is not a backbone (its config.json says method '{}'); extend the backbone it "
                                 "was trained from", o.checkpoint, backbone_nr.value("method", "")));
  const std::string original_domain = !o.original_domain.empty() ? o.original_domain
                                      : backbone_nr.is_object()  ? backbone_nr.value("domain", "en")
                                                                 : "en";
  const AnyTokenizer tokenizer = model_tokenizer(backbone);
  if (is_moe_checkpoint(backbone_nr))
    return extend_moe_backbone(spec, doc.config, backbone_nr, o, original_domain, results, tokenizer);
  return build_extended(spec, doc.config, o.seed, [&](auto& model) {
    return extend_model(model, doc.config, spec, o, original_domain, results, nlohmann::json::object(), tokenizer);
  });
}

}  // namespace nr::recipes
