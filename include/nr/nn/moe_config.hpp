// nr/nn/moe_config.hpp — the settings of ModuleFormer-style mixture-of-experts layers.
//
// ModuleFormer (Shen et al. 2023) describes an SMoE layer by a 3-tuple (E, k, h): E feed-forward
// experts, the top k of them active per token, each with hidden width h (Section 3.1); a mixture
// of attention heads (MoA) layer likewise has E_a attention experts of which k_a are active. The
// ModelConfig keeps the Hugging Face Llama fields (width, depth, heads, vocabulary); everything
// the experts add lives here, in one aggregate built with designated initialisers:
//   nr::MoeConfig{.num_experts = 8, .top_k = 2, .mi_weight = 0.01}
// It travels next to the ModelConfig: nn/moe_model.hpp builds a model from both, and
// io/moe_config_json.hpp stores it in config.json under "nr" -> "moe".
//
// Defaults that depend on the ModelConfig are 0 here and resolved by the accessors:
//   expert_hidden 0   -> intermediate_size / top_k: a token then activates as many FFN units as
//                        the dense model of the same ModelConfig (equal active compute);
//   router_hidden 0   -> hidden_size, the width D_emb of the MLP router;
//   attention_expert_heads 0 -> num_key_value_heads: each attention expert owns one query head
//                        per shared key/value head, as in ModuleFormer's released code.
// layer_experts records per-layer expert counts once expert pruning (Section 5.3) has made them
// differ; empty means num_experts in every layer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/nn/config.hpp"

namespace nr {

// How the router turns a token x (C) into expert logits.
//   mlp:    logits = A gelu(W x),  W (D_emb, C) the input projection, A (E, D_emb) the expert
//           embedding matrix (ModuleFormer Eq. 1-2);
//   linear: logits = A x,          A (E, C) (Shazeer et al. 2017, Switch).
enum class RouterKind { mlp, linear };

inline const char* router_kind_name(RouterKind k) { return k == RouterKind::mlp ? "mlp" : "linear"; }

inline RouterKind router_kind_from_name(const std::string& name) {
  if (name == "mlp") return RouterKind::mlp;
  if (name == "linear") return RouterKind::linear;
  throw ValueError(fmt::format("unknown router kind '{}' (mlp, linear)", name));
}

// How experts inserted into a pretrained MoE layer (Section 4.3) are routed.
//   shared_top_k: Eq. 9 as written. The router scores old and new experts together,
//                 g = TopK(softmax([A; A'] gelu(W x))), and new experts compete with the old
//                 ones for the same k slots. The layer's output changes at insertion: new
//                 experts can take slots, and their probability mass dilutes the old gates.
//   extra_slots:  the old experts keep their routing exactly (top k of softmax(A gelu(W x)));
//                 each token also goes to the top new_experts.top_k new experts, weighted by
//                 their Eq. 9 probability softmax([A; A'] gelu(W x))_e. With zero-initialised
//                 output matrices the layer is exactly the old one at insertion.
enum class NewExpertRouting { shared_top_k, extra_slots };

inline const char* new_expert_routing_name(NewExpertRouting r) {
  return r == NewExpertRouting::shared_top_k ? "shared_top_k" : "extra_slots";
}

inline NewExpertRouting new_expert_routing_from_name(const std::string& name) {
  if (name == "shared_top_k") return NewExpertRouting::shared_top_k;
  if (name == "extra_slots") return NewExpertRouting::extra_slots;
  throw ValueError(fmt::format("unknown new-expert routing '{}' (shared_top_k, extra_slots)", name));
}

// New experts added to every MoE layer of a pretrained model (ModuleFormer Section 4.3).
struct NewExpertsConfig {
  int64_t count = 0;                                         // E', new experts per layer
  NewExpertRouting routing = NewExpertRouting::shared_top_k;
  int64_t top_k = 1;                                         // extra slots per token (extra_slots)
  double routing_reg_weight = 0.0;                           // lambda of Eq. 10: lambda ||A'||_F^2
  double init_std = 0.02;  // W_gate, W_up of new experts and the new router rows A' ~ N(0, std^2)
};

struct MoeConfig {
  // Feed-forward experts (SMoE).
  int64_t num_experts = 8;   // E
  int64_t top_k = 2;         // k
  int64_t expert_hidden = 0; // h (0: intermediate_size / top_k)
  RouterKind router = RouterKind::mlp;
  int64_t router_hidden = 0;       // D_emb of the MLP router (0: hidden_size)
  bool normalize_top_k = false;    // renormalise the k selected probabilities to sum to 1
  // Auxiliary losses, pushed into ForwardContext::local_losses by every MoE and MoA layer.
  double mi_weight = 0.0;             // Eq. 7, load balancing for pretraining: H(e|x) - H(e)
  double concentration_weight = 0.0;  // Eq. 8, load concentration for fine-tuning: H(e)
  // Attention experts (MoA), used by MixtureOfAttention only.
  int64_t attention_experts = 4;       // E_a
  int64_t attention_top_k = 2;         // k_a
  int64_t attention_expert_heads = 0;  // query heads per attention expert (0: num_key_value_heads)
  // Per-layer expert counts after pruning (empty: num_experts in every layer).
  std::vector<int64_t> layer_experts = {};
  // Experts inserted after pretraining.
  NewExpertsConfig new_experts = {};

