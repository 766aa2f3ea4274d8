// nr/ext/insert_experts.hpp — continual learning by inserting new experts into a pretrained MoE
// model (ModuleFormer, Section 4.3).
//
// insert_experts adds E' = cfg.count experts to the Experts FFN of every block, extends each
// router's expert embedding with E' new rows A' (Eq. 9: g = TopK(softmax([A; A'] gelu(W x)))),
// and freezes everything else, the old experts, the router's W and A included: only the new
// experts and A' train ("partially trainable router"). Tensor names of the new parameters
// contain ".new_experts." (model.layers.<l>.mlp.new_experts.<j>.*_proj.weight and
// model.layers.<l>.mlp.router.new_experts.expert_embedding.weight), so is_extension_parameter,
// freeze_backbone and load_backbone (ext/backbone.hpp) treat them as the extension: a pretrained
// MoE checkpoint loads into the extended model by name. Embeddings, norms and attention stay
// frozen as well; unfreeze them afterwards (set_requires_grad) for the paper's joint setting,
// which keeps the embedding layer trainable.
//
// Initialisation: W_gate, W_up of new experts and A' ~ N(0, init_std^2), W_down = 0, so the new
// experts output zero at first. Whether the model is then exactly the pretrained one depends on
// cfg.routing (nn/moe_config.hpp): with extra_slots it is (the old routing is untouched and new
// experts add zero); with shared_top_k (Eq. 9 as written) it is not, since new experts take
// top-k slots from old ones and their probability mass dilutes the old gates.
//
// Routing regularisation (Eq. 10), weight cfg.routing_reg_weight: each layer adds
// lambda ||A'||_F^2 to the local losses, which limits how strongly the router prefers the new
// experts and thus how much old-domain input they capture.
//
// Record cfg in MoeConfig::new_experts before saving, so that make_moe_model rebuilds the same
// structure when the checkpoint is loaded again.
#pragma once

#include <cstdint>

#include <fmt/format.h>

#include "nr/core/rng.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/moe_config.hpp"

namespace nr {

// Adds cfg.count new experts to every block's Experts FFN and freezes the rest of the model.
// Returns the number of trainable parameters.
template <class Model>
int64_t insert_experts(Model& model, const NewExpertsConfig& cfg, Rng& rng) {
  if (cfg.count < 1) throw ValueError(fmt::format("insert_experts: count must be at least 1, got {}", cfg.count));
  if (cfg.routing_reg_weight < 0.0) throw ValueError("insert_experts: routing_reg_weight must be >= 0");
  if (cfg.routing == NewExpertRouting::extra_slots && (cfg.top_k < 1 || cfg.top_k > cfg.count))
    throw ValueError(fmt::format("insert_experts: top_k {} must be in [1, count = {}] for extra slots", cfg.top_k,
                                 cfg.count));
  for (auto& layer : model.layers) layer.mlp.add_new_experts(cfg, rng);
  return freeze_backbone(model);
}

// The inserting overload that also records cfg in the model's MoeConfig.
template <class Model>
int64_t insert_experts(Model& model, MoeConfig& moe, const NewExpertsConfig& cfg, Rng& rng) {
  const int64_t trainable = insert_experts(model, cfg, rng);
  moe.new_experts = cfg;
  moe.new_experts.count = model.layers.front().mlp.num_experts() - model.layers.front().mlp.router.num_old();
  return trainable;
}

}  // namespace nr
