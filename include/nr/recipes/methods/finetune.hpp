// nr/recipes/methods/finetune.hpp — `finetune`: every weight of the Llama backbone trains; nothing
// is added. The baseline that learns most and forgets most (the paper's "Finetuning" row).
#pragma once

#include "nr/nn/language_model.hpp"
#include "nr/recipes/method.hpp"

namespace nr::recipes {

struct FinetuneMethod {
  static constexpr std::string_view name = "finetune";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "finetune", .label = "Finetuning", .family = MethodFamily::full,
                              .trains_backbone = true, .migu = false,
                              .summary = "nr::Llama; every weight trains",
                              .fields = {}, .defaults = {.lr = 1e-3}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec&, const ModelConfig& config, uint64_t seed, F&& f) {
    Llama model(config, seed);
    return f(model);
  }
};

}  // namespace nr::recipes
