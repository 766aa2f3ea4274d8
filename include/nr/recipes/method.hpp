// nr/recipes/method.hpp — what a method is (a descriptor) and what a run asks of it (a spec).
//
//   MethodInfo      one per method, in the registry (registry.hpp): name, table label, family,
//                   what trains, the spec fields it takes (its config.json "nr" fields), and
//                   its defaults as std::optional (empty = sized from the budget at build time)
//   ExtensionSpec   one per run: the method's name and the fields the user set; every field is
//                   a std::optional, empty meaning "the method's default". resolve_defaults
//                   (registry.hpp) fills the defaults; the builder fills the sizes that come
//                   from the capacity budget (hidden, rank, lora_alpha, experts).
// A field set for a method that does not take it is an error naming the methods that do.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/ext/adapter.hpp"
#include "nr/ext/adapter_file.hpp"
#include "nr/ext/lora.hpp"
#include "nr/ext/new_experts.hpp"
#include "nr/optim/gradient_mask.hpp"

namespace nr::recipes {

// How a method extends the backbone; decides what is frozen, saved and reported.
enum class MethodFamily {
  full,     // trains every backbone weight, adds nothing (finetune, migu-finetune)
  lora,     // low-rank updates of the projections (lora, migu-lora)
  adapter,  // a block extension beside or after a sublayer (adapter, gated-sigmoid, neutral, ...)
  experts,  // routed new experts (experts)
};

inline const char* family_name(MethodFamily f) {
  switch (f) {
    case MethodFamily::full: return "full";
    case MethodFamily::lora: return "lora";
    case MethodFamily::adapter: return "adapter";
    case MethodFamily::experts: return "experts";
  }
  return "?";
}

// A method's defaults. Empty optionals are not defaults of this method: either the method does
// not take the field, or the builder sizes it (hidden, rank, lora_alpha, experts).
struct MethodDefaults {
  double lr = 5e-3;                                   // peak learning rate (docs/methods.md)
  std::optional<std::string> gate{}, init{}, site{};  // adapters
  std::optional<double> alpha{}, bce_weight{};        // adapters: l1 and BCE local-loss weights
  std::optional<std::vector<std::string>> lora_targets{};
  std::optional<int64_t> top_k{};                     // experts: k'
  std::optional<double> route_reg{}, concentration{}; // experts: Eq. 10 and Eq. 8 weights
  std::optional<double> migu_threshold{};             // MIGU: T
};

struct MethodInfo {
  std::string name{};               // `--method NAME`, config.json "nr".method
  std::string label{};              // row label in the tables ("Neutral residues")
  MethodFamily family = MethodFamily::full;
  bool trains_backbone = false;     // true: every weight trains; false: only the extension
  bool migu = false;                // the update is masked by MIGU (optim/gradient_mask.hpp)
  std::string summary{};            // one line: model type, what trains, local losses
  std::vector<std::string> fields{};  // spec fields taken (and written to config.json "nr")
  MethodDefaults defaults{};

  bool takes(std::string_view field) const {
    for (const std::string& f : fields)
      if (f == field) return true;
    return false;
  }
};

struct ExtensionSpec {
  std::string method = "neutral";
  // Adapters.
  std::optional<std::string> gate{};   // none, sigmoid, elu
  std::optional<std::string> init{};   // he, low-variance
  std::optional<std::string> site{};   // ffn-parallel, ffn-serial, attention-parallel
  std::optional<int64_t> hidden{};     // adapter width h, or each new expert's width (empty: budget)
  std::optional<double> alpha{};       // weight of the l1 local loss on original data
  std::optional<double> bce_weight{};  // weight of the sigmoid gate's classifier loss
  // LoRA.
  std::optional<int64_t> rank{};       // empty: budget
  std::optional<double> lora_alpha{};  // empty: 2 * rank (scaling 2)
  std::optional<std::vector<std::string>> lora_targets{};
  // New experts.
  std::optional<int64_t> experts{};        // E' (empty: 4 beside a dense FFN, budget in a MoE layer)
  std::optional<int64_t> top_k{};          // k'
  std::optional<double> route_reg{};       // lambda of Eq. 10
  std::optional<double> concentration{};   // load-concentration weight, Eq. 8 (MoE backbones)
  // MIGU: the fraction T of each weight's rows whose update is masked.
  std::optional<double> migu_threshold{};
  // Capacity budget: new parameters / backbone parameters (sizes what is left empty above).
  double extra = 0.2;

  // The ext/ configs; call after resolve_defaults and the build (the sizes must be set).
  AdapterConfig adapter_config() const {
    return AdapterConfig{.hidden = hidden.value_or(0), .site = parse_site(site.value_or("ffn-parallel")),
                         .init = parse_init(init.value_or("he")), .l1_weight = alpha.value_or(0.0),
                         .bce_weight = bce_weight.value_or(0.0)};
  }
  LoraConfig lora_config() const {
    LoraConfig c{.rank = rank.value_or(0), .alpha = lora_alpha.value_or(0.0)};
    if (lora_targets) c.targets = *lora_targets;
    return c;
  }
  NewExpertsAdapterConfig new_experts_config() const {
    return NewExpertsAdapterConfig{.num_experts = experts.value_or(0), .top_k = top_k.value_or(1),
                                   .hidden = hidden.value_or(0), .routing_reg_weight = route_reg.value_or(0.0)};
  }
  MiguConfig migu_config() const { return MiguConfig{.threshold = migu_threshold.value_or(0.0)}; }
};

// Calls f(key, flag, member) for every optional field of a spec: the one table that maps spec
// members to their config.json keys and command-line flags.
template <class Spec, class F>
void for_each_spec_field(Spec& s, F&& f) {
  f("gate", "--gate", s.gate);
  f("init", "--init", s.init);
  f("site", "--site", s.site);
  f("hidden", "--hidden", s.hidden);
  f("alpha", "--alpha", s.alpha);
  f("bce_weight", "--bce-weight", s.bce_weight);
  f("rank", "--rank", s.rank);
  f("lora_alpha", "--lora-alpha", s.lora_alpha);
  f("lora_targets", "--lora-targets", s.lora_targets);
  f("experts", "--experts", s.experts);
  f("top_k", "--top-k", s.top_k);
  f("route_reg", "--route-reg", s.route_reg);
  f("concentration", "--concentration-weight", s.concentration);
  f("migu_threshold", "--migu-threshold", s.migu_threshold);
}

}  // namespace nr::recipes
