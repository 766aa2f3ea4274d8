// nr/recipes/pretrain.hpp — the pretraining run (`nrlab pretrain`): train a backbone from scratch on one domain or on a
// mixture of domains.
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
// pretrains a mixture-of-experts backbone (moe_backbone.hpp): every FFN a sparse mixture of E
// SiLU experts, top k per token, with ModuleFormer's mutual-information load-balancing loss
// (Eq. 6-7, weight --mi-weight) added to the LM loss; the attention is softmax with RoPE or
// stick-breaking (Section 3.2).
#pragma once

#include <cmath>
#include <map>
#include <sstream>
#include <utility>

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/data/domain.hpp"
#include "nr/data/sampler.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/eval/bpb.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/recipes/models.hpp"
#include "nr/recipes/run_support.hpp"
#include "nr/train/trainer.hpp"

namespace nr::recipes {


// "en" -> {{"en", 1}}; "en:0.875,fr:0.0625,de:0.0625" -> the pairs, weights normalised to sum 1.
inline std::vector<std::pair<std::string, double>> parse_domain_mixture(const std::string& text) {
  std::vector<std::pair<std::string, double>> out;
  double total = 0.0;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    std::string name = item.substr(0, colon);
    double w = 1.0;
    if (colon != std::string::npos) {
      const std::string ws = item.substr(colon + 1);
      size_t used = 0;
      try {
        w = std::stod(ws, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != ws.size() || ws.empty() || !(w > 0.0) || !std::isfinite(w))
        throw nr::ValueError(fmt::format("--domain '{}': the weight of '{}' must be a positive number, got '{}'", text,
                                         name, ws));
    }
    if (name.empty()) throw nr::ValueError(fmt::format("--domain '{}': empty domain name", text));
    for (const auto& [n, x] : out)
      if (n == name) throw nr::ValueError(fmt::format("--domain '{}': domain '{}' is listed twice", text, name));
    out.emplace_back(name, w);
    total += w;
  }
  if (out.empty()) throw nr::ValueError(fmt::format("--domain '{}': no domain given", text));
  for (auto& [n, x] : out) x /= total;
  return out;
}

// The domain of largest weight (the first on ties): the backbone's original domain.
inline std::string main_domain(const std::vector<std::pair<std::string, double>>& mixture) {
  size_t best = 0;
  for (size_t i = 1; i < mixture.size(); ++i)
    if (mixture[i].second > mixture[best].second) best = i;
  return mixture[best].first;
}

// Mean LM loss of the first and of the last `n` steps of a train_log.jsonl (a resumed run logs
// some steps twice: the last record of a step counts). NaN when the log holds no step.
inline std::pair<double, double> loss_ends(const std::filesystem::path& log_file, size_t n) {
  std::map<int64_t, double> by_step;
  std::istringstream lines(std::filesystem::exists(log_file) ? nr::read_file(log_file) : std::string());
  for (std::string line; std::getline(lines, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("loss") && j["loss"].is_number() && j.contains("step") && j["step"].is_number_integer())
      by_step[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  if (by_step.empty()) return {std::nan(""), std::nan("")};
  std::vector<double> v;
  for (const auto& [step, loss] : by_step) v.push_back(loss);
  const size_t k = std::min(n, v.size());
  double a = 0.0, b = 0.0;
  for (size_t i = 0; i < k; ++i) {
    a += v[i];
    b += v[v.size() - 1 - i];
  }
  return {a / static_cast<double>(k), b / static_cast<double>(k)};
}

struct PretrainOptions {
  std::string corpus, domain = "en", preset = "nano", out;
  int64_t steps = 300, batch = 16, ctx = 0, warmup = -1, log_every = 10, save_every = 100, eval_every = 0,
          eval_tokens = 200000;
  double lr = 3e-3, weight_decay = 0.1, grad_clip = 1.0, min_lr_ratio = 0.1;
  std::string on_nan = "stop";  // stop | skip-step
  std::string schedule = "cosine";
  uint64_t seed = 1;
  std::string label;        // progress-line label (default "pretrain")
  bool show_progress = false;              // the training loop's progress lines on stderr
  const std::atomic<int>* stop = nullptr;  // non-zero: save and stop after the current step
  MessageFn on_message;                    // one line per stage
  // Architecture: dense (Llama) or moe (moe_backbone.hpp).
  std::string arch = "dense", attention = "softmax";
  int64_t experts = 8, top_k = 2, expert_hidden = 0;
  double mi_weight = 0.01;  // Eq. 7 load balancing (moe)
};

template <class Model, Tokenizer Tok = ByteTokenizer>
int pretrain_model(Model& model, const nr::ModelConfig& config, const PretrainOptions& o, nlohmann::json* results_out,
                   const nlohmann::json& model_fields = nlohmann::json::object(), const Tok& tokenizer = {}) {
  const std::vector<std::pair<std::string, double>> mixture = parse_domain_mixture(o.domain);
  const std::string original = main_domain(mixture);
  // Token vectors first (the sampler points into them), then the sampler.
  std::vector<std::vector<int32_t>> train(mixture.size());
  std::vector<std::vector<int32_t>> valid(mixture.size());
  std::vector<nr::MixtureDomain> domains;
  int64_t train_tokens = 0;
  for (size_t i = 0; i < mixture.size(); ++i) {
    const nr::DomainText text = nr::load_domain(o.corpus, mixture[i].first);
    train[i] = tokenizer.encode(text.train);
    valid[i] = tokenizer.encode(text.valid);
    if (o.eval_tokens > 0 && static_cast<int64_t>(valid[i].size()) > o.eval_tokens)
      valid[i].resize(static_cast<size_t>(o.eval_tokens));
    train_tokens += static_cast<int64_t>(train[i].size());
  }
  for (size_t i = 0; i < mixture.size(); ++i) domains.push_back({mixture[i].first, &train[i], mixture[i].second});
  const int64_t ctx = config.max_position_embeddings;
  const nr::MixtureSampler sampler(domains, o.batch, ctx, o.seed);
  nr::AdamW opt(nr::named_parameters(model), nr::AdamWConfig{.lr = o.lr, .weight_decay = o.weight_decay});

  nr::TrainLoopOptions loop;
  loop.label = o.label.empty() ? "pretrain" : o.label;
  loop.steps = o.steps;
  loop.start_step = resume_if_present(o.out, model, opt, "pretrain", o.on_message);
  loop.schedule = nr::LrSchedule{.peak = o.lr, .warmup = o.warmup >= 0 ? o.warmup : default_warmup(o.steps), .total = o.steps,
                                 .kind = nr::LrSchedule::parse_kind(o.schedule), .min_ratio = o.min_lr_ratio};
  loop.grad_clip = o.grad_clip;
  loop.on_nan = nr::parse_nan_policy(o.on_nan);
  loop.log_every = o.log_every;
  loop.save_every = o.save_every;
  loop.eval_every = o.eval_every;
  loop.stop = o.stop;
  loop.show_progress = o.show_progress;
  std::filesystem::create_directories(o.out);
  nr::JsonlLog log((std::filesystem::path(o.out) / "train_log.jsonl").string());
  loop.log = &log;

  nlohmann::json nr_fields = {{"method", "backbone"}, {"domain", original}, {"seed", o.seed}};
  nr_fields.update(model_fields);
  if (mixture.size() > 1) {
    nlohmann::json m = nlohmann::json::object();
    for (const auto& [name, w] : mixture) m[name] = w;
    nr_fields["mixture"] = m;
  }
  nr::TrainCallbacks callbacks;
  callbacks.save = [&](int64_t step) {
    nr::save_checkpoint(o.out, model, config, nr_fields, opt, step);
  };
  // One domain: {"domain", "valid_bpb", "tokens"}; a mixture adds "valid_bpb_by_domain".
  callbacks.eval = [&](int64_t) {
    nlohmann::json by_domain = nlohmann::json::object();
    nlohmann::json j;
    for (size_t i = 0; i < mixture.size(); ++i) {
      const nr::BpbResult bpb = nr::bits_per_byte(model, valid[i], ctx);
      by_domain[mixture[i].first] = bpb.bpb;
      if (mixture[i].first == original) j = {{"domain", original}, {"valid_bpb", bpb.bpb}, {"tokens", bpb.tokens}};
    }
    if (mixture.size() > 1) j["valid_bpb_by_domain"] = by_domain;
    return j;
  };
  std::string mix_text;
  for (const auto& [name, w] : mixture) mix_text += fmt::format("{}{} {:.1f}%", mix_text.empty() ? "" : ", ", name, 100.0 * w);
  message(o.on_message, fmt::format("[pretrain] {} parameters, {} train tokens ({}), batch {} x ctx {}, {} threads",
                                    nr::count_parameters(model), train_tokens, mix_text, o.batch, ctx, nr::num_threads()));
  const nr::TrainOutcome run = nr::train(model, opt, sampler, loop, callbacks);
  if (run.stopped) return 128 + run.stop_signal;
  nlohmann::json result = run.final_eval;
  result["steps"] = o.steps;
  log.write(result);
  if (run.end_step > run.start_step) result["tokens_per_second"] = run.tokens_per_second();
  // results.json marks a finished backbone (nrlab reproduce reuses it).
  nlohmann::json record = result;
  record.update({{"preset", o.preset}, {"domain", original}, {"mixture", nr_fields.value("mixture", nlohmann::json())},
                 {"batch", o.batch}, {"ctx", ctx}, {"lr", o.lr}, {"seed", o.seed},
                 {"parameters", nr::count_parameters(model)}, {"eval_tokens", o.eval_tokens},
                 {"arch", nr_fields.value("arch", "dense")}, {"final_loss", run.last_loss}});
  const auto [first, last] = loss_ends(std::filesystem::path(o.out) / "train_log.jsonl", 10);
  record["loss_first_steps"] = first;  // mean LM loss of the first 10 steps
  record["loss_last_steps"] = last;    // and of the last 10
  if (nr_fields.contains("moe")) record.update({{"attention", nr_fields["attention"]}, {"moe", nr_fields["moe"]}});
  if (run.end_step > run.start_step) {
    record["train_seconds"] = run.train_seconds;
    record["wall_seconds"] = run.seconds;
  }
  nr::write_file_atomic(std::filesystem::path(o.out) / "results.json", record.dump(2) + "\n");
  if (results_out) *results_out = record;
  return 0;
}

// Runs a pretraining (what `nrlab pretrain` does): 0 when finished (results.json's content in
// *results), or 128 + the signal when *o.stop stopped it (the same call resumes).
template <Tokenizer Tok = ByteTokenizer>
int run_pretrain(const PretrainOptions& o, nlohmann::json* results = nullptr, const Tok& tokenizer = {}) {
  nr::ModelConfig config = nr::preset(o.preset);
  if (o.ctx > 0) config.max_position_embeddings = o.ctx;
  if (nr::has_training_state(o.out) && std::filesystem::exists(std::filesystem::path(o.out) / nr::config_file_name)) {
    const nr::ModelConfig saved = nr::load_config_json(std::filesystem::path(o.out) / nr::config_file_name);
    if (saved.hidden_size != config.hidden_size || saved.num_hidden_layers != config.num_hidden_layers ||
        saved.max_position_embeddings != config.max_position_embeddings)
      throw nr::ValueError(fmt::format("{} holds a checkpoint of another model size; choose another --out or the same --preset",
                                       o.out));
    const nr::ConfigJsonDocument doc = nr::load_config_json_document(std::filesystem::path(o.out) / nr::config_file_name);
    const nlohmann::json saved_nr = doc.json.value("nr", nlohmann::json::object());
    const std::string saved_arch = saved_nr.is_object() ? saved_nr.value("arch", "dense") : "dense";
    if (saved_arch != o.arch)
      throw nr::ValueError(fmt::format("{} holds a checkpoint of architecture '{}', not '{}'; choose another --out or "
                                       "the same --arch", o.out, saved_arch, o.arch));
  }
  if (o.arch == "moe") {
    const nr::MoeConfig moe{.num_experts = o.experts, .top_k = o.top_k, .expert_hidden = o.expert_hidden,
                            .mi_weight = o.mi_weight};
    const nlohmann::json fields = moe_fields(o.attention, moe, config);  // validates
    return with_moe_model(config, moe, o.attention, o.seed,
                          [&](auto& model) { return pretrain_model(model, config, o, results, fields, tokenizer); });
  }
  if (o.arch != "dense") throw nr::ValueError(fmt::format("unknown --arch '{}' (dense, moe)", o.arch));
  if (o.attention != "softmax")
    throw nr::ValueError(fmt::format("--attention {} needs --arch moe (the dense backbone is a Llama)", o.attention));
  return with_model(config, o.seed, [&](auto& model) { return pretrain_model(model, config, o, results, nlohmann::json::object(), tokenizer); });
}

}  // namespace nr::recipes
