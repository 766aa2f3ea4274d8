// nrlab/cmd_reproduce.hpp — `nrlab reproduce TABLE`: run the experiments behind one of the
// paper's tables at small scale and print it (nr::recipes::reproduce_table, nr/recipes/reproduce.hpp;
// this file parses, lists and prints).
//
//   nrlab reproduce table2 --preset quick --corpus cache/corpus     the demo (minutes on 2 cores)
//   nrlab reproduce table2 --extra-methods                          + gated-sigmoid, new experts, MIGU rows
//   nrlab reproduce table8 --preset quick                           Figure 1's curves
//   nrlab reproduce all --preset paper --runs runs                  everything, as big as a CPU allows
//   nrlab reproduce table4 --list                                   the runs and their state
//
// 1. The corpus must exist (`nrlab corpus`); its multiple-choice items (CORPUS/mc) are built
//    when missing.
// 2. Each backbone the table needs is pretrained once into RUNS/backbone-{en,ml} (reused when
//    its results.json shows a finished run of the preset) and evaluated once (eval.json: BPB of
//    en, en-ood, fr, de; multiple choice when the table has tasks).
// 3. Every run of the table (nr/recipes/tables.hpp) is executed in-process by
//    nr::recipes::run_extend, the function behind `nrlab extend`, into RUNS/ext/<run id>: finished
//    runs are reused (also across tables), interrupted ones resume from their training state.
//    Ctrl-C stops cleanly after the current step; the same command resumes.
// 4. RUNS/<table>/ receives results.md (printed on stdout too), results.csv, results.json,
//    curves.svg (training loss of every run), figure1.svg (tables 2 and 8) and figure3.svg
//    (gate_proj spectra, tables with adapter runs).
// RUNS is --runs DIR / PRESET (default runs/quick), so the presets never mix; --steps,
// --pretrain-steps, --batch, --eval-tokens, --mc-items, --ctx and --backbone override the
// preset's numbers and put the runs into RUNS = DIR/custom; --precision and --seed add their
// value to the directory's name (DIR/smol-seed2). --p chooses Table 2's mix rates (its runs are
// the same runs whichever columns are shown).
//
//   nrlab reproduce table2 --backbone MODEL.gguf --ctx 256 ...      extend a pretrained model instead
//                                                                   of pretraining one (its tokenizer)
#pragma once

#include <fmt/ranges.h>

#include "common.hpp"
#include "downstream.hpp"

