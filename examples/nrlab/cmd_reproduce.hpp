// nrlab/cmd_reproduce.hpp — `nrlab reproduce TABLE`: run the experiments behind one of the
// paper's tables at small scale and print it.
//
//   nrlab reproduce table2 --preset quick --corpus cache/corpus     the demo (minutes on 2 cores)
//   nrlab reproduce table2 --extra-methods                          + new experts, MIGU rows
//   nrlab reproduce table8 --preset quick                           Figure 1's curves
//   nrlab reproduce all --preset paper --runs runs                  everything, as big as a CPU allows
//   nrlab reproduce table4 --list                                   the runs and their state
//
// 1. The corpus must exist (`nrlab corpus`); its multiple-choice items (CORPUS/mc) are built
//    when missing.
// 2. Each backbone the table needs is pretrained once into RUNS/backbone-{en,ml} (reused when
//    its results.json shows a finished run of the preset) and evaluated once (eval.json: BPB of
//    en, en-ood, fr, de; multiple choice when the table has tasks).
// 3. Every run of the table (reproduce_tables.hpp) is executed in-process by
//    run_extend_command, the function behind `nrlab extend`, into RUNS/ext/<run id>: finished
//    runs are reused (also across tables), interrupted ones resume from their training state.
//    Ctrl-C stops cleanly after the current step; the same command resumes.
// 4. RUNS/<table>/ receives results.md (printed on stdout too), results.csv, results.json,
//    curves.svg (training loss of every run), figure1.svg (tables 2 and 8) and figure3.svg
//    (gate_proj spectra, tables with adapter runs).
// RUNS is --runs DIR / PRESET (default runs/quick), so the presets never mix; --steps,
// --pretrain-steps, --batch, --eval-tokens and --mc-items override the preset's numbers and put
// the runs into RUNS = DIR/custom.
#pragma once

#include <chrono>
#include <memory>

#include "cmd_extend.hpp"
#include "cmd_pretrain.hpp"
#include "downstream.hpp"
#include "reproduce_tables.hpp"

