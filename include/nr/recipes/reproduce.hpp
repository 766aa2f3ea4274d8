// nr/recipes/reproduce.hpp — run the experiments behind one of the paper's tables (tables.hpp)
// and write it: what `nrlab reproduce TABLE` does, without printing.
//
// 1. The corpus must exist (`nrlab corpus`); its multiple-choice items (CORPUS/mc) are built by
//    ReproduceOptions::build_mc_items when missing (the corpus tooling is an application).
// 2. Each backbone the table needs is pretrained once into RUNS/backbone-{en,ml} (reused when
//    its results.json shows a finished run of the preset) and evaluated once (eval.json: BPB of
//    en, en-ood, fr, de; multiple choice when the table has tasks).
// 3. Every run of the table is executed in-process by run_extend (extend.hpp) into
//    RUNS/ext/<run id>: finished runs are reused (also across tables), interrupted ones resume
//    from their training state.
// 4. Runs whose cells show their divergence from the backbone (table 2's "EN KL", metric kl:D)
//    get it in results.json "divergence" by loading the run and its backbone (once per table).
// 5. RUNS/<table>/ receives results.md, results.csv, results.json, curves.svg (training loss of
//    every run), figure1.svg (tables 2 and 8), figure3.svg (gate_proj spectra) and, for a preset
//    with a sample prompt, generations.md (the prompt continued greedily by every model).
// RUNS is runs / PRESET; overridden preset numbers make the preset "custom" (RUNS = runs/custom);
// another precision or seed adds "-<precision>" / "-seed<N>" to the name (runs/smol-seed2).
//
// With a pretrained backbone (ReproduceOptions::backbone, or the preset's), nothing is
// pretrained: RUNS/backbone-en holds the evaluation of that model (eval.json, with its path) and
// every run extends it, with its tokenizer; tables that need the multilingual backbone are refused.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "nr/data/domain.hpp"
#include "nr/eval/generate.hpp"
#include "nr/io/safetensors.hpp"
#include "nr/recipes/downstream.hpp"
#include "nr/recipes/evaluate.hpp"
#include "nr/recipes/extend.hpp"
#include "nr/recipes/load.hpp"
#include "nr/recipes/pretrain.hpp"
#include "nr/recipes/tables.hpp"

namespace nr::recipes {

struct ReproduceOptions {
  std::string preset = "quick", corpus = "cache/corpus", runs = "runs";
  bool extra_methods = false;  // table 2 also runs gated-sigmoid, experts, migu-finetune and migu-lora
  std::vector<double> table2_p = {0.0, 0.1};  // table 2's mix rates (its column pairs)
  std::string backbone = "";   // a pretrained English model to extend (GGUF / HF / nr; empty: the preset's)
  std::optional<int64_t> ctx = std::nullopt;  // override of the window (a custom preset)
  // Override of the training precision (fp32, bf16, auto; empty: the preset's). Runs go to
  // RUNS/<preset>-<precision>, so that runs of two precisions never mix.
  std::string precision = "";
  // Seed of every extension run (initialisation and data order, seeds.hpp); another seed than 1
  // puts the runs into RUNS/<preset>-seed<N>, so that a table's noise can be measured.
  uint64_t seed = 1;
  // Overrides of the preset (0 / negative: the preset's); any of them makes the preset "custom"
  // (runs in RUNS/custom), so that they never mix with the runs of a named preset.
  int64_t pretrain_steps = 0, steps = 0, batch = 0, eval_tokens = -1, mc_items = 0;
  // Builds CORPUS/mc when it is missing (the corpus tooling); empty: a missing CORPUS/mc is an error.
  std::function<void(const std::filesystem::path& corpus)> build_mc_items;
  bool show_progress = false;              // training progress lines on stderr
  const std::atomic<int>* stop = nullptr;  // non-zero: save and stop after the current step
  MessageFn on_message;                    // one line per stage
};

// What reproduce_table produced.
struct TableOutcome {
  int status = 0;                    // 0, or 128 + signal when stopped (the same call resumes)
  std::string markdown;              // results.md
  std::string chance;                // "en 25.0% fr 25.0% " for tables with tasks
  std::string generations;           // generations.md (presets with a sample prompt)
  std::filesystem::path out;         // RUNS/<table>
  std::vector<std::string> written;  // the files written into `out`
  RunnerOutcome runner;
  double seconds = 0.0;
};

// Where scripts/fetch_model.sh puts a model it fetched: $NR_CACHE, else $XDG_CACHE_HOME/nr,
// else ~/.cache/nr, then models/<file>. Known names: smollm2. Any other value is a path.
inline std::filesystem::path fetched_model_path(const std::string& name_or_path) {
  if (name_or_path != "smollm2") return name_or_path;
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v != nullptr ? v : "";
  };
  std::filesystem::path cache = env("NR_CACHE");
  if (cache.empty()) cache = !env("XDG_CACHE_HOME").empty() ? std::filesystem::path(env("XDG_CACHE_HOME")) / "nr"
                                                           : std::filesystem::path(env("HOME")) / ".cache" / "nr";
  const std::filesystem::path file = cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(file))
    throw IoError(fmt::format("{} is missing: fetch the model with `scripts/fetch_model.sh smollm2`", file.string()));
  return file;
}

