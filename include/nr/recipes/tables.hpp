// nr/recipes/tables.hpp — the paper's tables as data: what `nrlab reproduce TABLE` runs and how it
// reports it: the presets, the run list of each of the paper's Tables 1-8, the bookkeeping that makes a table
// resumable, and the Markdown / CSV / JSON / SVG outputs. Nothing here trains a model: the
// runner takes the function that executes one run, so the tests drive it with a fake one
// (tests/test_reproduce.cpp) and recipes/reproduce.hpp with run_extend (recipes/extend.hpp).
//
// Layout of a runs directory (RUNS = --runs DIR / PRESET, default runs/quick):
//   RUNS/backbone-en/          English-only backbone (nrlab pretrain --domain en); eval.json
//   RUNS/backbone-ml/          multilingual backbone (en 87.5 %, fr 6.25 %, de 6.25 %)
//   RUNS/ext/<run id>/         one extension run (nrlab extend's OUT); shared by every table
//                              that lists the same run, so it is trained once
//   RUNS/<table>/              results.md, results.csv, results.json, figure*.svg, curves.svg
// A run is finished when its directory holds results.json, partial when it holds a training
// state (it resumes from it), fresh otherwise.
//
// Metrics of a table cell: "bpb:DOMAIN" (bits per byte on DOMAIN's valid text: the paper's
// log-perplexities; en-ood measures forgetting, the new language learning), "mc:LANG" (multiple-
// choice acc_norm in %, mean over the preset's shot settings: the paper's "tasks avg.").
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include "nr/eval/multiple_choice.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/recipes/registry.hpp"
#include "nr/report/spectrum.hpp"
#include "nr/report/svg_plot.hpp"
#include "nr/train/progress.hpp"

namespace nr::recipes {


// ---- presets ------------------------------------------------------------------------------

struct Preset {
  std::string name;
  std::string model = "nano";        // preset of the backbones
  int64_t pretrain_steps = 300, pretrain_batch = 16;
  double pretrain_lr = 3e-3;
  int64_t steps = 80, batch = 16;    // every extension run
  int64_t eval_tokens = 16384;       // bytes of each valid.txt per BPB (0 = all)
  int64_t mc_items = 100;            // multiple-choice items per language (tables with tasks)
  std::vector<int> mc_shots = {0};   // shot settings averaged into "tasks"
  int64_t save_every = 50, log_every = 25;
  std::string multilingual = "en:0.875,fr:0.0625,de:0.0625";  // Trans-ML's pretraining mixture
  // A pretrained English model to extend instead of pretraining backbone-en (a GGUF file, a
  // Hugging Face directory or a name fetched_model_path knows); empty: pretrain `model`.
  std::string backbone = "";
  int64_t ctx = 0;                   // the window of every run and evaluation (0: the model's default)
  // Base learning rate of each method (empty: the registry's defaults, tuned on nr's small
  // backbones); a table's learning-rate ratios (Table 8) multiply it.
  std::map<std::string, double> base_lr = {};
  // Products of the extension runs' training steps (run_support.hpp resolve_precision);
  // evaluations are FP32 whatever this says.
  std::string precision = "fp32";
  // A prompt in the new language continued greedily by the backbone and by every extended model
  // (RUNS/<table>/generations.md), sample_tokens tokens each; empty: none.
  std::string sample_prompt = "";
  int64_t sample_tokens = 32;
};

inline const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> n = {"quick", "paper", "smol"};
  return n;
}

// quick: a table in minutes on 2 CPU cores (nano model, short runs, small evaluations; the
//        numbers were picked by measuring, see docs/results.md).
// paper: as close to the paper's protocol as one CPU allows: the 3.3 M-parameter `tiny` backbone
//        with a 256-byte context pretrained on 24.6 M bytes (about 4 epochs of `en`), extension
//        runs of 8.2 M bytes (about 1.3 epochs of the new language), whole validation sets, all
//        200 multiple-choice items. Zero-shot only: a 256-byte context cannot hold k solved
//        examples of about 330 bytes each (the paper's 5-shot tasks have 4096 tokens).
// smol:  the real model: SmolLM2-135M-Instruct (English; scripts/fetch_model.sh smollm2) extended
//        with its own BPE tokenizer, 256-token windows, 30 steps of 4 sequences (30,720 tokens:
//        what fits the demo's 25 minutes on 2 cores with p = 0.1, and already moves French by
//        0.1-0.2 bit per byte), BF16 products where the CPU has them; learning rates for a
//        135 M-parameter model (the paper uses 5e-5 for every method but finetuning, 2e-4, over far
//        longer runs; these short runs need larger ones, docs/results.md).
inline Preset preset_named(const std::string& name) {
  if (name == "quick") return Preset{.name = "quick"};
  if (name == "paper")
    return Preset{.name = "paper", .model = "tiny", .pretrain_steps = 3000, .pretrain_batch = 32,
                  .pretrain_lr = 2e-3, .steps = 1000, .batch = 32, .eval_tokens = 0, .mc_items = 200,
                  .mc_shots = {0}, .save_every = 100, .log_every = 50};
  if (name == "smol")
    return Preset{.name = "smol", .model = "", .pretrain_steps = 0, .pretrain_batch = 0, .pretrain_lr = 0.0,
                  .steps = 30, .batch = 4, .eval_tokens = 8192, .mc_items = 100, .mc_shots = {0}, .save_every = 30,
                  .log_every = 10, .multilingual = "", .backbone = "smollm2", .ctx = 256,
                  .base_lr = {{"finetune", 1e-4}, {"migu-finetune", 1e-4}, {"lora", 1e-3}, {"migu-lora", 1e-3},
                              {"adapter", 1e-3}, {"gated-sigmoid", 1e-3}, {"neutral", 1e-3}, {"serial-adapter", 1e-3},
                              {"experts", 1e-3}},
                  .precision = "auto",
                  .sample_prompt = "Pour installer un nouveau paquet sur un système Debian, il faut"};
  throw ValueError(fmt::format("unknown preset '{}' (quick, paper, smol)", name));
}

