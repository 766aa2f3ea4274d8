// nrlab/cmd_prune.hpp — `nrlab prune`: remove the experts a text does not use from a
// mixture-of-experts checkpoint (ModuleFormer, Section 5.3; ext/expert_pruning.hpp), by
// nr::recipes::run_prune (nr/recipes/prune.hpp); this file parses and prints.
//
//   nrlab prune --checkpoint MOE --text FILE --threshold 0.3 --out PRUNED
//
//   1. count[l][e]: the tokens of FILE (cut into windows of the model's context) whose top-k
//      selected expert e of layer l;
//   2. f[l][e] = count[l][e] / max_e' count[l][e'], and every expert with f[l][e] < t is removed
//      (its three matrices and its row of the router's expert embedding A); a layer keeps at
//      least its top k experts, and a layer that routed no token is left alone;
//   3. the smaller model is written to OUT (model.safetensors, then config.json with the
//      per-layer expert counts under "nr" -> "moe" -> "layer_experts", each file written
//      atomically), reloaded from disk and evaluated again as a check.
// The report (stderr, OUT/results.json and one JSON line on stdout) holds the parameters before
// and after, the experts removed in each layer and the BPB of FILE before and after. MOE is a
// checkpoint of `nrlab pretrain --arch moe` (or one pruned before); a model with inserted experts
// is refused (prune its backbone, then extend).
#pragma once

#include "common.hpp"

namespace nrlab {

struct PruneCommand {
  PruneOptions run;
  int threads = 0;
};

inline void run_prune_command(PruneCommand& cmd) {
  apply_threads(cmd.threads);
  const nlohmann::json r = run_prune(cmd.run);
  std::string table = fmt::format("{:>5} {:>8} {:>8}  {}\n", "layer", "experts", "kept", "normalised frequency");
  for (const nlohmann::json& row : r["layers"]) {
    std::string freq;
    for (const nlohmann::json& f : row["frequency"]) freq += fmt::format(" {:.2f}", f.get<double>());
    table += fmt::format("{:>5} {:>8} {:>8} {}\n", row["layer"].get<int64_t>(), row["experts_before"].get<int64_t>(),
                         row["experts_after"].get<int64_t>(), freq);
  }
  const auto before = r["parameters_before"].get<int64_t>(), after = r["parameters_after"].get<int64_t>();
  fmt::print(stderr, "[prune] expert activations on {} tokens of {}, threshold {}\n{}", r["tokens"].get<int64_t>(),
             cmd.run.text, cmd.run.threshold, table);
  fmt::print(stderr, "[prune] parameters {} -> {} ({} removed, {:.1f}%); bpb {:.4f} -> {:.4f}; wrote {}\n", before,
             after, before - after, 100.0 * (1.0 - static_cast<double>(after) / static_cast<double>(before)),
             r["bpb_before"].get<double>(), r["bpb_after"].get<double>(), cmd.run.out);
  fmt::print("{}\n", r.dump());
}

inline void register_prune_command(CLI::App& app) {
  auto cmd = std::make_shared<PruneCommand>();
  PruneOptions* o = &cmd->run;
  CLI::App* c = app.add_subcommand("prune", "Remove the experts a text rarely uses from a mixture-of-experts checkpoint "
                                            "(ModuleFormer expert pruning)");
  c->add_option("--checkpoint", o->checkpoint, "Mixture-of-experts checkpoint (nrlab pretrain --arch moe)")->required();
  c->add_option("--text", o->text, "UTF-8 text whose expert activations are counted and whose BPB is reported")
      ->required();
  c->add_option("--threshold", o->threshold,
                "Remove experts whose activation count, divided by the layer's largest, is below this")
      ->capture_default_str()
      ->check(between(0.0, 1.0));
  c->add_option("--out", o->out, "Directory for the pruned checkpoint")->required();
  c->add_option("--ctx", o->ctx, "Window length (default: the model's context)")->check(non_negative());
  c->add_option("--batch", o->batch, "Windows per forward pass")->capture_default_str()->check(at_least(1));
  c->add_option("--eval-tokens", o->eval_tokens, "Bytes of the text used at most (0 = all)")
      ->capture_default_str()
      ->check(non_negative());
  c->add_option("--threads", cmd->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([cmd]() { run_prune_command(*cmd); });
}

}  // namespace nrlab