// The preset of `o` (the named one, or "custom" with the overrides).
inline Preset effective_preset(const ReproduceOptions& o) {
  Preset preset = preset_named(o.preset);
  if (!o.backbone.empty() && o.backbone != preset.backbone) {
    preset.name = "custom";
    preset.backbone = o.backbone;
  }
  if (o.ctx && *o.ctx != preset.ctx) {
    preset.name = "custom";
    preset.ctx = *o.ctx;
  }
  if (o.pretrain_steps > 0 || o.steps > 0 || o.batch > 0 || o.eval_tokens >= 0 || o.mc_items > 0) {
    preset.name = "custom";
    if (o.pretrain_steps > 0) preset.pretrain_steps = o.pretrain_steps;
    if (o.steps > 0) preset.steps = o.steps;
    if (o.batch > 0) preset.batch = preset.pretrain_batch = o.batch;
    if (o.eval_tokens >= 0) preset.eval_tokens = o.eval_tokens;
    if (o.mc_items > 0) preset.mc_items = o.mc_items;
    preset.save_every = std::min(preset.save_every, preset.steps);
  }
  if (!o.precision.empty() && o.precision != preset.precision) {
    resolve_precision(o.precision);  // refuses an unknown value
    preset.name += "-" + o.precision;
    preset.precision = o.precision;
  }
  if (o.seed != 1) preset.name += fmt::format("-seed{}", o.seed);
  return preset;
}

// The table `name` as these options define it.
inline TableSpec table_of(const std::string& name, const ReproduceOptions& o) {
  return table_spec(name, o.extra_methods, effective_preset(o).base_lr, o.table2_p);
}

// What every run of a preset evaluates.
inline std::vector<std::string> backbone_eval_domains() { return {"en", "en-ood", "fr", "de"}; }

// The model a table's backbone `bb` is: the preset's pretrained model, or RUNS/backbone-<bb>.
inline std::filesystem::path backbone_path(const std::string& bb, const Preset& preset, const std::filesystem::path& root) {
  if (!preset.backbone.empty() && bb == "en") return fetched_model_path(preset.backbone);
  return root / backbone_id(bb);
}

// The window of the preset's runs and evaluations for a model of this config.
inline int64_t run_window(const Preset& preset, const ModelConfig& config) {
  return resolve_window(preset.ctx > 0 ? std::optional<int64_t>(preset.ctx) : std::nullopt, config, "the preset's ctx");
}

