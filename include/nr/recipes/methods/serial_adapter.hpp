// nr/recipes/methods/serial_adapter.hpp — `serial-adapter`: the bottleneck adapter of Houlsby et
// al. (2019) / Pfeiffer et al. (2021), placed after the FFN instead of beside it:
//
//   f = FFN(RMSNorm(h));   out = h + f + a(f),   a(f) = W_out(silu(W_gate n) * (W_in n)), n = RMSNorm(f)
//
// (nn/block.hpp site ffn_serial, ext/adapter.hpp without a gate; W_out starts at zero so the model
// starts as the backbone). It is the method added to show the recipe for a new method: this file and one entry
// in registry.hpp's MethodList (docs/architecture.md, "Adding a method").
#pragma once

#include "nr/recipes/methods/adapters.hpp"

namespace nr::recipes {

struct SerialAdapterMethod {
  static constexpr std::string_view name = "serial-adapter";
  static const MethodInfo& info() {
    static const MethodInfo m{.name = "serial-adapter", .label = "Serial adapters", .family = MethodFamily::adapter,
                              .trains_backbone = false, .migu = false,
                              .summary = "nr::AdapterLlama<NoGate> after the FFN; adapters train",
                              .fields = adapter_fields(),
                              .defaults = {.lr = 5e-3, .gate = "none", .init = "he", .site = "ffn-serial",
                                           .alpha = 0.0, .bce_weight = 0.0}};
    return m;
  }
  template <class F>
  static auto build(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
    return build_adapter_model(spec, config, seed, f);
  }
};

}  // namespace nr::recipes