  int64_t hidden_of(const ModelConfig& c) const { return expert_hidden > 0 ? expert_hidden : c.intermediate_size / top_k; }
  int64_t router_hidden_of(const ModelConfig& c) const { return router_hidden > 0 ? router_hidden : c.hidden_size; }
  int64_t attention_heads_of(const ModelConfig& c) const {
    return attention_expert_heads > 0 ? attention_expert_heads : c.num_key_value_heads;
  }
  int64_t experts_in_layer(int64_t layer) const {
    return layer_experts.empty() ? num_experts : layer_experts.at(static_cast<size_t>(layer));
  }

  // Throws ValueError naming the first inconsistent field.
  void validate(const ModelConfig& c) const {
    auto positive = [](int64_t v, const char* name) {
      if (v < 1) throw ValueError(fmt::format("moe config: {} must be at least 1, got {}", name, v));
    };
    positive(num_experts, "num_experts");
    positive(top_k, "top_k");
    positive(attention_experts, "attention_experts");
    positive(attention_top_k, "attention_top_k");
    if (expert_hidden < 0 || router_hidden < 0 || attention_expert_heads < 0)
      throw ValueError("moe config: expert_hidden, router_hidden and attention_expert_heads must be >= 0 (0: default)");
    if (hidden_of(c) < 1)
      throw ValueError(fmt::format("moe config: intermediate_size {} / top_k {} leaves experts no hidden unit; set "
                                   "expert_hidden", c.intermediate_size, top_k));
    if (!layer_experts.empty() && static_cast<int64_t>(layer_experts.size()) != c.num_hidden_layers)
      throw ValueError(fmt::format("moe config: layer_experts lists {} layers, the model has {}", layer_experts.size(),
                                   c.num_hidden_layers));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (experts_in_layer(l) < top_k)
        throw ValueError(fmt::format("moe config: layer {} has {} experts, fewer than top_k = {}", l,
                                     experts_in_layer(l), top_k));
    if (attention_top_k > attention_experts)
      throw ValueError(fmt::format("moe config: attention_top_k {} exceeds attention_experts {}", attention_top_k,
                                   attention_experts));
    if (attention_heads_of(c) % c.num_key_value_heads != 0)
      throw ValueError(fmt::format("moe config: attention_expert_heads {} is not a multiple of num_key_value_heads {}",
                                   attention_heads_of(c), c.num_key_value_heads));
    if (mi_weight < 0.0 || concentration_weight < 0.0 || new_experts.routing_reg_weight < 0.0)
      throw ValueError("moe config: loss weights must be >= 0");
    if (new_experts.count < 0) throw ValueError("moe config: new_experts.count must be >= 0");
    if (new_experts.count > 0 && new_experts.routing == NewExpertRouting::extra_slots &&
        (new_experts.top_k < 1 || new_experts.top_k > new_experts.count))
      throw ValueError(fmt::format("moe config: new_experts.top_k {} must be in [1, new_experts.count = {}]",
                                   new_experts.top_k, new_experts.count));
  }
};

}  // namespace nr