// Pretrains RUNS/backbone-<bb> unless finished. Returns 0, or 128 + signal when stopped.
inline int ensure_backbone(const std::string& bb, const Preset& preset, const ReproduceOptions& o, const std::filesystem::path& root) {
  const std::filesystem::path dir = root / backbone_id(bb);
  if (!preset.backbone.empty()) {  // a pretrained model: nothing to train
    if (bb != "en")
      throw ValueError(fmt::format("this table needs the multilingual backbone '{}', which only pretraining makes; with "
                                   "the pretrained backbone {} run the tables of the English backbone (1, 2, 3, 6, 7, 8)",
                                   bb, preset.backbone));
    message(o.on_message, fmt::format("[reproduce] backbone {}: the pretrained model {}", bb,
                                      fetched_model_path(preset.backbone).string()));
    return 0;
  }
  if (std::filesystem::exists(dir / "results.json")) {
    const nlohmann::json j = nlohmann::json::parse(read_file(dir / "results.json"));
    if (j.value("steps", int64_t{-1}) != preset.pretrain_steps || j.value("batch", int64_t{-1}) != preset.pretrain_batch ||
        j.value("preset", std::string()) != preset.model)
      throw ValueError(fmt::format("{} holds a backbone of {} steps x batch {} ({}), not the preset's {} x {} ({}): "
                                       "delete it or give another --runs", dir.string(), j.value("steps", int64_t{-1}),
                                       j.value("batch", int64_t{-1}), j.value("preset", std::string("?")),
                                       preset.pretrain_steps, preset.pretrain_batch, preset.model));
    message(o.on_message, fmt::format("[reproduce] backbone {}: finished, reusing {}", bb, dir.string()));
    return 0;
  }
  PretrainOptions p;
  p.corpus = o.corpus;
  p.domain = bb == "en" ? "en" : preset.multilingual;
  p.preset = preset.model;
  p.steps = preset.pretrain_steps;
  p.batch = preset.pretrain_batch;
  p.lr = preset.pretrain_lr;
  p.eval_tokens = preset.eval_tokens;
  p.save_every = preset.save_every;
  p.log_every = preset.log_every;
  p.show_progress = o.show_progress;
  p.stop = o.stop;
  p.on_message = o.on_message;
  p.out = dir.string();
  p.label = "pretrain " + backbone_id(bb);
  message(o.on_message, fmt::format("[reproduce] backbone {}: {} {} ({} steps x {} sequences{}) into {}", bb,
                                    has_training_state(dir) ? "resuming the pretraining of" : "pretraining",
                                    preset.model, preset.pretrain_steps, preset.pretrain_batch,
                                    bb == "en" ? ", English" : ", " + preset.multilingual, dir.string()));
  return run_pretrain(p);
}