// ---- runs ---------------------------------------------------------------------------------

struct RunSpec {
  std::string id;            // directory name under RUNS/ext (make_run_id)
  std::string backbone = "en";
  std::string new_domain = "fr";
  std::string method;        // finetune, lora, adapter, gated-sigmoid, neutral, experts, migu-*
  std::string gate, init;    // resolved (adapter methods)
  double alpha = 0.0, bce_weight = 0.0, extra = 0.2, p = 0.1, lr = 0.0;
  std::string series;        // Figure 1 curve it belongs to ("" = not plotted)
  bool figure3 = false;      // its gate_proj spectrum goes into Figure 3
};

// "0.005" / "5e-05": short and exact enough to name runs and label rows.
inline std::string num(double x) { return fmt::format("{:g}", x); }

// The run of `method` with the method's defaults, resolved (lr multiplied by lr_ratio). Adapter
// options left empty take the method's defaults (resolve_defaults, registry.hpp).
inline RunSpec make_run(const std::string& backbone, const std::string& new_domain, const std::string& method, double p,
                        double lr_ratio = 1.0, std::optional<std::string> gate = {}, std::optional<std::string> init = {},
                        std::optional<double> alpha = {}, std::optional<double> bce_weight = {}, double extra = 0.2) {
  ExtensionSpec s;
  s.method = method;
  s.gate = std::move(gate);
  s.init = std::move(init);
  s.alpha = alpha;
  s.bce_weight = bce_weight;
  s.extra = extra;
  resolve_defaults(s);
  RunSpec r;
  r.backbone = backbone;
  r.new_domain = new_domain;
  r.method = method;
  r.gate = s.gate.value_or("");
  r.init = s.init.value_or("");
  r.alpha = s.alpha.value_or(0.0);
  r.bce_weight = s.bce_weight.value_or(0.0);
  r.extra = extra;
  r.p = p;
  r.lr = default_lr(method) * lr_ratio;
  return r;
}

// The ExtensionSpec of a run (what run_extend gets).
inline ExtensionSpec run_extension_spec(const RunSpec& r) {
  ExtensionSpec s;
  s.method = r.method;
  if (method_info(r.method).family == MethodFamily::adapter) {
    s.gate = r.gate;
    s.init = r.init;
    s.alpha = r.alpha;
    s.bce_weight = r.bce_weight;
  }
  s.extra = r.extra;
  return s;
}

// Every setting that changes the run is in its id, so a changed default gives a new run.
inline std::string make_run_id(const RunSpec& r) {
  std::string id = fmt::format("{}-{}-{}", r.backbone, r.new_domain, r.method);
  const MethodInfo& m = method_info(r.method);
  if (m.family == MethodFamily::adapter) {
    id += fmt::format("-{}-{}-a{}", r.gate, r.init == "low-variance" ? "lowvar" : r.init, num(r.alpha));
    if (r.bce_weight > 0.0) id += "-bce" + num(r.bce_weight);
  }
  if (m.family == MethodFamily::experts)
    id += fmt::format("-e{}k{}-r{}", default_new_experts, default_new_top_k, num(default_route_reg));
  if (m.migu) id += "-T" + num(default_migu_threshold);
  if (m.family != MethodFamily::full) id += "-x" + num(r.extra);
  return id + fmt::format("-p{}-lr{}", num(r.p), num(r.lr));
}

// The fields of results.json that must match the run and the preset for a finished run to be
// reused (a run with the same id under other settings would otherwise be reported silently).
inline void check_finished_run(const RunSpec& r, const Preset& preset, const nlohmann::json& results,
                               const std::string& where) {
  auto mismatch = [&](const char* key, const nlohmann::json& want) {
    const nlohmann::json got = results.value(key, nlohmann::json());
    const bool same = got.is_number() && want.is_number() ? std::abs(got.get<double>() - want.get<double>()) <=
                                                                1e-9 * std::max(1.0, std::abs(want.get<double>()))
                                                          : got == want;
    if (!same)
      throw ValueError(fmt::format("{} was run with {} = {}, but this table wants {}: delete that directory to "
                                       "redo it, or give another --runs", where, key, got.dump(), want.dump()));
  };
  mismatch("method", r.method);
  mismatch("new", r.new_domain);
  mismatch("p", r.p);
  mismatch("lr", r.lr);
  mismatch("steps", preset.steps);
  mismatch("batch", preset.batch);
  mismatch("eval_tokens", preset.eval_tokens);
  if (method_info(r.method).family == MethodFamily::adapter) {
    mismatch("gate", r.gate);
    mismatch("init", r.init);
    mismatch("alpha", r.alpha);
    mismatch("bce_weight", r.bce_weight);
  }
}

// ---- tables -------------------------------------------------------------------------------

struct Cell {
  std::string run;     // run id, or "backbone-en" / "backbone-ml"
  std::string metric;  // "bpb:DOMAIN", "kl:DOMAIN" (divergence from the backbone) or "mc:LANG"
};

struct Row {
  std::vector<std::string> labels;  // one per label column
  std::vector<Cell> cells;          // one per value column
};

struct TableSpec {
  std::string name, title, caption;
  std::vector<std::string> label_headers, headers;
  std::vector<Row> rows;
  std::vector<RunSpec> runs;            // distinct runs, in the order they are executed
  std::vector<std::string> backbones;   // "en", "ml"
  bool tasks = false;                   // needs the multiple-choice evaluation
  std::string new_domain = "fr";
  std::string figure1;                  // "" (none), "points" (table 2), "curves" (table 8)
  std::map<std::string, double> base_lr;  // the preset's base learning rates (make_run's default_lr otherwise)
};

