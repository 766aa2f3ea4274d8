// nrlab/cmd_prune.hpp — `nrlab prune`: remove the experts a text does not use from a
// mixture-of-experts checkpoint (ModuleFormer, Section 5.3; ext/expert_pruning.hpp).
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

#include <nr/ext/expert_pruning.hpp>

#include "extension.hpp"

namespace nrlab {

struct PruneOptions {
  std::string checkpoint, text, out;
  double threshold = 0.3;
  int64_t ctx = 0, batch = 16, eval_tokens = 0;
  int threads = 0;
  bool print_json = true;
};

// Runs `nrlab prune` in-process; the report (results.json's content) in *report_out.
inline int run_prune_command(const PruneOptions& o, nlohmann::json* report_out = nullptr) {
  apply_threads(o.threads);
  if (!(o.threshold >= 0.0 && o.threshold <= 1.0))
    throw nr::ValueError(fmt::format("--threshold must be in [0, 1], got {}", o.threshold));
  if (fs::exists(o.out) && fs::exists(o.checkpoint) && fs::equivalent(o.out, o.checkpoint))
    throw nr::ValueError(fmt::format("--out {} would overwrite the input; choose another directory", o.out));
  const fs::path config_file = fs::path(o.checkpoint) / nr::config_file_name;
  const nr::ConfigJsonDocument doc = nr::load_config_json_document(config_file);
  const nlohmann::json nr_fields = doc.json.value("nr", nlohmann::json::object());
  if (!is_moe_checkpoint(nr_fields))
    throw nr::ValueError(fmt::format("{} is not a mixture-of-experts checkpoint (no \"nr\" -> \"moe\" in config.json); "
                                     "pretrain one with `nrlab pretrain --arch moe`", o.checkpoint));
  MoeArch arch = moe_arch_of(nr_fields, doc.config, config_file.string());
  if (arch.moe.new_experts.count > 0)
    throw nr::ValueError(fmt::format("{} holds {} inserted experts per layer; prune the backbone it was extended from",
                                     o.checkpoint, arch.moe.new_experts.count));
  std::vector<int32_t> tokens = tokenize(nr::read_file(o.text));
  if (o.eval_tokens > 0 && static_cast<int64_t>(tokens.size()) > o.eval_tokens)
    tokens.resize(static_cast<size_t>(o.eval_tokens));
  if (tokens.size() < 2) throw nr::ValueError(fmt::format("{} holds fewer than 2 bytes: nothing to count", o.text));
  const int64_t ctx = o.ctx > 0 ? o.ctx : doc.config.max_position_embeddings;

  return with_moe_model(doc.config, arch.moe, arch.attention, 0, [&](auto& model) {
    using Model = std::decay_t<decltype(model)>;
    nr::load_model_weights(o.checkpoint, model);
    const nr::BpbResult before = nr::bits_per_byte(model, tokens, ctx, o.batch);
    const nr::ExpertActivationCounts counts = nr::count_expert_activations(model, tokens, ctx, o.batch);
    const nr::PruneReport report = nr::prune_experts(model, counts, o.threshold);
    report.apply_to(arch.moe);

    nlohmann::json fields = nr_fields;
    fields["moe"] = nr::moe_config_to_json(arch.moe, doc.config);
    fields["pruned"] = {{"from", o.checkpoint}, {"text", o.text}, {"threshold", o.threshold}};
    nr::save_model(o.out, model, doc.config, fields);

    // The check: the saved model, rebuilt from its own config.json, evaluates as the pruned one.
    const MoeArch saved = moe_arch_of(fields, doc.config, (fs::path(o.out) / nr::config_file_name).string());
    Model reloaded = nr::make_moe_model<Model>(doc.config, saved.moe, 0);
    nr::load_model_weights(o.out, reloaded);
    const nr::BpbResult after = nr::bits_per_byte(reloaded, tokens, ctx, o.batch);

    nlohmann::json layers = nlohmann::json::array();
    for (size_t l = 0; l < report.experts_before.size(); ++l) {
      std::vector<double> freq = counts.per_layer[l];
      const double top = freq.empty() ? 0.0 : *std::max_element(freq.begin(), freq.end());
      for (double& f : freq) f = top > 0.0 ? f / top : 0.0;
      layers.push_back({{"layer", l}, {"experts_before", report.experts_before[l]},
                        {"experts_after", report.experts_after[l]}, {"removed", report.removed[l]},
                        {"frequency", freq}});
    }
    const nlohmann::json result = {
        {"checkpoint", o.checkpoint}, {"text", o.text}, {"threshold", o.threshold}, {"out", o.out},
        {"tokens", counts.tokens}, {"parameters_before", report.parameters_before},
        {"parameters_after", report.parameters_after}, {"parameters_removed", report.parameters_removed()},
        {"bpb_before", before.bpb}, {"bpb_after", after.bpb}, {"layers", layers}};
    nr::write_file_atomic(fs::path(o.out) / "results.json", result.dump(2) + "\n");

    std::string table = fmt::format("{:>5} {:>8} {:>8}  {}\n", "layer", "experts", "kept", "normalised frequency");
    for (const nlohmann::json& row : layers) {
      std::string freq;
      for (const nlohmann::json& f : row["frequency"]) freq += fmt::format(" {:.2f}", f.get<double>());
      table += fmt::format("{:>5} {:>8} {:>8} {}\n", row["layer"].get<int64_t>(), row["experts_before"].get<int64_t>(),
                           row["experts_after"].get<int64_t>(), freq);
    }
    fmt::print(stderr, "[prune] expert activations on {} tokens of {}, threshold {}\n{}", counts.tokens, o.text,
               o.threshold, table);
    fmt::print(stderr, "[prune] parameters {} -> {} ({} removed, {:.1f}%); bpb {:.4f} -> {:.4f}; wrote {}\n",
               report.parameters_before, report.parameters_after, report.parameters_removed(),
               100.0 * (1.0 - report.remaining_ratio()), before.bpb, after.bpb, o.out);
    if (o.print_json) fmt::print("{}\n", result.dump());
    if (report_out) *report_out = result;
    return 0;
  });
}

inline void register_prune_command(CLI::App& app) {
  auto o = std::make_shared<PruneOptions>();
  CLI::App* c = app.add_subcommand("prune", "Remove the experts a text rarely uses from a mixture-of-experts checkpoint "
                                            "(ModuleFormer expert pruning)");
  c->add_option("--checkpoint", o->checkpoint, "Mixture-of-experts checkpoint (nrlab pretrain --arch moe)")->required();
  c->add_option("--text", o->text, "UTF-8 text whose expert activations are counted and whose BPB is reported")
      ->required();
  c->add_option("--threshold", o->threshold,
                "Remove experts whose activation count, divided by the layer's largest, is below this")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--out", o->out, "Directory for the pruned checkpoint")->required();
  c->add_option("--ctx", o->ctx, "Window length (default: the model's context)")->check(CLI::NonNegativeNumber);
  c->add_option("--batch", o->batch, "Windows per forward pass")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--eval-tokens", o->eval_tokens, "Bytes of the text used at most (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([o]() { run_prune_command(*o); });
}

}  // namespace nrlab