// RUNS/backbone-<bb>/eval.json: BPB of the evaluation domains and, with `tasks`, the
// multiple-choice results; computed once per preset (again only when something is missing).
inline nlohmann::json backbone_eval(const std::string& bb, const Preset& preset, const ReproduceOptions& o,
                                    const std::filesystem::path& root, bool tasks) {
  const std::filesystem::path dir = root / backbone_id(bb), file = dir / "eval.json";
  const std::filesystem::path model_path = backbone_path(bb, preset, root);
  nlohmann::json j = std::filesystem::exists(file) ? nlohmann::json::parse(read_file(file)) : nlohmann::json::object();
  if (j.value("model", model_path.string()) != model_path.string()) j = nlohmann::json::object();  // another model
  const bool have_bpb = j.value("eval_tokens", int64_t{-1}) == preset.eval_tokens && j.contains("valid_bpb");
  const bool have_mc = !tasks || (j.contains("mc") && j.value("mc_items", int64_t{-1}) == preset.mc_items &&
                                  j.value("mc_shots", std::vector<int>{}) == preset.mc_shots);
  if (have_bpb && have_mc) return j;
  message(o.on_message, fmt::format("[reproduce] evaluating backbone {}{}", bb, have_bpb ? "" : " (BPB)"));
  const AnyTokenizer tokenizer = model_tokenizer(model_path);
  with_loaded_model(model_path, "", [&](auto& model, const LoadedInfo& info) {
    const int64_t ctx = run_window(preset, info.config);
    if (!have_bpb) {
      std::vector<ValidSet> sets = load_valid_sets(o.corpus, preset.eval_tokens, tokenizer);
      const std::vector<std::string> keep = backbone_eval_domains();
      std::erase_if(sets, [&](const ValidSet& v) { return std::find(keep.begin(), keep.end(), v.name) == keep.end(); });
      const auto t0 = std::chrono::steady_clock::now();
      std::map<std::string, int64_t> predicted;
      j["valid_bpb"] = evaluate_domains(model, sets, ctx, 16, "", "", nullptr, &predicted, tokenizer);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int64_t tokens = 0;
      for (const auto& [name, n] : predicted) tokens += n;
      j["eval_tokens"] = preset.eval_tokens;
      j["ctx"] = ctx;
      if (!preset.backbone.empty() && seconds > 0.0)  // forward only: about a third of a training step's rate
        j["tokens_per_second"] = static_cast<double>(tokens) / seconds / 3.0;
    }
    if (!have_mc) {
      message(o.on_message, fmt::format("[reproduce] multiple choice of backbone {}: {} items x {} languages", bb,
                                        preset.mc_items, mc_languages().size()));
      j["mc"] = evaluate_mc(model, load_mc_items(std::filesystem::path(o.corpus) / mc_dir_name, mc_languages(), preset.mc_items),
                            preset.mc_shots, ctx, tokenizer);
      j["mc_items"] = preset.mc_items;
      j["mc_shots"] = preset.mc_shots;
    }
    return 0;
  });
  j["model"] = model_path.string();
  if (preset.backbone.empty()) {
    const nlohmann::json pre = nlohmann::json::parse(read_file(dir / "results.json"));
    j["pretrain_steps"] = pre.value("steps", int64_t{0});
    j["pretrain_batch"] = pre.value("batch", int64_t{0});
    j["mixture"] = pre.value("mixture", nlohmann::json());
    for (const char* key : {"train_seconds", "tokens_per_second", "parameters"})
      if (pre.contains(key)) j[key] = pre[key];
  }
  std::filesystem::create_directories(dir);
  write_file_atomic(file, j.dump(2) + "\n");
  return j;
}

// Adds the multiple-choice results to a finished run that lacks them (a run first made for a
// table without tasks), by loading its checkpoint.
inline void complete_mc(const RunSpec& r, const Preset& preset, const ReproduceOptions& o, const std::filesystem::path& dir,
                        nlohmann::json& results) {
  if (results.contains("mc") && results.value("mc_items", int64_t{-1}) == preset.mc_items &&
      results.value("mc_shots", std::vector<int>{}) == preset.mc_shots)
    return;
  message(o.on_message, fmt::format("[reproduce] multiple choice of {} ({} items x 2 languages)", r.id, preset.mc_items));
  const AnyTokenizer tokenizer = model_tokenizer(dir);
  with_loaded_model(dir, "", [&](auto& model, const LoadedInfo& info) {
    results["mc"] = evaluate_mc(model, load_mc_items(std::filesystem::path(o.corpus) / mc_dir_name, {"en", r.new_domain}, preset.mc_items),
                                preset.mc_shots, run_window(preset, info.config), tokenizer);
    return 0;
  });
  results["mc_items"] = preset.mc_items;
  results["mc_shots"] = preset.mc_shots;
  write_file_atomic(dir / "results.json", results.dump(2) + "\n");
}

// The domains of the table's "kl:D" cells for run `id` (the divergence it needs).
inline std::vector<std::string> divergence_domains(const TableSpec& t, const std::string& id) {
  std::vector<std::string> d;
  for (const Row& row : t.rows)
    for (const Cell& c : row.cells)
      if (c.run == id && c.metric.rfind("kl:", 0) == 0 && std::find(d.begin(), d.end(), c.metric.substr(3)) == d.end())
        d.push_back(c.metric.substr(3));
  return d;
}