inline const std::vector<std::string>& table_names() {
  static const std::vector<std::string> n = {"table1", "table2", "table3", "table4",
                                             "table5", "table6", "table7", "table8"};
  return n;
}

inline std::string method_label(const std::string& method) { return method_info(method).label; }

inline std::string backbone_id(const std::string& backbone) { return "backbone-" + backbone; }

namespace detail {

// Adds a run (once) and returns its id.
inline std::string add_run(TableSpec& t, RunSpec r) {
  if (const auto it = t.base_lr.find(r.method); it != t.base_lr.end()) r.lr *= it->second / default_lr(r.method);
  r.id = make_run_id(r);
  for (RunSpec& x : t.runs)
    if (x.id == r.id) {
      if (x.series.empty()) x.series = r.series;
      x.figure3 = x.figure3 || r.figure3;
      return x.id;
    }
  t.runs.push_back(r);
  return r.id;
}

// Cells of one run for the given metrics.
inline std::vector<Cell> cells(const std::string& run, const std::vector<std::string>& metrics) {
  std::vector<Cell> c;
  for (const std::string& m : metrics) c.push_back({run, m});
  return c;
}

inline std::vector<std::string> bpb_metrics(const std::string& lang) { return {"bpb:en-ood", "bpb:" + lang}; }
// The BPB pair and how far English moved from the backbone (table 2).
inline std::vector<std::string> bpb_and_change(const std::string& lang) {
  return {"bpb:en-ood", "bpb:" + lang, "kl:en-ood"};
}
inline std::vector<std::string> bpb_and_tasks(const std::string& lang) {
  return {"bpb:en-ood", "bpb:" + lang, "mc:en", "mc:" + lang};
}
inline std::vector<std::string> bpb_task_headers(const std::string& lang) {
  std::string up = lang;
  for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return {"EN BPB", up + " BPB", "EN tasks", up + " tasks"};
}

}  // namespace detail

// The methods beyond the paper's Table 2 that `--extra-methods` adds to it: sigmoid-gated adapters
// (the paper's Table 6 gate), ModuleFormer's new experts and MIGU.
inline const std::vector<std::string>& extra_table_methods() {
  static const std::vector<std::string> m = {"gated-sigmoid", "experts", "migu-finetune", "migu-lora"};
  return m;
}