namespace nrlab {

struct ReproduceOptions {
  std::string table, preset = "quick", corpus = "cache/corpus", runs = "runs";
  int threads = 0;
  bool list = false;
  bool extra_methods = false;  // table 2 also runs experts, migu-finetune and migu-lora
  // Overrides of the preset (0 / negative: the preset's); any of them makes the preset "custom"
  // (runs in RUNS/custom), so that they never mix with the runs of a named preset.
  int64_t pretrain_steps = 0, steps = 0, batch = 0, eval_tokens = -1, mc_items = 0;
};

namespace repro {

// What every run of a preset evaluates.
inline std::vector<std::string> backbone_eval_domains() { return {"en", "en-ood", "fr", "de"}; }

// Pretrains RUNS/backbone-<bb> unless finished. Returns 0, or 128 + signal when stopped.
inline int ensure_backbone(const std::string& bb, const Preset& preset, const ReproduceOptions& o, const fs::path& root) {
  const fs::path dir = root / backbone_id(bb);
  if (fs::exists(dir / "results.json")) {
    const nlohmann::json j = nlohmann::json::parse(nr::read_file(dir / "results.json"));
    if (j.value("steps", int64_t{-1}) != preset.pretrain_steps || j.value("batch", int64_t{-1}) != preset.pretrain_batch ||
        j.value("preset", std::string()) != preset.model)
      throw nr::ValueError(fmt::format("{} holds a backbone of {} steps x batch {} ({}), not the preset's {} x {} ({}): "
                                       "delete it or give another --runs", dir.string(), j.value("steps", int64_t{-1}),
                                       j.value("batch", int64_t{-1}), j.value("preset", std::string("?")),
                                       preset.pretrain_steps, preset.pretrain_batch, preset.model));
    fmt::print(stderr, "[reproduce] backbone {}: finished, reusing {}\n", bb, dir.string());
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
  p.threads = o.threads;
  p.out = dir.string();
  p.label = "pretrain " + backbone_id(bb);
  p.print_json = false;
  fmt::print(stderr, "[reproduce] backbone {}: {} {} ({} steps x {} sequences{}) into {}\n", bb,
             nr::has_training_state(dir) ? "resuming the pretraining of" : "pretraining", preset.model,
             preset.pretrain_steps, preset.pretrain_batch, bb == "en" ? ", English" : ", " + preset.multilingual,
             dir.string());
  return run_pretrain_command(p);
}

// RUNS/backbone-<bb>/eval.json: BPB of the evaluation domains and, with `tasks`, the
// multiple-choice results; computed once per preset (again only when something is missing).
inline nlohmann::json backbone_eval(const std::string& bb, const Preset& preset, const ReproduceOptions& o,
                                    const fs::path& root, bool tasks) {
  const fs::path dir = root / backbone_id(bb), file = dir / "eval.json";
  nlohmann::json j = fs::exists(file) ? nlohmann::json::parse(nr::read_file(file)) : nlohmann::json::object();
  const bool have_bpb = j.value("eval_tokens", int64_t{-1}) == preset.eval_tokens && j.contains("valid_bpb");
  const bool have_mc = !tasks || (j.contains("mc") && j.value("mc_items", int64_t{-1}) == preset.mc_items &&
                                  j.value("mc_shots", std::vector<int>{}) == preset.mc_shots);
  if (have_bpb && have_mc) return j;
  fmt::print(stderr, "[reproduce] evaluating backbone {}{}\n", bb, have_bpb ? "" : " (BPB)");
  with_loaded_model(dir, "", [&](auto& model, const LoadedInfo& info) {
    const int64_t ctx = info.config.max_position_embeddings;
    if (!have_bpb) {
      std::vector<ValidSet> sets = load_valid_sets(o.corpus, preset.eval_tokens);
      const std::vector<std::string> keep = backbone_eval_domains();
      std::erase_if(sets, [&](const ValidSet& v) { return std::find(keep.begin(), keep.end(), v.name) == keep.end(); });
      j["valid_bpb"] = evaluate_domains(model, sets, ctx, 16);
      j["eval_tokens"] = preset.eval_tokens;
    }
    if (!have_mc) {
      fmt::print(stderr, "[reproduce] multiple choice of backbone {}: {} items x {} languages\n", bb, preset.mc_items,
                 mc_languages().size());
      j["mc"] = evaluate_mc(model, load_mc_items(fs::path(o.corpus) / mc_dir_name, mc_languages(), preset.mc_items),
                            preset.mc_shots, ctx);
      j["mc_items"] = preset.mc_items;
      j["mc_shots"] = preset.mc_shots;
    }
    return 0;
  });
  const nlohmann::json pre = nlohmann::json::parse(nr::read_file(dir / "results.json"));
  j["pretrain_steps"] = pre.value("steps", int64_t{0});
  j["pretrain_batch"] = pre.value("batch", int64_t{0});
  j["mixture"] = pre.value("mixture", nlohmann::json());
  for (const char* key : {"train_seconds", "tokens_per_second", "parameters"})
    if (pre.contains(key)) j[key] = pre[key];
  nr::write_file_atomic(file, j.dump(2) + "\n");
  return j;
}

// Adds the multiple-choice results to a finished run that lacks them (a run first made for a
// table without tasks), by loading its checkpoint.
inline void complete_mc(const RunSpec& r, const Preset& preset, const ReproduceOptions& o, const fs::path& dir,
                        nlohmann::json& results) {
  if (results.contains("mc") && results.value("mc_items", int64_t{-1}) == preset.mc_items &&
      results.value("mc_shots", std::vector<int>{}) == preset.mc_shots)
    return;
  fmt::print(stderr, "[reproduce] multiple choice of {} ({} items x 2 languages)\n", r.id, preset.mc_items);
  with_loaded_model(dir, "", [&](auto& model, const LoadedInfo& info) {
    results["mc"] = evaluate_mc(model, load_mc_items(fs::path(o.corpus) / mc_dir_name, {"en", r.new_domain}, preset.mc_items),
                                preset.mc_shots, info.config.max_position_embeddings);
    return 0;
  });
  results["mc_items"] = preset.mc_items;
  results["mc_shots"] = preset.mc_shots;
  nr::write_file_atomic(dir / "results.json", results.dump(2) + "\n");
}

inline ExtendOptions extend_options(const RunSpec& r, const Preset& preset, const ReproduceOptions& o,
                                    const fs::path& root, const fs::path& dir, bool tasks, size_t k, size_t n) {
  ExtendOptions e;
  e.checkpoint = (root / backbone_id(r.backbone)).string();
  e.corpus = o.corpus;
  e.new_domain = r.new_domain;
  e.mix = "en-mix";
  e.p = r.p;
  e.spec.method = r.method;
  if (r.method == "adapter" || r.method == "gated-sigmoid" || r.method == "neutral") {
    e.spec.gate = r.gate;
    e.spec.init = r.init;
    e.spec.alpha = r.alpha;
    e.spec.bce_weight = r.bce_weight;
  }
  e.spec.extra = r.extra;
  e.lr = r.lr;
  e.steps = preset.steps;
  e.batch = preset.batch;
  e.eval_tokens = preset.eval_tokens;
  e.eval_domains = {"en", "en-ood", r.new_domain};
  e.eval_initial = false;  // the backbone is evaluated once, in eval.json
  e.save_every = preset.save_every;
  e.log_every = preset.log_every;
  e.threads = o.threads;
  if (tasks) {
    e.mc_items = preset.mc_items;
    e.mc_langs = {"en", r.new_domain};
    e.mc_shots = preset.mc_shots;
  }
  e.label = fmt::format("{}/{} {} p={}", k, n, r.method, num(r.p));
  e.print_json = false;
  e.out = dir.string();
  return e;
}

// Figure 3 from the finished runs flagged figure3 and the backbone.
inline void write_figure3(const TableSpec& t, const fs::path& root, const RunnerOutcome& outcome, const fs::path& file) {
  std::map<std::string, std::map<int64_t, std::vector<double>>> spectra;
  std::vector<std::string> order;
  const fs::path backbone = root / backbone_id(t.backbones.front());
  const nr::ModelConfig config = nr::load_config_json(backbone / nr::config_file_name);
  const std::vector<int64_t> layers = figure3_layers(config.num_hidden_layers);
  for (const RunSpec& r : t.runs) {
    if (!r.figure3 || r.backbone != t.backbones.front() || !outcome.results.count(r.id)) continue;
    const nr::SafetensorsFile st = nr::load_safetensors(run_dir(root, r.id) / nr::model_file_name);
    const std::string label = method_label(r.method);
    for (int64_t l : layers) spectra[label][l] = spectrum_of(st, fmt::format("model.layers.{}.adapter.gate_proj.weight", l));
    order.push_back(label);
  }
  if (order.empty()) return;
  const nr::SafetensorsFile st = nr::load_safetensors(backbone / nr::model_file_name);
  for (int64_t l : layers) spectra["Backbone"][l] = spectrum_of(st, fmt::format("model.layers.{}.mlp.gate_proj.weight", l));
  order.push_back("Backbone");
  nr::write_file_atomic(file, figure3(spectra, order, layers));
}

inline void write_curves(const TableSpec& t, const fs::path& root, const RunnerOutcome& outcome, const fs::path& file) {
  nr::SvgPlot plot;
  plot.title = fmt::format("Training loss ({}; mean over 10 steps)", t.name);
  plot.xlabel = "step";
  plot.ylabel = "loss (nats per byte)";
  plot.width = 900;
  const std::map<std::string, std::string> labels = run_labels(t.runs);
  for (const RunSpec& r : t.runs) {
    const fs::path log = run_dir(root, r.id) / "train_log.jsonl";
    if (!outcome.results.count(r.id) || !fs::exists(log)) continue;
    plot.series.push_back(nr::SvgSeries{.label = labels.at(r.id),
                                        .points = loss_curve(nr::read_file(log)), .line = true, .markers = false,
                                        .color = ""});
  }
  nr::write_file_atomic(file, plot.render());
}

// One table: backbones, runs, outputs. Returns 0 or the status of a stopped run.
inline int reproduce_table(const std::string& name, const Preset& preset, const ReproduceOptions& o) {
  const TableSpec t = table_spec(name, o.extra_methods);
  const fs::path root = fs::path(o.runs) / preset.name;
  if (o.list) {
    fmt::print("{} ({} runs)\n", t.title, t.runs.size());
    for (const std::string& bb : t.backbones)
      fmt::print("  {:<58} {}\n", backbone_id(bb), fs::exists(root / backbone_id(bb) / "results.json") ? "finished" : "to pretrain");
    for (const RunSpec& r : t.runs) fmt::print("  {:<58} {}\n", r.id, state_name(run_state(run_dir(root, r.id))));
    return 0;
  }
  nr::list_domains(o.corpus);  // a clear error when there is no corpus
  if (!has_mc_items(o.corpus)) {
    fmt::print(stderr, "[reproduce] building the multiple-choice items into {}\n", (fs::path(o.corpus) / mc_dir_name).string());
    write_mc_items(o.corpus);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t ctx = nr::preset(preset.model).max_position_embeddings;
  size_t todo = 0;
  for (const RunSpec& r : t.runs) todo += run_state(run_dir(root, r.id)) != RunState::finished;
  fmt::print(stderr, "[reproduce] {}\n[reproduce] preset {}: {} backbone(s) ({}, {} pretraining steps x {} x {} bytes), "
                     "{} runs of {} steps x {} x {} bytes ({} to run), BPB on {} bytes per domain{}; runs in {}\n",
             t.title, preset.name, t.backbones.size(), preset.model, preset.pretrain_steps, preset.pretrain_batch, ctx,
             t.runs.size(), preset.steps, preset.batch, ctx, todo, preset.eval_tokens,
             t.tasks ? fmt::format(", {} multiple-choice items per language", preset.mc_items) : "", root.string());

  std::map<std::string, nlohmann::json> results;
  double tokens_per_second = 0.0;
  for (const std::string& bb : t.backbones) {
    if (const int rc = ensure_backbone(bb, preset, o, root); rc != 0) return rc;
    results[backbone_id(bb)] = backbone_eval(bb, preset, o, root, t.tasks);
    tokens_per_second = std::max(tokens_per_second, results[backbone_id(bb)].value("tokens_per_second", 0.0));
  }

  RunnerOptions ro;
  ro.label = "reproduce " + t.name;
  if (tokens_per_second > 0.0) {
    // Training tokens, the evaluations (forward only: about a third of a training step's cost).
    const double tokens = static_cast<double>(preset.steps * preset.batch * ctx) +
                          (preset.eval_tokens > 0 ? static_cast<double>(preset.eval_tokens) : 300000.0) +
                          (t.tasks ? 2.0 * static_cast<double>(preset.mc_items) * 4.0 * static_cast<double>(ctx) / 3.0 : 0.0);
    ro.estimate_seconds = tokens / tokens_per_second;
  }
  const RunnerOutcome outcome = run_table(t.runs, root, preset, [&](const RunSpec& r, const fs::path& dir, size_t k, size_t n) {
    return run_extend_command(extend_options(r, preset, o, root, dir, t.tasks, k, n));
  }, ro);
  if (outcome.stopped) return outcome.rc;
  for (const auto& [id, j] : outcome.results) results[id] = j;
  if (t.tasks)
    for (const RunSpec& r : t.runs) complete_mc(r, preset, o, run_dir(root, r.id), results[r.id]);

  const fs::path out = root / t.name;
  fs::create_directories(out);
  const std::string md = format_markdown(t, results);
  nr::write_file_atomic(out / "results.md", md);
  nr::write_file_atomic(out / "results.csv", format_csv(t, results));
  nr::write_file_atomic(out / "results.json", table_json(t, preset, results).dump(2) + "\n");
  std::vector<std::string> written = {"results.md", "results.csv", "results.json"};
  write_curves(t, root, outcome, out / "curves.svg");
  written.push_back("curves.svg");
  if (!t.figure1.empty()) {
    nr::write_file_atomic(out / "figure1.svg", figure1(t, results).render());
    written.push_back("figure1.svg");
  }
  if (std::any_of(t.runs.begin(), t.runs.end(), [](const RunSpec& r) { return r.figure3; })) {
    write_figure3(t, root, outcome, out / "figure3.svg");
    if (fs::exists(out / "figure3.svg")) written.push_back("figure3.svg");
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string chance;
  if (t.tasks) {
    const nlohmann::json& b = results[backbone_id("en")];
    for (const std::string& lang : {std::string("en"), t.new_domain})
      if (const auto c = metric_value(b, "chance:" + lang)) chance += fmt::format("{} {:.1f}% ", lang, *c);
  }
  fmt::print("{}\n{}", md, chance.empty() ? "" : fmt::format("Multiple-choice chance level: {}\n", chance));
  fmt::print(stderr, "[reproduce] {} done in {} ({} runs reused, {} resumed, {} trained); wrote {} into {}\n", t.name,
             nr::format_duration(seconds), outcome.skipped, outcome.resumed, outcome.started,
             fmt::join(written, ", "), out.string());
  return 0;
}

}  // namespace repro

inline int run_reproduce_command(const ReproduceOptions& o) {
  apply_threads(o.threads);
  install_stop_handlers();
  repro::Preset preset = repro::preset_named(o.preset);
  if (o.pretrain_steps > 0 || o.steps > 0 || o.batch > 0 || o.eval_tokens >= 0 || o.mc_items > 0) {
    preset.name = "custom";
    if (o.pretrain_steps > 0) preset.pretrain_steps = o.pretrain_steps;
    if (o.steps > 0) preset.steps = o.steps;
    if (o.batch > 0) preset.batch = preset.pretrain_batch = o.batch;
    if (o.eval_tokens >= 0) preset.eval_tokens = o.eval_tokens;
    if (o.mc_items > 0) preset.mc_items = o.mc_items;
    preset.save_every = std::min(preset.save_every, preset.steps);
  }
  std::vector<std::string> tables = o.table == "all" ? repro::table_names() : std::vector<std::string>{o.table};
  for (const std::string& t : tables)
    if (const int rc = repro::reproduce_table(t, preset, o); rc != 0) return rc;
  return 0;
}

inline void register_reproduce_command(CLI::App& app) {
  auto o = std::make_shared<ReproduceOptions>();
  CLI::App* c = app.add_subcommand("reproduce", "Run the experiments behind one of the paper's tables (small scale) and "
                                                "print it, with CSV, JSON and SVG figures");
  std::vector<std::string> names = repro::table_names();
  names.push_back("all");
  c->add_option("table", o->table, "table1 ... table8, or all")->required()->check(CLI::IsMember(names));
  c->add_option("--preset", o->preset, "quick (minutes on 2 cores) or paper (as faithful as a CPU allows)")
      ->capture_default_str()
      ->check(CLI::IsMember(repro::preset_names()));
  c->add_option("--corpus", o->corpus, "Corpus directory (nrlab corpus --out DIR)")->capture_default_str();
  c->add_option("--runs", o->runs, "Runs directory; everything goes into RUNS/PRESET")->capture_default_str();
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->add_option("--pretrain-steps", o->pretrain_steps, "Override: backbone pretraining steps (runs go to RUNS/custom)")
      ->check(CLI::PositiveNumber);
  c->add_option("--steps", o->steps, "Override: steps of every extension run (runs go to RUNS/custom)")
      ->check(CLI::PositiveNumber);
  c->add_option("--batch", o->batch, "Override: sequences per step, pretraining and extension (runs go to RUNS/custom)")
      ->check(CLI::PositiveNumber);
  c->add_option("--eval-tokens", o->eval_tokens, "Override: bytes of each valid set, 0 = all (runs go to RUNS/custom)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--mc-items", o->mc_items, "Override: multiple-choice items per language (runs go to RUNS/custom)")
      ->check(CLI::PositiveNumber);
  c->add_flag("--list", o->list, "List the table's runs and their state (finished, partial, fresh); train nothing");
  c->add_flag("--extra-methods", o->extra_methods,
              "Table 2 also gets rows for new experts (ModuleFormer), MIGU finetuning and MIGU LoRA");
  c->callback([o]() {
    const int rc = run_reproduce_command(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
