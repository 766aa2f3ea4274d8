// nr/recipes/registry.hpp — the method registry: one descriptor and one builder per method, and
// everything that used to compare method names (defaults, option checks, config.json "nr"
// fields, adapter_config.json, building the model type).
//
//   using Methods = MethodList<FinetuneMethod, LoraMethod, ...>;      the one list of methods
//   method_info("neutral")           its MethodInfo (name, label, family, defaults, fields)
//   resolve_defaults(spec)           fills the defaults, refuses fields of other methods
//   build_extended(spec, config, seed, f)
//                                    builds the method's model type over a random backbone of
//                                    `config` (load the real weights next), sizes and attaches
//                                    the extension from its seed stream (seeds.hpp) and returns
//                                    f(model); f is a generic lambda
//   spec_to_json / spec_from_json    config.json "nr" <-> ExtensionSpec
// A method is a struct with `name`, `info()` and `build(spec, config, seed, f)`; adding one is a
// header in recipes/methods/ and an entry in `Methods` below.
#pragma once

#include <cmath>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/ext/adapter_file.hpp"
#include "nr/recipes/method.hpp"
#include "nr/recipes/methods/adapters.hpp"
#include "nr/recipes/methods/experts.hpp"
#include "nr/recipes/methods/finetune.hpp"
#include "nr/recipes/methods/lora.hpp"
#include "nr/recipes/methods/migu.hpp"
#include "nr/recipes/methods/serial_adapter.hpp"

namespace nr::recipes {

template <class... M>
struct MethodList {};

// The registry. The order is the order of `--help` and of method_names().
using Methods = MethodList<FinetuneMethod, LoraMethod, AdapterMethod, GatedSigmoidMethod, NeutralMethod, ExpertsMethod,
                           MiguFinetuneMethod, MiguLoraMethod, SerialAdapterMethod>;

namespace detail {
template <class... M>
std::vector<const MethodInfo*> infos_of(MethodList<M...>) {
  return {&M::info()...};
}
}  // namespace detail

// Every method's descriptor, in registry order.
inline const std::vector<const MethodInfo*>& methods() {
  static const std::vector<const MethodInfo*> all = detail::infos_of(Methods{});
  return all;
}

inline std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const MethodInfo* m : methods()) names.push_back(m->name);
  return names;
}

inline std::string join_names(const std::vector<std::string>& v, std::string_view sep = ", ") {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : std::string(sep)) + x;
  return s;
}

inline const MethodInfo* find_method(std::string_view name) {
  for (const MethodInfo* m : methods())
    if (m->name == name) return m;
  return nullptr;
}

// The descriptor of `name`; ValueError listing the methods when there is none.
inline const MethodInfo& method_info(std::string_view name) {
  if (const MethodInfo* m = find_method(name)) return *m;
  throw ValueError(fmt::format("unknown method '{}' ({})", name, join_names(method_names())));
}

inline double default_lr(std::string_view method) { return method_info(method).defaults.lr; }