// The runs, rows and columns of one of the paper's tables; with extra_methods, table 2 also
// has a row for each of extra_table_methods() (the other tables are unchanged). table2_p: the mix
// rates of table 2's column pairs (the paper's 0 and 0.1; one of them halves the runs).
inline TableSpec table_spec(const std::string& name, bool extra_methods = false,
                            const std::map<std::string, double>& base_lr = {},
                            const std::vector<double>& table2_p = {0.0, 0.1}) {
  using detail::add_run;
  using detail::cells;
  TableSpec t;
  t.name = name;
  t.base_lr = base_lr;
  const std::vector<std::string> methods = {"finetune", "lora", "adapter", "neutral"};
  if (name == "table1") {
    t.title = "Table 1: mixture of distributions (vanilla adapters, learning French)";
    t.caption = "Proportion p of English (en-mix) sequences in the extension data. BPB on en-ood (forgetting) and fr "
                "(learning); lower is better.";
    t.label_headers = {"English rate p"};
    t.headers = {"EN BPB", "FR BPB"};
    t.backbones = {"en"};
    for (double p : {0.0, 0.01, 0.1, 0.5})
      t.rows.push_back({{fmt::format("{:.2f}", p)}, cells(add_run(t, make_run("en", "fr", "adapter", p)), detail::bpb_metrics("fr"))});
    t.rows.push_back({{"Pretrained model"}, cells(backbone_id("en"), detail::bpb_metrics("fr"))});
  } else if (name == "table2") {
    if (table2_p.empty()) throw ValueError("table 2 needs at least one mix rate p");
    std::string ps;
    for (double p : table2_p) {
      if (!(p >= 0.0 && p < 1.0)) throw ValueError(fmt::format("table 2: mix rate p = {} is not in [0, 1)", p));
      ps += (ps.empty() ? "" : " or ") + fmt::format("p = {}", num(p));
    }
    t.title = fmt::format("Table 2: training with {}, learning French",
                          table2_p == std::vector<double>{0.0, 0.1} ? "new data only (p = 0) or mixed data (p = 0.1)"
                                                                   : "the mix rate " + ps);
    t.caption = "BPB on en-ood (forgetting, EN) and fr (learning, FR) at the end of training; lower is better. EN KL: "
                "how far the model's English predictions moved from the backbone's, KL(backbone || model) on en-ood "
                "in bits per byte (0: English untouched; eval/divergence.hpp).";
    t.label_headers = {"Method"};
    for (double p : table2_p) {
      t.headers.push_back(fmt::format("EN (p={})", num(p)));
      t.headers.push_back(fmt::format("FR (p={})", num(p)));
      t.headers.push_back(fmt::format("EN KL (p={})", num(p)));
    }
    t.backbones = {"en"};
    t.figure1 = "points";
    std::vector<std::string> rows = methods;
    if (extra_methods) rows.insert(rows.end(), extra_table_methods().begin(), extra_table_methods().end());
    // Figure 1 and Figure 3 show the runs of the largest p (the paper's p = 0.1).
    const double plotted = *std::max_element(table2_p.begin(), table2_p.end());
    for (const std::string& m : rows) {
      std::vector<Cell> c;
      for (double p : table2_p) {
        RunSpec r = make_run("en", "fr", m, p);
        if (p == plotted) {
          r.series = method_label(m);
          r.figure3 = m == "adapter" || m == "neutral";
        }
        for (const Cell& x : cells(add_run(t, r), detail::bpb_and_change("fr"))) c.push_back(x);
      }
      t.rows.push_back({{method_label(m)}, c});
    }
    std::vector<Cell> c;
    for (size_t k = 0; k < table2_p.size(); ++k)
      for (const Cell& x : cells(backbone_id("en"), detail::bpb_and_change("fr"))) c.push_back(x);
    t.rows.push_back({{"Pretrained model"}, c});
  } else if (name == "table3") {
    t.title = "Table 3: impact of the number of extra weights (neutral residues, learning French)";
    t.caption = "Extra trainable weights as a fraction of the backbone's. Tasks: multiple-choice acc_norm (%).";
    t.label_headers = {"Extra weights"};
    t.headers = detail::bpb_task_headers("fr");
    t.backbones = {"en"};
    t.tasks = true;
    for (double x : {0.05, 0.1, 0.2, 0.5})
      t.rows.push_back({{fmt::format("+{:g}%", 100.0 * x)},
                        cells(add_run(t, make_run("en", "fr", "neutral", 0.1, 1.0, {}, {}, {}, {}, x)),
                              detail::bpb_and_tasks("fr"))});
    t.rows.push_back({{"Backbone"}, cells(backbone_id("en"), detail::bpb_and_tasks("fr"))});
  } else if (name == "table4" || name == "table5") {
    const std::string lang = name == "table4" ? "fr" : "de";
    const std::string language = lang == "fr" ? "French" : "German";
    t.title = fmt::format("Table {}: main results, learning {} (English-only and multilingual backbones)",
                          name == "table4" ? 4 : 5, language);
    t.caption = fmt::format("p = 0.1; adapters and LoRA add 20 % weights. Forgetting: English (en-ood BPB, EN "
                            "multiple-choice acc_norm %); learning: {} ({} BPB, {} acc_norm %).",
                            language, lang, lang);
    t.label_headers = {"Model", "Method"};
    t.headers = detail::bpb_task_headers(lang);
    t.backbones = {"en", "ml"};
    t.tasks = true;
    t.new_domain = lang;
    for (const std::string& bb : t.backbones) {
      const std::string model = bb == "en" ? "Trans-EN" : "Trans-ML";
      t.rows.push_back({{model, "Backbone"}, cells(backbone_id(bb), detail::bpb_and_tasks(lang))});
      for (const std::string& m : methods) {
        RunSpec r = make_run(bb, lang, m, 0.1);
        r.figure3 = bb == "en" && (m == "adapter" || m == "neutral");
        t.rows.push_back({{model, m == "neutral" ? "ours" : method_label(m)},
                          cells(add_run(t, r), detail::bpb_and_tasks(lang))});
      }
    }
  } else if (name == "table6") {
    t.title = "Table 6: gating, activation and local loss (learning French, p = 0.1)";
    t.caption = "l1: the l1 loss on the adapter output for original-domain tokens; CE: the sigmoid gate's binary "
                "cross-entropy (old / new classifier); our init: low variance 1/(C L) instead of He's 2/C.";
    t.label_headers = {"Gate", "l1", "CE", "Our init"};
    t.headers = detail::bpb_task_headers("fr");
    t.backbones = {"en"};
    t.tasks = true;
    struct Ablation {
      const char* gate_label;
      std::string method, gate;
      bool l1, ce, low;
    };
    const std::vector<Ablation> rows = {
        {"none", "adapter", "none", false, false, false},  {"none", "adapter", "none", true, false, false},
        {"none", "adapter", "none", true, false, true},    {"Sigmoid", "gated-sigmoid", "sigmoid", false, true, false},
        {"Sigmoid", "gated-sigmoid", "sigmoid", false, true, true},
        {"Sigmoid", "gated-sigmoid", "sigmoid", true, true, true},
        {"ELU", "neutral", "elu", true, false, false},      {"ELU", "neutral", "elu", false, false, true},
        {"ELU", "neutral", "elu", true, false, true}};
    for (const Ablation& a : rows) {
      RunSpec r = make_run("en", "fr", a.method, 0.1, 1.0, a.gate, a.low ? "low-variance" : "he",
                           a.l1 ? default_neutral_alpha : 0.0, a.ce ? default_sigmoid_bce : 0.0);
      r.figure3 = (a.method == "adapter" && !a.l1) || (a.ce && a.low && !a.l1) || (a.method == "neutral" && a.l1 && a.low);
      t.rows.push_back({{a.gate_label, a.l1 ? "x" : "", a.ce ? "x" : "", a.low ? "x" : ""},
                        cells(add_run(t, r), detail::bpb_and_tasks("fr"))});
    }
    t.rows.push_back({{"Backbone baseline", "", "", ""}, cells(backbone_id("en"), detail::bpb_and_tasks("fr"))});
  } else if (name == "table7") {
    t.title = "Table 7: the l1 weight alpha (neutral residues, learning French, p = 0.1)";
    t.caption = fmt::format("The paper's alpha values mapped to nr's normalisation: ours = paper x {:g} / 100 (nr's "
                            "default {:g} stands for the paper's retained 100; nr's l1 is a mean over elements).",
                            default_neutral_alpha, default_neutral_alpha);
    t.label_headers = {"alpha (paper)", "alpha (nr)"};
    t.headers = detail::bpb_task_headers("fr");
    t.backbones = {"en"};
    t.tasks = true;
    for (double paper : {0.0, 1.0, 10.0, 100.0, 1000.0}) {
      const double ours = paper * default_neutral_alpha / 100.0;
      t.rows.push_back({{num(paper), num(ours)},
                        cells(add_run(t, make_run("en", "fr", "neutral", 0.1, 1.0, {}, {}, ours)),
                              detail::bpb_and_tasks("fr"))});
    }
    t.rows.push_back({{"Backbone", ""}, cells(backbone_id("en"), detail::bpb_and_tasks("fr"))});
  } else if (name == "table8") {
    t.title = "Table 8: trade-offs with different learning rates (learning French, p = 0.1)";
    t.caption = "Four learning rates per method around nr's default, in the paper's ratios (2e-5, 5e-5, 2e-4, 5e-4 "
                "around its default 5e-5; 2e-4 for finetuning). The points of Figure 1. EN KL: KL(backbone || model) "
                "on en-ood, bits per byte.";
    t.label_headers = {"Method", "LR"};
    t.headers = detail::bpb_task_headers("fr");
    t.headers.push_back("EN KL");
    auto metrics = detail::bpb_and_tasks("fr");
    metrics.push_back("kl:en-ood");
    t.backbones = {"en"};
    t.tasks = true;
    t.figure1 = "curves";
    t.rows.push_back({{"Backbone", "0"}, cells(backbone_id("en"), metrics)});
    for (const std::string& m : methods) {
      // The paper's rates divided by its default for the method (2e-4 finetuning, 5e-5 others).
      const double paper_default = m == "finetune" ? 2e-4 : 5e-5;
      for (double paper_lr : {2e-5, 5e-5, 2e-4, 5e-4}) {
        RunSpec r = make_run("en", "fr", m, 0.1, paper_lr / paper_default);
        r.series = method_label(m);
        t.rows.push_back({{method_label(m), fmt::format("{:.1e}", r.lr)}, cells(add_run(t, r), metrics)});
      }
    }
  } else {
    throw ValueError(fmt::format("unknown table '{}' (table1 ... table8, or all)", name));
  }
  return t;
}