namespace nrlab {

struct ReproduceCommand {
  ReproduceOptions run;
  std::string table;
  int threads = 0;
  bool list = false;
};

// The runs of a table and their state (--list).
inline void list_table(const std::string& name, const ReproduceOptions& o) {
  const TableSpec t = table_of(name, o);
  const fs::path root = fs::path(o.runs) / effective_preset(o).name;
  fmt::print("{} ({} runs)\n", t.title, t.runs.size());
  const Preset preset = effective_preset(o);
  for (const std::string& bb : t.backbones)
    fmt::print("  {:<58} {}\n", backbone_id(bb),
               !preset.backbone.empty() ? "pretrained: " + preset.backbone
               : fs::exists(root / backbone_id(bb) / "results.json") ? std::string("finished")
                                                                     : std::string("to pretrain"));
  for (const RunSpec& r : t.runs) fmt::print("  {:<58} {}\n", r.id, state_name(run_state(run_dir(root, r.id))));
}

inline int run_reproduce_command(ReproduceCommand& cmd) {
  apply_threads(cmd.threads);
  install_stop_handlers();
  ReproduceOptions& o = cmd.run;
  o.show_progress = true;
  o.stop = &stop_signal();
  o.on_message = to_stderr();
  o.build_mc_items = [](const fs::path& corpus) { write_mc_items(corpus); };
  const std::vector<std::string> tables = cmd.table == "all" ? table_names() : std::vector<std::string>{cmd.table};
  for (const std::string& t : tables) {
    if (cmd.list) {
      list_table(t, o);
      continue;
    }
    const TableOutcome r = reproduce_table(t, o);
    if (r.status != 0) return r.status;
    fmt::print("{}\n{}", r.markdown, r.chance.empty() ? "" : fmt::format("Multiple-choice chance level: {}\n", r.chance));
    if (!r.generations.empty()) fmt::print("\n{}", r.generations);
    fmt::print(stderr, "[reproduce] {} done in {} ({} runs reused, {} resumed, {} trained); wrote {} into {}\n", t,
               nr::format_duration(r.seconds), r.runner.skipped, r.runner.resumed, r.runner.started,
               fmt::join(r.written, ", "), r.out.string());
  }
  return 0;
}

inline void register_reproduce_command(CLI::App& app) {
  auto cmd = std::make_shared<ReproduceCommand>();
  ReproduceOptions* o = &cmd->run;
  CLI::App* c = app.add_subcommand("reproduce", "Run the experiments behind one of the paper's tables (small scale) and "
                                                "print it, with CSV, JSON and SVG figures");
  std::vector<std::string> names = table_names();
  names.push_back("all");
  c->add_option("table", cmd->table, "table1 ... table8, or all")->required()->check(CLI::IsMember(names));
  c->add_option("--preset", o->preset, "quick (minutes on 2 cores), paper (as faithful as a CPU allows) or smol (SmolLM2-135M, the real "
                                     "model: scripts/fetch_model.sh smollm2)")
      ->capture_default_str()
      ->check(CLI::IsMember(preset_names()));
  c->add_option("--corpus", o->corpus, "Corpus directory (nrlab corpus --out DIR)")->capture_default_str();
  c->add_option("--runs", o->runs, "Runs directory; everything goes into RUNS/PRESET")->capture_default_str();
  c->add_option("--threads", cmd->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->add_option("--pretrain-steps", o->pretrain_steps, "Override: backbone pretraining steps (runs go to RUNS/custom)")
      ->check(at_least(1));
  c->add_option("--steps", o->steps, "Override: steps of every extension run (runs go to RUNS/custom)")
      ->check(at_least(1));
  c->add_option("--batch", o->batch, "Override: sequences per step, pretraining and extension (runs go to RUNS/custom)")
      ->check(at_least(1));
  c->add_option("--backbone", o->backbone,
                "Override: extend this pretrained English model (GGUF file, Hugging Face directory, nr backbone, or "
                "'smollm2' as fetched by scripts/fetch_model.sh) instead of pretraining one (runs go to RUNS/custom)");
  add_optional(c, "--ctx", o->ctx, "Override: tokens per sequence of every run and evaluation (runs go to RUNS/custom)")
      ->check(at_least(2));
  c->add_option("--eval-tokens", o->eval_tokens, "Override: tokens of each valid set (bytes for byte-level models), "
                                                 "0 = all (runs go to RUNS/custom)")
      ->check(non_negative());
  c->add_option("--mc-items", o->mc_items, "Override: multiple-choice items per language (runs go to RUNS/custom)")
      ->check(at_least(1));
  c->add_option("--precision", o->precision,
                "Override: products of the training steps, fp32, bf16 or auto (default: the preset's; smol: auto, "
                "quick and paper: fp32); runs go to RUNS/PRESET-PRECISION")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
  c->add_option("--seed", o->seed, "Seed of every extension run (initialisation and data order); other than 1: runs "
                                   "go to RUNS/PRESET-seedN, to measure the noise of a table")
      ->capture_default_str();
  c->add_flag("--list", cmd->list, "List the table's runs and their state (finished, partial, fresh); train nothing");
  c->add_option("--p", o->table2_p, "Table 2's mix rates, one column pair each (default: 0 and 0.1, the paper's)")
      ->delimiter(',')
      ->expected(1, 4);
  c->add_flag("--extra-methods", o->extra_methods,
              "Table 2 also gets rows for sigmoid-gated adapters, new experts (ModuleFormer), MIGU finetuning and MIGU LoRA");
  c->callback([cmd]() {
    const int rc = run_reproduce_command(*cmd);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace nrlab