// Fills the method's defaults into `spec` and checks the combination (idempotent). The sizes
// that come from the budget (hidden, rank, lora_alpha, experts) stay empty until the build.
inline void resolve_defaults(ExtensionSpec& spec) {
  const MethodInfo& m = method_info(spec.method);
  for_each_spec_field(spec, [&](const char* key, const char* flag, const auto& value) {
    if (!value || m.takes(key)) return;
    std::vector<std::string> takers;
    for (const MethodInfo* o : methods())
      if (o->takes(key)) takers.push_back(o->name);
    throw ValueError(fmt::format("{} applies to {}, not to '{}'", flag, join_names(takers), spec.method));
  });
  const MethodDefaults& d = m.defaults;
  auto fill = [&](auto& field, const auto& def, const char* key) {
    if (!field && def && m.takes(key)) field = *def;
  };
  fill(spec.gate, d.gate, "gate");
  fill(spec.init, d.init, "init");
  fill(spec.site, d.site, "site");
  fill(spec.alpha, d.alpha, "alpha");
  fill(spec.lora_targets, d.lora_targets, "lora_targets");
  fill(spec.top_k, d.top_k, "top_k");
  fill(spec.route_reg, d.route_reg, "route_reg");
  fill(spec.concentration, d.concentration, "concentration");
  fill(spec.migu_threshold, d.migu_threshold, "migu_threshold");
  // The classifier loss needs a sigmoid gate: its default applies only with one.
  if (!spec.bce_weight && m.takes("bce_weight"))
    spec.bce_weight = spec.gate == "sigmoid" ? d.bce_weight.value_or(0.0) : 0.0;

  if (!(spec.extra > 0.0) || !std::isfinite(spec.extra))
    throw ValueError(fmt::format("extra (new parameters / backbone parameters) must be positive, got {}", spec.extra));
  if (spec.gate && *spec.gate != "none" && *spec.gate != "sigmoid" && *spec.gate != "elu")
    throw ValueError(fmt::format("unknown gate '{}' (elu, sigmoid, none)", *spec.gate));
  if (spec.init) parse_init(*spec.init);
  if (spec.site) parse_site(*spec.site);
  if (spec.bce_weight && *spec.bce_weight > 0.0 && spec.gate != "sigmoid")
    throw ValueError(fmt::format("--bce-weight {} needs a sigmoid gate (the classifier loss), not gate '{}'",
                                 *spec.bce_weight, spec.gate.value_or("none")));
  for (const auto& [v, flag] : {std::pair{spec.hidden, "--hidden"}, std::pair{spec.rank, "--rank"},
                                std::pair{spec.experts, "--experts"}, std::pair{spec.top_k, "--top-k"}})
    if (v && *v < 1) throw ValueError(fmt::format("{} must be at least 1, got {}", flag, *v));
  for (const auto& [v, flag] : {std::pair{spec.alpha, "--alpha"}, std::pair{spec.bce_weight, "--bce-weight"},
                                std::pair{spec.route_reg, "--route-reg"},
                                std::pair{spec.concentration, "--concentration-weight"}})
    if (v && !(*v >= 0.0 && std::isfinite(*v)))
      throw ValueError(fmt::format("{} must be a non-negative number, got {}", flag, *v));
  if (spec.lora_alpha && !(*spec.lora_alpha > 0.0))
    throw ValueError(fmt::format("--lora-alpha must be positive, got {}", *spec.lora_alpha));
  if (spec.migu_threshold && !(*spec.migu_threshold >= 0.0 && *spec.migu_threshold <= 1.0))
    throw ValueError(fmt::format("--migu-threshold must be in [0, 1], got {}", *spec.migu_threshold));
  if (spec.experts && spec.top_k && *spec.top_k > *spec.experts)
    throw ValueError(fmt::format("--top-k {} exceeds --experts {}", *spec.top_k, *spec.experts));
}

// The fields that define the model and its losses (config.json "nr", adapter_config.json):
// "method", the method's fields (all set: call after the build) and "extra" unless the method
// trains the backbone itself.
inline nlohmann::json spec_to_json(const ExtensionSpec& spec) {
  const MethodInfo& m = method_info(spec.method);
  nlohmann::json j = {{"method", spec.method}};
  for_each_spec_field(spec, [&](const char* key, const char*, const auto& value) {
    if (!m.takes(key)) return;
    if (!value) throw ValueError(fmt::format("method '{}': field \"{}\" is not set yet (build the model first)",
                                             spec.method, key));
    j[key] = *value;
  });
  if (m.family != MethodFamily::full) j["extra"] = spec.extra;
  return j;
}

// The spec recorded in `j` (config.json "nr" or an NR_ADAPTER adapter_config.json); `source`
// names the file in errors (IoError).
inline ExtensionSpec spec_from_json(const nlohmann::json& j, const std::string& source) {
  ExtensionSpec s;
  const MethodInfo* m = nullptr;
  try {
    s.method = j.at("method").get<std::string>();
    m = &method_info(s.method);
  } catch (const nlohmann::json::exception&) {
    throw IoError(fmt::format("{}: field \"method\" is missing or not a string", source));
  } catch (const ValueError& e) {
    throw IoError(fmt::format("{}: {}", source, e.what()));
  }
  for_each_spec_field(s, [&](const char* key, const char*, auto& value) {
    if (!m->takes(key)) return;
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) throw IoError(fmt::format("{}: field \"{}\" is missing", source, key));
    using T = typename std::decay_t<decltype(value)>::value_type;
    try {
      value = it->template get<T>();
    } catch (const nlohmann::json::exception&) {
      throw IoError(fmt::format("{}: field \"{}\" has the wrong type ({})", source, key, it->dump()));
    }
    if constexpr (std::is_same_v<T, int64_t>)
      if (*value < 1) throw IoError(fmt::format("{}: \"{}\" must be positive, got {}", source, key, *value));
  });
  if (j.contains("extra") && j["extra"].is_number()) s.extra = j["extra"].get<double>();
  try {
    resolve_defaults(s);
  } catch (const ValueError& e) {
    throw IoError(fmt::format("{}: {}", source, e.what()));
  }
  return s;
}