// ---- bookkeeping --------------------------------------------------------------------------

enum class RunState { fresh, partial, finished };

inline const char* state_name(RunState s) {
  return s == RunState::finished ? "finished" : s == RunState::partial ? "partial" : "fresh";
}

// finished: results.json; partial: a training state to resume from; fresh: neither.
inline RunState run_state(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "results.json")) return RunState::finished;
  if (has_training_state(dir)) return RunState::partial;
  return RunState::fresh;
}

inline std::filesystem::path run_dir(const std::filesystem::path& runs, const std::string& id) {
  return id.rfind("backbone-", 0) == 0 ? runs / id : runs / "ext" / id;
}

struct RunnerOptions {
  std::string label = "reproduce";
  double estimate_seconds = 0.0;  // expected seconds of one run before any has finished (0: unknown)
  std::function<void(const std::string&)> log = [](const std::string&) {};  // progress lines (none by default)
};

struct RunnerOutcome {
  std::map<std::string, nlohmann::json> results;  // run id -> results.json content
  int skipped = 0, resumed = 0, started = 0;
  bool stopped = false;
  int rc = 0;  // the executor's status when it stopped
};

// Executes the runs of a table in order. A finished run is skipped (its results.json is read
// and checked against the run); a partial or fresh one is handed to `execute(run, dir, k, n)`,
// which returns 0 with results.json written, or a non-zero status (stopped by a signal), which
// ends the table. Progress, with the elapsed time and an ETA, goes through options.log.
inline RunnerOutcome run_table(const std::vector<RunSpec>& runs, const std::filesystem::path& root, const Preset& preset,
                               const std::function<int(const RunSpec&, const std::filesystem::path&, size_t, size_t)>& execute,
                               const RunnerOptions& options = {}) {
  RunnerOutcome out;
  const size_t n = runs.size();
  size_t remaining = 0;
  for (const RunSpec& r : runs) remaining += run_state(run_dir(root, r.id)) != RunState::finished;
  const auto t0 = std::chrono::steady_clock::now();
  double run_seconds = 0.0;
  int timed = 0;
  for (size_t k = 0; k < n; ++k) {
    const RunSpec& r = runs[k];
    const std::filesystem::path dir = run_dir(root, r.id);
    const RunState state = run_state(dir);
    if (state == RunState::finished) {
      const nlohmann::json j = nlohmann::json::parse(read_file(dir / "results.json"));
      check_finished_run(r, preset, j, dir.string());
      out.results[r.id] = j;
      ++out.skipped;
      options.log(fmt::format("[{}] run {}/{} {}: finished, reusing {}", options.label, k + 1, n, r.id,
                              (dir / "results.json").string()));
      continue;
    }
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_run = timed > 0 ? run_seconds / timed : options.estimate_seconds;
    options.log(fmt::format("[{}] run {}/{} {} ({}): {}; {} left to run, elapsed {}, ETA {}", options.label, k + 1, n,
                            r.id, state == RunState::partial ? "resuming" : "starting", method_label(r.method),
                            remaining, format_duration(elapsed),
                            per_run > 0.0 ? format_duration(per_run * static_cast<double>(remaining)) : "?"));
    (state == RunState::partial ? out.resumed : out.started) += 1;
    const auto r0 = std::chrono::steady_clock::now();
    const int rc = execute(r, dir, k + 1, n);
    if (rc != 0) {
      out.stopped = true;
      out.rc = rc;
      options.log(fmt::format("[{}] stopped during run {}/{} {}; run the same command to resume", options.label, k + 1,
                              n, r.id));
      return out;
    }
    if (!std::filesystem::exists(dir / "results.json"))
      throw IoError(fmt::format("run {} ended without writing {}", r.id, (dir / "results.json").string()));
    if (state == RunState::fresh) {
      run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - r0).count();
      ++timed;
    }
    --remaining;
    out.results[r.id] = nlohmann::json::parse(read_file(dir / "results.json"));
  }
  return out;
}

// ---- values and formatting ----------------------------------------------------------------