// Adds to a finished run the divergence of its predictions from its backbone's on `domains`
// (results.json "divergence", eval/divergence.hpp) by loading it, unless it is there for the
// preset's evaluation size. `backbone` is loaded on first use and kept for the next runs.
inline void complete_divergence(const RunSpec& r, const std::vector<std::string>& domains, const Preset& preset,
                                const ReproduceOptions& o, const std::filesystem::path& root,
                                const std::filesystem::path& dir, nlohmann::json& results, ModelFunction& backbone) {
  if (domains.empty()) return;
  const bool same_size = results.value("divergence_eval_tokens", int64_t{-2}) == preset.eval_tokens;
  if (same_size && std::all_of(domains.begin(), domains.end(), [&](const std::string& d) {
        return metric_value(results, "kl:" + d).has_value();
      }))
    return;
  message(o.on_message, fmt::format("[reproduce] divergence of {} from its backbone on {}", r.id, fmt::join(domains, ", ")));
  if (!backbone.forward) backbone = load_model_function(backbone_path(r.backbone, preset, root));
  const AnyTokenizer tokenizer = model_tokenizer(dir);
  check_same_tokenizer(tokenizer, backbone, dir.string());
  std::vector<ValidSet> sets = load_valid_sets(o.corpus, preset.eval_tokens, tokenizer);
  std::erase_if(sets, [&](const ValidSet& v) { return std::find(domains.begin(), domains.end(), v.name) == domains.end(); });
  if (sets.size() != domains.size())
    throw IoError(fmt::format("{}: the corpus lacks one of the domains {}", o.corpus, fmt::join(domains, ", ")));
  if (!same_size) results["divergence"] = nlohmann::json::object();
  with_loaded_model(dir, "", [&](auto& model, const LoadedInfo& info) {
    const int64_t ctx = run_window(preset, info.config);
    for (const ValidSet& v : sets)
      results["divergence"][v.name] = divergence_json(
          divergence_with([&model](const Indices& ids) { return model(ids); }, backbone.forward, tokenizer, v.tokens, ctx, 16));
    return 0;
  });
  results["divergence_eval_tokens"] = preset.eval_tokens;
  write_file_atomic(dir / "results.json", results.dump(2) + "\n");
}

inline ExtendOptions extend_options(const RunSpec& r, const Preset& preset, const ReproduceOptions& o,
                                    const std::filesystem::path& root, const std::filesystem::path& dir, bool tasks, size_t k, size_t n) {
  ExtendOptions e;
  e.checkpoint = backbone_path(r.backbone, preset, root).string();
  if (preset.ctx > 0) e.ctx = preset.ctx;
  e.corpus = o.corpus;
  e.new_domain = r.new_domain;
  e.mix = "en-mix";
  e.p = r.p;
  e.spec = run_extension_spec(r);
  e.lr = r.lr;
  e.steps = preset.steps;
  e.batch = preset.batch;
  e.eval_tokens = preset.eval_tokens;
  e.eval_domains = {"en", "en-ood", r.new_domain};
  e.eval_initial = false;  // the backbone is evaluated once, in eval.json
  e.precision = preset.precision;
  e.seed = o.seed;
  e.save_every = preset.save_every;
  e.log_every = preset.log_every;
  e.show_progress = o.show_progress;
  e.stop = o.stop;
  e.on_message = o.on_message;
  if (tasks) {
    e.mc_items = preset.mc_items;
    e.mc_langs = {"en", r.new_domain};
    e.mc_shots = preset.mc_shots;
  }
  e.label = fmt::format("{}/{} {} p={}", k, n, r.method, num(r.p));
  e.out = dir.string();
  return e;
}

