// nr/recipes/prune.hpp — the pruning run (`nrlab prune`): remove the experts a text does not use from a
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

#include <algorithm>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/tokenize/tokenizer.hpp"
#include "nr/eval/bpb.hpp"
#include "nr/ext/expert_pruning.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/recipes/models.hpp"

namespace nr::recipes {

struct PruneOptions {
  std::string checkpoint, text, out;
  double threshold = 0.3;
  int64_t ctx = 0, batch = 16, eval_tokens = 0;
};

// Runs a pruning (what `nrlab prune` does); returns the report (results.json's content).
template <Tokenizer Tok = ByteTokenizer>
nlohmann::json run_prune(const PruneOptions& o, const Tok& tokenizer = {}) {
  namespace fs = std::filesystem;
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
  std::vector<int32_t> tokens = tokenizer.encode(nr::read_file(o.text));
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
    nlohmann::json result = {
        {"checkpoint", o.checkpoint}, {"text", o.text}, {"threshold", o.threshold}, {"out", o.out},
        {"tokens", counts.tokens}, {"parameters_before", report.parameters_before},
        {"parameters_after", report.parameters_after}, {"parameters_removed", report.parameters_removed()},
        {"bpb_before", before.bpb}, {"bpb_after", after.bpb}, {"layers", layers}};
    nr::write_file_atomic(fs::path(o.out) / "results.json", result.dump(2) + "\n");

    return result;
  });
}

}  // namespace nr::recipes