// The value of a metric in a run's results (results.json of a run, eval.json of a backbone):
// bpb:D -> valid_bpb[D]; kl:D -> divergence[D].kl_bpb; mc:L -> 100 * mc[L].acc_norm; mcacc:L ->
// 100 * mc[L].acc; chance:L -> 100 * mc[L].chance. Empty when absent.
inline std::optional<double> metric_value(const nlohmann::json& results, const std::string& metric) {
  const size_t colon = metric.find(':');
  if (colon == std::string::npos) return std::nullopt;
  const std::string kind = metric.substr(0, colon), key = metric.substr(colon + 1);
  if (kind == "bpb") {
    const auto v = results.find("valid_bpb");
    if (v != results.end() && v->is_object() && v->contains(key) && (*v)[key].is_number()) return (*v)[key].get<double>();
  } else if (kind == "kl") {
    const auto d = results.find("divergence");
    if (d != results.end() && d->is_object() && d->contains(key) && (*d)[key].is_object() &&
        (*d)[key].contains("kl_bpb") && (*d)[key]["kl_bpb"].is_number())
      return (*d)[key]["kl_bpb"].get<double>();
  } else if (kind == "mc" || kind == "mcacc" || kind == "chance") {
    const auto m = results.find("mc");
    if (m != results.end() && m->is_object() && m->contains(key)) {
      const nlohmann::json& l = (*m)[key];
      const char* field = kind == "mc" ? "acc_norm" : kind == "mcacc" ? "acc" : "chance";
      if (l.contains(field) && l[field].is_number()) return 100.0 * l[field].get<double>();
    }
  }
  return std::nullopt;
}

// The standard error (in %) of a run's multiple-choice acc_norm for LANG, the mean over its shot
// settings: sqrt(sum of the per-shot binomial variances) / #shots, each from the per-shot entry's
// acc_norm and items (eval/multiple_choice.hpp binomial_stderr). Empty without per-shot entries.
inline std::optional<double> mc_stderr(const nlohmann::json& results, const std::string& lang) {
  const auto m = results.find("mc");
  if (m == results.end() || !m->is_object() || !m->contains(lang) || !(*m)[lang].is_object()) return std::nullopt;
  double var = 0.0;
  int shots = 0;
  for (auto it = (*m)[lang].begin(); it != (*m)[lang].end(); ++it) {
    const nlohmann::json& s = it.value();
    if (it.key().empty() || !std::isdigit(static_cast<unsigned char>(it.key()[0])) || !s.is_object() ||
        !s.contains("acc_norm") || !s["acc_norm"].is_number() || !s.contains("items") || !s["items"].is_number())
      continue;
    const double se = binomial_stderr(s["acc_norm"].get<double>(), s["items"].get<int64_t>());
    var += se * se;
    ++shots;
  }
  if (shots == 0) return std::nullopt;
  return 100.0 * std::sqrt(var) / shots;
}

inline std::string format_value(const std::string& metric, std::optional<double> v,
                                std::optional<double> stderr_percent = std::nullopt) {
  if (!v) return "-";
  if (metric.rfind("bpb:", 0) == 0) return fmt::format("{:.3f}", *v);
  if (metric.rfind("kl:", 0) == 0) return fmt::format("{:.4f}", *v);
  return stderr_percent ? fmt::format("{:.1f} ± {:.1f}", *v, *stderr_percent) : fmt::format("{:.1f}", *v);
}

// A cell's text: the metric's value, with its standard error for multiple choice.
inline std::string format_cell(const std::string& metric, const nlohmann::json* results) {
  if (!results) return "-";
  const std::optional<double> se =
      metric.rfind("mc:", 0) == 0 ? mc_stderr(*results, metric.substr(3)) : std::optional<double>{};
  return format_value(metric, metric_value(*results, metric), se);
}

inline std::string markdown_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

// The table as Markdown: title, header, one line per row (values right-aligned), caption.
inline std::string format_markdown(const TableSpec& t, const std::map<std::string, nlohmann::json>& results) {
  std::string s = fmt::format("**{}**\n\n|", markdown_escape(t.title));
  for (const std::string& h : t.label_headers) s += fmt::format(" {} |", markdown_escape(h));
  for (const std::string& h : t.headers) s += fmt::format(" {} |", markdown_escape(h));
  s += "\n|";
  for (size_t i = 0; i < t.label_headers.size(); ++i) s += "---|";
  for (size_t i = 0; i < t.headers.size(); ++i) s += "---:|";
  s += "\n";
  for (const Row& row : t.rows) {
    s += "|";
    for (const std::string& l : row.labels) s += fmt::format(" {} |", markdown_escape(l));
    for (const Cell& c : row.cells) {
      const auto it = results.find(c.run);
      s += fmt::format(" {} |", format_cell(c.metric, it == results.end() ? nullptr : &it->second));
    }
    s += "\n";
  }
  if (!t.caption.empty()) s += fmt::format("\n{}\n", t.caption);
  return s;
}

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

inline std::string csv_number(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? fmt::format("{:.6g}", it->get<double>()) : "";
}