// Figure 3 from the finished runs flagged figure3 and the backbone: the spectrum of each run's
// W_gate, and of its update W_gate - W_gate at initialisation (initial_extension_weights). After
// a short run the first is mostly the initialisation (a random matrix); the second shows what
// training did, which is what the paper's colinearity argument is about.
inline void write_figure3(const TableSpec& t, const Preset& preset, const std::filesystem::path& root,
                          const RunnerOutcome& outcome, const std::filesystem::path& file) {
  std::map<std::string, std::map<int64_t, std::vector<double>>> spectra;
  std::vector<std::string> order, updates;
  const PretrainedModel backbone = load_pretrained(backbone_path(t.backbones.front(), preset, root));
  const std::vector<int64_t> layers = figure3_layers(backbone.config.num_hidden_layers);
  auto gate_name = [](int64_t l) { return fmt::format("model.layers.{}.adapter.gate_proj.weight", l); };
  std::set<std::string> names;
  for (int64_t l : layers) names.insert(gate_name(l));
  for (const RunSpec& r : t.runs) {
    if (!r.figure3 || r.backbone != t.backbones.front() || !outcome.results.count(r.id)) continue;
    const SafetensorsFile st = load_safetensors(run_dir(root, r.id) / model_file_name);
    const std::map<std::string, Tensor> initial = initial_extension_weights(run_dir(root, r.id), names);
    const std::string label = method_label(r.method), update = label + ": update W - W0";
    for (int64_t l : layers) {
      const Tensor w = st.get(gate_name(l)).contiguous();
      Tensor d = initial.at(gate_name(l)).contiguous().clone();
      if (!(d.shape() == w.shape()))
        throw IoError(fmt::format("{}: '{}' has shape {}, its initialisation {}", run_dir(root, r.id).string(),
                                  gate_name(l), w.shape().str(), d.shape().str()));
      for (int64_t i = 0; i < d.numel(); ++i) d.data()[i] = w.data()[i] - d.data()[i];
      spectra[label][l] = normalized_singular_values(w);
      spectra[update][l] = normalized_singular_values(d);
    }
    order.push_back(label);
    updates.push_back(update);
  }
  if (order.empty()) return;
  order.insert(order.end(), updates.begin(), updates.end());
  for (int64_t l : layers) {
    const std::string name = fmt::format("model.layers.{}.mlp.gate_proj.weight", l);
    const auto it = backbone.tensors.find(name);
    if (it == backbone.tensors.end()) throw IoError(fmt::format("{}: tensor '{}' is missing", backbone.source, name));
    spectra["Backbone"][l] = normalized_singular_values(it->second);
  }
  order.push_back("Backbone");
  write_file_atomic(file, figure3(spectra, order, layers));
}

inline void write_curves(const TableSpec& t, const std::filesystem::path& root, const RunnerOutcome& outcome, const std::filesystem::path& file) {
  SvgPlot plot;
  plot.title = fmt::format("Training loss ({}; mean over 10 steps)", t.name);
  plot.xlabel = "step";
  plot.ylabel = "loss (nats per byte)";
  plot.width = 900;
  const std::map<std::string, std::string> labels = run_labels(t.runs);
  for (const RunSpec& r : t.runs) {
    const std::filesystem::path log = run_dir(root, r.id) / "train_log.jsonl";
    if (!outcome.results.count(r.id) || !std::filesystem::exists(log)) continue;
    plot.series.push_back(SvgSeries{.label = labels.at(r.id),
                                        .points = loss_curve(read_file(log)), .line = true, .markers = false,
                                        .color = ""});
  }
  write_file_atomic(file, plot.render());
}

// The greedy continuation of the preset's sample prompt by the model in `model` (a checkpoint, a
// GGUF file or a Hugging Face directory), cached in `cache` (JSON) for the same prompt and length.
inline std::string sample_continuation(const std::filesystem::path& model, const Preset& preset,
                                       const std::filesystem::path& cache) {
  if (std::filesystem::exists(cache)) {
    const nlohmann::json j = nlohmann::json::parse(read_file(cache), nullptr, false);
    if (j.is_object() && j.value("prompt", "") == preset.sample_prompt &&
        j.value("max_new_tokens", int64_t{-1}) == preset.sample_tokens && j.contains("text"))
      return j.value("text", "");
  }
  const AnyTokenizer tokenizer = model_tokenizer(model);
  const GenerateOptions g{.max_new_tokens = preset.sample_tokens, .temperature = 0.0};
  std::string text;
  with_loaded_model(model, "", [&](auto& m, const LoadedInfo&) {
    text = generate(m, tokenizer, preset.sample_prompt, g).text;
    return 0;
  });
  write_file_atomic(cache, nlohmann::json{{"prompt", preset.sample_prompt}, {"max_new_tokens", preset.sample_tokens},
                                          {"greedy", true}, {"text", text}}.dump(2) + "\n");
  return text;
}