// adapter_config.json: PEFT's LoraConfig for LoRA, NR_ADAPTER (the spec's fields) otherwise.
inline nlohmann::json adapter_file_config(const ExtensionSpec& spec, const std::string& base_model) {
  if (method_info(spec.method).family == MethodFamily::lora) return lora_adapter_config(spec.lora_config(), base_model);
  nlohmann::json j = {{"peft_type", "NR_ADAPTER"}, {"task_type", "CAUSAL_LM"}, {"base_model_name_or_path", base_model}};
  j.update(spec_to_json(spec));
  return j;
}

inline ExtensionSpec spec_from_adapter_config(const nlohmann::json& j, const std::string& source) {
  const std::string type = j.is_object() ? j.value("peft_type", "") : "";
  if (type == "LORA") {
    ExtensionSpec s;
    s.method = "lora";
    try {
      s.rank = j.at("r").get<int64_t>();
      s.lora_alpha = j.at("lora_alpha").get<double>();
      s.lora_targets = j.at("target_modules").get<std::vector<std::string>>();
    } catch (const nlohmann::json::exception& e) {
      throw IoError(fmt::format("{}: a LoRA config needs r, lora_alpha and target_modules (a list): {}", source,
                                e.what()));
    }
    try {
      resolve_defaults(s);
    } catch (const ValueError& e) {
      throw IoError(fmt::format("{}: {}", source, e.what()));
    }
    return s;
  }
  if (type == "NR_ADAPTER") return spec_from_json(j, source);
  throw IoError(fmt::format("{}: peft_type '{}' is not one nr reads (LORA, NR_ADAPTER)", source, type));
}

// One line of the resolved settings ("gate elu, init low-variance, hidden 113, ...").
inline std::string describe(const ExtensionSpec& spec) {
  std::string s;
  for_each_spec_field(spec, [&](const char* key, const char*, const auto& value) {
    if (!value) return;
    if constexpr (std::is_same_v<typename std::decay_t<decltype(value)>::value_type, std::vector<std::string>>)
      s += fmt::format("{}{} {}", s.empty() ? "" : ", ", key, join_names(*value, ","));
    else
      s += fmt::format("{}{} {}", s.empty() ? "" : ", ", key, *value);
  });
  return s;
}

namespace detail {
template <class F, class First, class... Rest>
auto dispatch_method(MethodList<First, Rest...>, ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F& f) {
  if (spec.method == First::name) return First::build(spec, config, seed, f);
  if constexpr (sizeof...(Rest) > 0)
    return dispatch_method(MethodList<Rest...>{}, spec, config, seed, f);
  else
    throw ValueError(fmt::format("unknown method '{}' ({})", spec.method, join_names(method_names())));
}
}  // namespace detail

// Builds the model type of `spec` over a Llama backbone of `config` with random backbone weights
// from `seed` (load the real ones next), sizes the extension from spec.extra where the spec
// leaves the size empty (written back into spec), attaches it with freshly initialised weights
// and returns f(model). f must return the same type for every model type.
template <class F>
auto build_extended(ExtensionSpec& spec, const ModelConfig& config, uint64_t seed, F&& f) {
  resolve_defaults(spec);
  if (config.hidden_act != "silu")
    throw ValueError(fmt::format("extensions are built over Llama (silu) backbones; this backbone has hidden_act "
                                 "'{}'", config.hidden_act));
  return detail::dispatch_method(Methods{}, spec, config, seed, f);
}

}  // namespace nr::recipes