// One line per run (backbones first): settings, BPB of every evaluated domain, the divergence
// from the backbone where measured (kl_<domain>, bits per byte), multiple-choice
// acc, acc_norm, acc_norm's standard error and chance per language (%), time and speed.
inline std::string format_csv(const TableSpec& t, const std::map<std::string, nlohmann::json>& results) {
  std::set<std::string> domains, kl_domains, langs;
  for (const auto& [id, j] : results) {
    if (j.contains("valid_bpb") && j["valid_bpb"].is_object())
      for (auto it = j["valid_bpb"].begin(); it != j["valid_bpb"].end(); ++it) domains.insert(it.key());
    if (j.contains("divergence") && j["divergence"].is_object())
      for (auto it = j["divergence"].begin(); it != j["divergence"].end(); ++it) kl_domains.insert(it.key());
    if (j.contains("mc") && j["mc"].is_object())
      for (auto it = j["mc"].begin(); it != j["mc"].end(); ++it) langs.insert(it.key());
  }
  std::string s = "run,backbone,new,method,gate,init,alpha,bce_weight,extra,p,lr,steps,batch";
  for (const std::string& d : domains) s += ",bpb_" + d;
  for (const std::string& d : kl_domains) s += ",kl_" + d;
  for (const std::string& l : langs) s += ",mc_acc_" + l + ",mc_acc_norm_" + l + ",mc_acc_norm_se_" + l + ",mc_chance_" + l;
  s += ",train_seconds,tokens_per_second\n";
  auto line = [&](const std::string& id, const RunSpec* r) {
    const auto it = results.find(id);
    if (it == results.end()) return;
    const nlohmann::json& j = it->second;
    if (r)
      s += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{}", csv_field(id), r->backbone, r->new_domain, r->method,
                       r->gate, r->init, num(r->alpha), num(r->bce_weight), method_info(r->method).family == MethodFamily::full ? "" : num(r->extra),
                       num(r->p), num(r->lr), csv_number(j, "steps"), csv_number(j, "batch"));
    else
      s += fmt::format("{},{},,backbone,,,,,,,,{},{}", csv_field(id), id.substr(9), csv_number(j, "pretrain_steps"),
                       csv_number(j, "pretrain_batch"));
    for (const std::string& d : domains) {
      const auto v = metric_value(j, "bpb:" + d);
      s += "," + (v ? fmt::format("{:.6f}", *v) : std::string());
    }
    for (const std::string& d : kl_domains) {
      const auto v = metric_value(j, "kl:" + d);
      s += "," + (v ? fmt::format("{:.6f}", *v) : std::string());
    }
    auto pct = [](std::optional<double> v) { return v ? fmt::format("{:.2f}", *v) : std::string(); };
    for (const std::string& l : langs)
      s += "," + pct(metric_value(j, "mcacc:" + l)) + "," + pct(metric_value(j, "mc:" + l)) + "," + pct(mc_stderr(j, l)) +
           "," + pct(metric_value(j, "chance:" + l));
    s += "," + csv_number(j, "train_seconds") + "," + csv_number(j, "tokens_per_second") + "\n";
  };
  for (const std::string& bb : t.backbones) line(backbone_id(bb), nullptr);
  for (const RunSpec& r : t.runs) line(r.id, &r);
  return s;
}

// results.json of a table: the preset, the rows as printed, and every run (spec + results).
inline nlohmann::json table_json(const TableSpec& t, const Preset& preset,
                                 const std::map<std::string, nlohmann::json>& results) {
  nlohmann::json rows = nlohmann::json::array();
  for (const Row& row : t.rows) {
    nlohmann::json values = nlohmann::json::array();
    for (const Cell& c : row.cells) {
      const auto it = results.find(c.run);
      const auto v = it == results.end() ? std::nullopt : metric_value(it->second, c.metric);
      values.push_back({{"run", c.run}, {"metric", c.metric}, {"value", v ? nlohmann::json(*v) : nlohmann::json()}});
    }
    rows.push_back({{"labels", row.labels}, {"values", values}});
  }
  nlohmann::json runs = nlohmann::json::array();
  for (const std::string& bb : t.backbones) {
    const auto it = results.find(backbone_id(bb));
    runs.push_back({{"id", backbone_id(bb)}, {"method", "backbone"},
                    {"results", it == results.end() ? nlohmann::json() : it->second}});
  }
  for (const RunSpec& r : t.runs) {
    const auto it = results.find(r.id);
    runs.push_back({{"id", r.id}, {"backbone", r.backbone}, {"new", r.new_domain}, {"method", r.method},
                    {"gate", r.gate}, {"init", r.init}, {"alpha", r.alpha}, {"bce_weight", r.bce_weight},
                    {"extra", r.extra}, {"p", r.p}, {"lr", r.lr},
                    {"results", it == results.end() ? nlohmann::json() : it->second}});
  }
  return {{"table", t.name}, {"title", t.title}, {"caption", t.caption},
          {"preset", {{"name", preset.name}, {"model", preset.model}, {"pretrain_steps", preset.pretrain_steps},
                      {"pretrain_batch", preset.pretrain_batch}, {"steps", preset.steps}, {"batch", preset.batch},
                      {"eval_tokens", preset.eval_tokens}, {"mc_items", preset.mc_items},
                      {"mc_shots", preset.mc_shots}}},
          {"label_headers", t.label_headers}, {"headers", t.headers}, {"rows", rows}, {"runs", runs}};
}

// ---- figures ------------------------------------------------------------------------------

// Figure 1: x = en-ood BPB (forgetting), y = new-language BPB (learning); one point per run of a
// series (a method), joined in learning-rate order; the backbone as its own marker. With
// `forgetting` = "kl:en-ood" the x axis is how far English moved from the backbone instead (the
// backbone at 0, its divergence from itself).
inline SvgPlot figure1(const TableSpec& t, const std::map<std::string, nlohmann::json>& results,
                       const std::string& forgetting = "bpb:en-ood") {
  const bool kl = forgetting.rfind("kl:", 0) == 0;
  SvgPlot plot;
  plot.title = t.figure1 == "curves"
                   ? fmt::format("Learning or forgetting? Four learning rates per method (learning {})", t.new_domain)
                   : fmt::format("Learning or forgetting? One run per method, p = 0.1 (learning {})", t.new_domain);
  plot.xlabel = kl ? "change of English: KL(backbone || model) on en-ood, bits per byte"
                   : "forgetting: en-ood BPB (lower is better)";
  plot.ylabel = fmt::format("learning: {} BPB (lower is better)", t.new_domain);
  const std::string xm = forgetting, ym = "bpb:" + t.new_domain;
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::pair<double, std::pair<double, double>>>> by_series;  // lr -> point
  for (const RunSpec& r : t.runs) {
    if (r.series.empty()) continue;
    const auto it = results.find(r.id);
    if (it == results.end()) continue;
    const auto x = metric_value(it->second, xm), y = metric_value(it->second, ym);
    if (!x || !y) continue;
    if (!by_series.count(r.series)) order.push_back(r.series);
    by_series[r.series].push_back({r.lr, {*x, *y}});
  }
  for (const std::string& name : order) {
    auto pts = by_series[name];
    std::sort(pts.begin(), pts.end());
    SvgSeries s{.label = name, .points = {}, .line = true, .markers = true, .color = ""};
    for (const auto& [lr, p] : pts) s.points.push_back(p);
    plot.series.push_back(s);
  }
  for (const std::string& bb : t.backbones) {
    const auto it = results.find(backbone_id(bb));
    if (it == results.end()) continue;
    const auto x = kl ? std::optional<double>(0.0) : metric_value(it->second, xm), y = metric_value(it->second, ym);
    if (x && y)
      plot.series.push_back(SvgSeries{.label = bb == "en" ? "Backbone" : "Backbone (ML)", .points = {{*x, *y}},
                                          .line = false, .markers = true, .color = "#000000"});
  }
  return plot;
}