// RUNS/<table>/generations.md: the sample prompt continued by the backbone and by every finished
// run of the table, one row each (newlines shown as ⏎, so that a row stays a row).
inline std::string format_generations(const TableSpec& t, const Preset& preset, const std::filesystem::path& root,
                                      const RunnerOutcome& outcome, const MessageFn& on_message) {
  auto cell = [](const std::string& s) {
    std::string line;
    for (char c : s) {
      if (c == '\n') line += " ⏎ ";
      else if (c != '\r') line += c;
    }
    return markdown_escape(line);
  };
  message(on_message, fmt::format("[reproduce] greedy continuations of \"{}\" ({} tokens)", preset.sample_prompt,
                                  preset.sample_tokens));
  std::string md = fmt::format("Greedy continuations ({} tokens) of the prompt \"{}\"\n\n| Model | Continuation |\n|---|---|\n",
                               preset.sample_tokens, preset.sample_prompt);
  const std::string bb = t.backbones.front();
  md += fmt::format("| Backbone | {} |\n", cell(sample_continuation(backbone_path(bb, preset, root), preset,
                                                                    root / backbone_id(bb) / "generation.json")));
  const std::map<std::string, std::string> labels = run_labels(t.runs);
  for (const RunSpec& r : t.runs) {
    if (!outcome.results.count(r.id)) continue;
    const std::filesystem::path dir = run_dir(root, r.id);
    md += fmt::format("| {} | {} |\n", labels.at(r.id), cell(sample_continuation(dir, preset, dir / "generation.json")));
  }
  return md;
}