// Several plots side by side in one SVG document.
inline std::string side_by_side(const std::vector<SvgPlot>& plots) {
  int width = 0, height = 0;
  for (const SvgPlot& p : plots) {
    width += p.width;
    height = std::max(height, p.height);
  }
  std::string svg = fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                                "width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n", width, height);
  int x = 0;
  for (const SvgPlot& p : plots) {
    std::string one = p.render();
    const size_t start = one.find("<svg");
    svg += fmt::format("<g transform=\"translate({},0)\">\n{}</g>\n", x, one.substr(start));
    x += p.width;
  }
  return svg + "</svg>\n";
}

// The layers Figure 3 shows: first, middle, last (the paper's 0, 7, 15 of 16).
inline std::vector<int64_t> figure3_layers(int64_t layers) {
  std::vector<int64_t> l;
  for (int64_t x : {int64_t{0}, (layers - 1) / 2, layers - 1})
    if (l.empty() || l.back() != x) l.push_back(x);
  return l;
}

// Figure 3: normalised singular values of the adapters' gate_proj (W_gate) against the backbone
// FFN's gate_proj, one panel per layer. `spectra[label][layer]`: normalized_singular_values
// (report/spectrum.hpp) of each matrix, curves drawn in `order`.
inline std::string figure3(const std::map<std::string, std::map<int64_t, std::vector<double>>>& spectra,
                           const std::vector<std::string>& order, const std::vector<int64_t>& layers) {
  std::vector<SvgPlot> plots;
  for (int64_t l : layers) {
    SvgPlot p;
    p.width = 520;
    p.height = 380;
    p.title = fmt::format("gate_proj singular values, layer {}", l);
    p.xlabel = "index";
    p.ylabel = "singular value / largest";
    for (const std::string& name : order) {
      const auto it = spectra.find(name);
      if (it == spectra.end() || !it->second.count(l)) continue;
      SvgSeries s{.label = name, .points = {}, .line = true, .markers = false, .color = ""};
      const std::vector<double>& v = it->second.at(l);
      for (size_t i = 0; i < v.size(); ++i) s.points.push_back({static_cast<double>(i), v[i]});
      if (name == "Backbone") s.color = "#000000";
      p.series.push_back(s);
    }
    plots.push_back(p);
  }
  return side_by_side(plots);
}

// Short legend labels for the runs of a table: the method, then only the settings that differ
// between the table's runs of that method ("neutral x0.05", "lora lr0.012", "sigmoid he a0 bce1",
// "adapter ml").
inline std::map<std::string, std::string> run_labels(const std::vector<RunSpec>& runs) {
  auto varies = [&](const std::string& method, auto field) {
    std::set<std::string> values;
    for (const RunSpec& r : runs)
      if (method.empty() || r.method == method) values.insert(field(r));
    return values.size() > 1;
  };
  std::map<std::string, std::string> out;
  for (const RunSpec& r : runs) {
    const std::string& m = r.method;
    std::string s = m == GatedSigmoidMethod::name ? "sigmoid" : m;  // short legend
    if (varies("", [](const RunSpec& x) { return x.backbone; })) s += " " + r.backbone;
    if (varies(m, [](const RunSpec& x) { return num(x.p); })) s += " p" + num(r.p);
    if (varies(m, [](const RunSpec& x) { return num(x.lr); })) s += " lr" + num(r.lr);
    if (varies(m, [](const RunSpec& x) { return num(x.extra); })) s += " x" + num(r.extra);
    if (varies(m, [](const RunSpec& x) { return x.init; })) s += r.init == "low-variance" ? " lowvar" : " " + r.init;
    if (varies(m, [](const RunSpec& x) { return num(x.alpha); })) s += " a" + num(r.alpha);
    if (varies(m, [](const RunSpec& x) { return num(x.bce_weight); })) s += " bce" + num(r.bce_weight);
    out[r.id] = s;
  }
  return out;
}

// (step, loss) of a train_log.jsonl, the last record of each step (a resumed run logs again the
// steps after its checkpoint), smoothed by a trailing mean over `window` steps.
inline std::vector<std::pair<double, double>> loss_curve(const std::string& jsonl, int window = 10) {
  std::map<int64_t, double> by_step;
  std::istringstream in(jsonl);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j.contains("loss") || !j["loss"].is_number() || !j["step"].is_number())
      continue;
    by_step[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  std::vector<std::pair<double, double>> out;
  std::vector<double> last;
  for (const auto& [step, loss] : by_step) {
    last.push_back(loss);
    if (static_cast<int>(last.size()) > window) last.erase(last.begin());
    double sum = 0.0;
    for (double v : last) sum += v;
    out.push_back({static_cast<double>(step), sum / static_cast<double>(last.size())});
  }
  return out;
}

}  // namespace nr::recipes