// One table: backbones, runs, outputs (RUNS/<table>/...).
inline TableOutcome reproduce_table(const std::string& name, const ReproduceOptions& o) {
  const Preset preset = effective_preset(o);
  const TableSpec t = table_of(name, o);
  const std::filesystem::path root = std::filesystem::path(o.runs) / preset.name;
  TableOutcome result;
  list_domains(o.corpus);  // a clear error when there is no corpus
  if (!has_mc_items(o.corpus)) {
    if (!o.build_mc_items)
      throw IoError(fmt::format("{} has no multiple-choice items ({}); build them with `nrlab corpus`", o.corpus,
                                (std::filesystem::path(o.corpus) / mc_dir_name).string()));
    message(o.on_message, fmt::format("[reproduce] building the multiple-choice items into {}",
                                      (std::filesystem::path(o.corpus) / mc_dir_name).string()));
    o.build_mc_items(o.corpus);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const bool pretrained = !preset.backbone.empty();
  const int64_t ctx = run_window(preset, pretrained ? load_pretrained(backbone_path("en", preset, root)).config
                                                     : nr::preset(preset.model));
  const char* unit = pretrained ? "tokens" : "bytes";
  size_t todo = 0;
  for (const RunSpec& r : t.runs) todo += run_state(run_dir(root, r.id)) != RunState::finished;
  const std::string backbones =
      pretrained ? fmt::format("the pretrained backbone {}", backbone_path("en", preset, root).string())
                 : fmt::format("{} backbone(s) ({}, {} pretraining steps x {} x {} bytes)", t.backbones.size(),
                               preset.model, preset.pretrain_steps, preset.pretrain_batch, ctx);
  message(o.on_message, fmt::format(
             "[reproduce] {}\n[reproduce] preset {}: {}, {} runs of {} steps x {} x {} {} ({} to run), BPB on {} {} per "
             "domain{}; runs in {}",
             t.title, preset.name, backbones, t.runs.size(), preset.steps, preset.batch, ctx, unit, todo,
             preset.eval_tokens, unit, t.tasks ? fmt::format(", {} multiple-choice items per language", preset.mc_items) : "",
             root.string()));

  std::map<std::string, nlohmann::json> results;
  double tokens_per_second = 0.0;
  for (const std::string& bb : t.backbones) {
    if (const int rc = ensure_backbone(bb, preset, o, root); rc != 0) {
      result.status = rc;
      return result;
    }
    results[backbone_id(bb)] = backbone_eval(bb, preset, o, root, t.tasks);
    tokens_per_second = std::max(tokens_per_second, results[backbone_id(bb)].value("tokens_per_second", 0.0));
  }

  RunnerOptions ro;
  ro.label = "reproduce " + t.name;
  ro.log = [&](const std::string& line) { message(o.on_message, line); };
  if (tokens_per_second > 0.0) {
    // Training tokens, the evaluations (forward only: about a third of a training step's cost).
    const double tokens = static_cast<double>(preset.steps * preset.batch * ctx) +
                          (preset.eval_tokens > 0 ? static_cast<double>(preset.eval_tokens) : 300000.0) +
                          (t.tasks ? 2.0 * static_cast<double>(preset.mc_items) * 4.0 * static_cast<double>(ctx) / 3.0 : 0.0);
    ro.estimate_seconds = tokens / tokens_per_second;
  }
  const RunnerOutcome outcome = run_table(t.runs, root, preset, [&](const RunSpec& r, const std::filesystem::path& dir, size_t k, size_t n) {
    return run_extend(extend_options(r, preset, o, root, dir, t.tasks, k, n));
  }, ro);
  result.runner = outcome;
  if (outcome.stopped) {
    result.status = outcome.rc;
    return result;
  }
  for (const auto& [id, j] : outcome.results) results[id] = j;
  if (t.tasks)
    for (const RunSpec& r : t.runs) complete_mc(r, preset, o, run_dir(root, r.id), results[r.id]);
  ModelFunction backbone;  // loaded by the first run that needs its divergence
  for (const RunSpec& r : t.runs)
    if (results.count(r.id))
      complete_divergence(r, divergence_domains(t, r.id), preset, o, root, run_dir(root, r.id), results[r.id], backbone);

  const std::filesystem::path out = root / t.name;
  std::filesystem::create_directories(out);
  const std::string md = format_markdown(t, results);
  write_file_atomic(out / "results.md", md);
  write_file_atomic(out / "results.csv", format_csv(t, results));
  write_file_atomic(out / "results.json", table_json(t, preset, results).dump(2) + "\n");
  std::vector<std::string> written = {"results.md", "results.csv", "results.json"};
  write_curves(t, root, outcome, out / "curves.svg");
  written.push_back("curves.svg");
  if (!t.figure1.empty()) {
    // Beside the BPB panel, where the table has it, the same runs against how far English moved.
    const bool has_kl = std::any_of(t.rows.begin(), t.rows.end(), [](const Row& row) {
      return std::any_of(row.cells.begin(), row.cells.end(), [](const Cell& c) { return c.metric == "kl:en-ood"; });
    });
    write_file_atomic(out / "figure1.svg", has_kl ? side_by_side({figure1(t, results), figure1(t, results, "kl:en-ood")})
                                                  : figure1(t, results).render());
    written.push_back("figure1.svg");
  }
  if (std::any_of(t.runs.begin(), t.runs.end(), [](const RunSpec& r) { return r.figure3; })) {
    write_figure3(t, preset, root, outcome, out / "figure3.svg");
    if (std::filesystem::exists(out / "figure3.svg")) written.push_back("figure3.svg");
  }
  if (!preset.sample_prompt.empty()) {
    result.generations = format_generations(t, preset, root, outcome, o.on_message);
    write_file_atomic(out / "generations.md", result.generations);
    written.push_back("generations.md");
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string chance;
  if (t.tasks) {
    const nlohmann::json& b = results[backbone_id("en")];
    for (const std::string& lang : {std::string("en"), t.new_domain})
      if (const auto c = metric_value(b, "chance:" + lang)) chance += fmt::format("{} {:.1f}% ", lang, *c);
  }
  result.markdown = md;
  result.chance = chance;
  result.out = out;
  result.written = written;
  result.seconds = seconds;
  return result;
}

}  // namespace nr::recipes
