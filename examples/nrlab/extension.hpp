// nrlab/extension.hpp — the extension methods as run-time choices over compile-time types.
//
//   method          model type                      trainable          local loss
//   finetune        nr::Llama                       every weight       -
//   lora            nr::LoraLlama + enable_lora     lora_A, lora_B     -
//   adapter         nr::AdapterLlama<NoGate>        adapters           (l1 with --alpha)
//   gated-sigmoid   nr::AdapterLlama<SigmoidGate>   adapters + gate    BCE gate classifier
//   neutral         nr::AdapterLlama<EluGate>       adapters + gate    l1 on original data
//   experts         nr::NewExpertsLlama             new experts +      routing regularisation
//                                                   their router       lambda ||A'||_F^2 (Eq. 10)
//   migu-finetune   nr::MiguLlama + MiguMask        every weight,      -
//                                                   top (1-T) rows
//   migu-lora       nr::MiguLoraLlama + enable_lora lora_A, lora_B,    -
//                   + MiguMask                      top (1-T) rows
// `experts` over a mixture-of-experts backbone (config.json "nr" -> "moe", nrlab pretrain
// --arch moe) inserts the new experts into the backbone's own expert layers instead
// (ext/insert_experts.hpp, moe_backbone.hpp).
// --gate overrides the gate of the three adapter methods (the ablations of the paper's Table 6).
// An ExtensionSpec is what config.json's "nr" key and adapter_config.json record, so that
// `nrlab eval` and `nrlab merge` rebuild the same type. The per-method defaults (learning rate,
// alpha, init) are documented, with the measurements behind them, in docs/methods.md.
#pragma once

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <type_traits>
#include <utility>

#include <nr/ext/adapter.hpp>
#include <nr/ext/adapter_file.hpp>
#include <nr/ext/backbone.hpp>
#include <nr/ext/budget.hpp>
#include <nr/ext/lora.hpp>
#include <nr/ext/new_experts.hpp>
#include <nr/optim/gradient_mask.hpp>

#include "common.hpp"
#include "moe_backbone.hpp"

namespace nrlab {

// Defaults of `nrlab extend`, per method (docs/methods.md explains how they were chosen).
inline double default_lr(const std::string& method) {
  if (method == "finetune") return 1e-3;
  if (method == "lora" || method == "migu-lora") return 3e-3;
  if (method == "migu-finetune") return 1e-3;
  return 5e-3;  // adapter, gated-sigmoid, neutral, experts
}
inline constexpr double default_neutral_alpha = 1.0;  // l1 weight of neutral residues
inline constexpr double default_sigmoid_bce = 1.0;    // BCE weight of gated-sigmoid
inline constexpr int64_t default_new_experts = 4;     // E' of the experts method
inline constexpr int64_t default_new_top_k = 1;       // k' of the experts method
inline constexpr double default_route_reg = 0.01;     // lambda of Eq. 10
inline constexpr double default_migu_threshold = 0.7; // T of MIGU (the paper's best setting)

inline const std::vector<std::string>& method_names() {
  static const std::vector<std::string> m = {"finetune", "lora",    "adapter",       "gated-sigmoid",
                                             "neutral",  "experts", "migu-finetune", "migu-lora"};
  return m;
}

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

inline std::string join_list(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

struct ExtensionSpec {
  std::string method = "neutral";
  // Adapter methods. Empty / negative means "the method's default" until resolve_defaults().
  std::string gate;              // none, sigmoid, elu
  std::string init;              // he, low-variance
  std::string site = "ffn-parallel";
  int64_t hidden = 0;            // adapter width h (0: from `extra`)
  double alpha = -1.0;           // weight of the l1 local loss
  double bce_weight = -1.0;      // weight of the sigmoid gate's classifier loss
  // LoRA.
  int64_t rank = 0;              // 0: from `extra`
  double lora_alpha = 0.0;       // 0: 2 * rank (scaling 2)
  std::vector<std::string> lora_targets = {"gate_proj", "up_proj", "down_proj"};
  // Experts. `hidden` is the width of each new expert (0: from `extra`).
  int64_t experts = 0;           // E', new experts per layer (0: default, or from `extra` on a MoE backbone)
  int64_t top_k = 0;             // k', new experts per token (0: default)
  double route_reg = -1.0;       // lambda of the routing regularisation, Eq. 10
  double concentration = 0.0;    // load-concentration weight, Eq. 8 (MoE backbones)
  // MIGU: the fraction T of each weight's rows whose update is masked.
  double migu_threshold = -1.0;
  // Capacity budget: new parameters / backbone parameters.
  double extra = 0.2;

  bool is_lora() const { return method == "lora" || method == "migu-lora"; }
  bool is_adapter() const { return method == "adapter" || method == "gated-sigmoid" || method == "neutral"; }
  bool is_experts() const { return method == "experts"; }
  bool is_migu() const { return method == "migu-finetune" || method == "migu-lora"; }
  // Methods that train every backbone weight (nothing is frozen).
  bool is_full() const { return method == "finetune" || method == "migu-finetune"; }

  // Fills the per-method defaults and checks the combination (idempotent).
  void resolve_defaults() {
    if (std::find(method_names().begin(), method_names().end(), method) == method_names().end())
      throw nr::ValueError(fmt::format("unknown method '{}' ({})", method, join_list(method_names())));
    if (!is_lora() && (rank > 0 || lora_alpha > 0.0))
      throw nr::ValueError(fmt::format("--rank and --lora-alpha apply to the lora methods, not to '{}'", method));
    if (!is_experts() && (experts > 0 || top_k > 0 || route_reg >= 0.0 || concentration > 0.0))
      throw nr::ValueError(fmt::format("--experts, --top-k, --route-reg and --concentration-weight apply to the "
                                       "experts method, not to '{}'", method));
    if (!is_migu() && migu_threshold >= 0.0)
      throw nr::ValueError(fmt::format("--migu-threshold applies to migu-finetune and migu-lora, not to '{}'", method));
    if (is_migu()) {
      if (migu_threshold < 0.0) migu_threshold = default_migu_threshold;
      if (migu_threshold > 1.0)
        throw nr::ValueError(fmt::format("--migu-threshold must be in [0, 1], got {}", migu_threshold));
    }
    if (is_experts()) {
      if (top_k <= 0) top_k = default_new_top_k;
      if (route_reg < 0.0) route_reg = default_route_reg;
      if (experts > 0 && top_k > experts)
        throw nr::ValueError(fmt::format("--top-k {} exceeds --experts {}", top_k, experts));
    }
    if (!is_adapter()) {
      if (!gate.empty() || !init.empty() || alpha > 0.0 || bce_weight > 0.0 || (hidden > 0 && !is_experts()))
        throw nr::ValueError(fmt::format("--gate, --init, --alpha, --bce-weight and --hidden apply to the adapter "
                                         "methods (adapter, gated-sigmoid, neutral; --hidden also to experts), not "
                                         "to '{}'", method));
      gate.clear();
      init.clear();
      alpha = 0.0;
      bce_weight = 0.0;
      return;
    }
    if (gate.empty()) gate = method == "adapter" ? "none" : method == "gated-sigmoid" ? "sigmoid" : "elu";
    if (gate != "none" && gate != "sigmoid" && gate != "elu")
      throw nr::ValueError(fmt::format("unknown gate '{}' (elu, sigmoid, none)", gate));
    if (init.empty()) init = method == "adapter" ? "he" : "low-variance";
    nr::parse_init(init);
    nr::parse_site(site);
    if (alpha < 0.0) alpha = method == "neutral" ? default_neutral_alpha : 0.0;
    if (bce_weight < 0.0) bce_weight = method == "gated-sigmoid" && gate == "sigmoid" ? default_sigmoid_bce : 0.0;
    if (bce_weight > 0.0 && gate != "sigmoid")
      throw nr::ValueError(fmt::format("--bce-weight {} needs a sigmoid gate (the classifier loss), not gate '{}'",
                                       bce_weight, gate));
  }

  nr::AdapterConfig adapter_config() const {
    return nr::AdapterConfig{.hidden = hidden, .site = nr::parse_site(site), .init = nr::parse_init(init),
                             .l1_weight = alpha, .bce_weight = bce_weight};
  }
  nr::LoraConfig lora_config() const {
    return nr::LoraConfig{.rank = rank, .alpha = lora_alpha, .targets = lora_targets};
  }
  nr::NewExpertsAdapterConfig new_experts_config() const {
    return nr::NewExpertsAdapterConfig{.num_experts = experts, .top_k = top_k, .hidden = hidden,
                                       .routing_reg_weight = route_reg};
  }
  nr::MiguConfig migu_config() const { return nr::MiguConfig{.threshold = migu_threshold}; }

  // The fields that define the model and its losses (config.json "nr", adapter_config.json).
  nlohmann::json to_json() const {
    nlohmann::json j = {{"method", method}};
    if (is_adapter()) {
      j["gate"] = gate;
      j["init"] = init;
      j["site"] = site;
      j["hidden"] = hidden;
      j["alpha"] = alpha;
      j["bce_weight"] = bce_weight;
      j["extra"] = extra;
    } else if (is_lora()) {
      j["rank"] = rank;
      j["lora_alpha"] = lora_alpha;
      j["lora_targets"] = lora_targets;
      j["extra"] = extra;
    } else if (is_experts()) {
      j["experts"] = experts;
      j["top_k"] = top_k;
      j["hidden"] = hidden;
      j["route_reg"] = route_reg;
      j["concentration"] = concentration;
      j["extra"] = extra;
    }
    if (is_migu()) j["migu_threshold"] = migu_threshold;
    return j;
  }

  static ExtensionSpec from_json(const nlohmann::json& j, const std::string& source) {
    auto get = [&](const char* key, auto& out) {
      const auto it = j.find(key);
      if (it == j.end() || it->is_null()) throw nr::IoError(fmt::format("{}: field \"{}\" is missing", source, key));
      try {
        it->get_to(out);
      } catch (const nlohmann::json::exception&) {
        throw nr::IoError(fmt::format("{}: field \"{}\" has the wrong type ({})", source, key, it->dump()));
      }
    };
    ExtensionSpec s;
    get("method", s.method);
    if (s.is_adapter()) {
      get("gate", s.gate);
      get("init", s.init);
      get("site", s.site);
      get("hidden", s.hidden);
      get("alpha", s.alpha);
      get("bce_weight", s.bce_weight);
      if (s.hidden < 1) throw nr::IoError(fmt::format("{}: \"hidden\" must be positive, got {}", source, s.hidden));
    } else if (s.is_lora()) {
      get("rank", s.rank);
      get("lora_alpha", s.lora_alpha);
      get("lora_targets", s.lora_targets);
      if (s.rank < 1) throw nr::IoError(fmt::format("{}: \"rank\" must be positive, got {}", source, s.rank));
    } else if (s.is_experts()) {
      get("experts", s.experts);
      get("top_k", s.top_k);
      get("hidden", s.hidden);
      get("route_reg", s.route_reg);
      get("concentration", s.concentration);
      if (s.experts < 1 || s.top_k < 1 || s.hidden < 1)
        throw nr::IoError(fmt::format("{}: \"experts\", \"top_k\" and \"hidden\" must be positive, got {}, {}, {}",
                                      source, s.experts, s.top_k, s.hidden));
    }
    if (s.is_migu()) get("migu_threshold", s.migu_threshold);
    if (j.contains("extra") && j["extra"].is_number()) s.extra = j["extra"].get<double>();
    try {
      s.resolve_defaults();
    } catch (const nr::ValueError& e) {
      throw nr::IoError(fmt::format("{}: {}", source, e.what()));
    }
    return s;
  }

  // adapter_config.json: PEFT's LoraConfig for LoRA, NR_ADAPTER for adapters.
  nlohmann::json adapter_file_config(const std::string& base_model) const {
    if (is_lora()) return nr::lora_adapter_config(lora_config(), base_model);
    nlohmann::json j = {{"peft_type", "NR_ADAPTER"}, {"task_type", "CAUSAL_LM"}, {"base_model_name_or_path", base_model}};
    j.update(to_json());
    return j;
  }
  static ExtensionSpec from_adapter_config(const nlohmann::json& j, const std::string& source) {
    const std::string type = j.value("peft_type", "");
    if (type == "LORA") {
      ExtensionSpec s;
      s.method = "lora";
      try {
        s.rank = j.at("r").get<int64_t>();
        s.lora_alpha = j.at("lora_alpha").get<double>();
        s.lora_targets = j.at("target_modules").get<std::vector<std::string>>();
      } catch (const nlohmann::json::exception& e) {
        throw nr::IoError(fmt::format("{}: a LoRA config needs r, lora_alpha and target_modules (a list): {}", source,
                                      e.what()));
      }
      s.resolve_defaults();
      return s;
    }
    if (type == "NR_ADAPTER") return from_json(j, source);
    throw nr::IoError(fmt::format("{}: peft_type '{}' is not one nr reads (LORA, NR_ADAPTER)", source, type));
  }
};

namespace detail {

template <class Gate, class F>
int with_adapter_model(ExtensionSpec& spec, const nr::ModelConfig& config, uint64_t seed, F&& f) {
  nr::AdapterLlama<Gate> model(config, seed);
  if (spec.hidden <= 0)
    spec.hidden = nr::adapter_hidden_for_budget(spec.extra, nr::count_parameters(model), config, Gate::gated);
  nr::Rng rng(seed * 0x9E3779B97F4A7C15ull + 0xAD);
  nr::attach_adapters(model, spec.adapter_config(), rng);
  return f(model);
}

template <class LoraModel, class F>
int with_lora_model(ExtensionSpec& spec, const nr::ModelConfig& config, uint64_t seed, F&& f) {
  LoraModel model(config, seed);
  if (spec.rank <= 0) {
    nr::LoraConfig probe = spec.lora_config();
    probe.rank = 1;
    probe.validate();
    spec.rank = nr::lora_rank_for_budget(spec.extra, nr::count_parameters(model), nr::lora_params_per_rank(model, probe));
  }
  if (spec.lora_alpha <= 0.0) spec.lora_alpha = 2.0 * static_cast<double>(spec.rank);
  nr::Rng rng(seed * 0x9E3779B97F4A7C15ull + 0x10);
  nr::enable_lora(model, spec.lora_config(), rng);
  return f(model);
}

}  // namespace detail

// Width h of each of the E' new experts beside a dense FFN so that the new parameters (per
// layer: norm C, router D_emb C + (1 + E') D_emb, experts E' 3 C h) make `extra` of the backbone.
inline int64_t new_expert_hidden_for_budget(double extra, int64_t backbone_params, const nr::ModelConfig& c,
                                            nr::NewExpertsAdapterConfig cfg) {
  nr::check_extra_fraction(extra);
  const double C = static_cast<double>(c.hidden_size);
  cfg.hidden = 0;
  const double fixed = static_cast<double>(nr::NewExperts<>::parameter_count(c.hidden_size, cfg));
  const double per_layer = extra * static_cast<double>(backbone_params) / static_cast<double>(c.num_hidden_layers);
  const int64_t h = std::llround((per_layer - fixed) / (3.0 * C * static_cast<double>(cfg.num_experts)));
  if (h < 1)
    throw nr::ValueError(fmt::format("--extra {} leaves no hidden unit for {} new experts per layer (their router and "
                                     "norm alone take {} parameters per layer); raise --extra or lower --experts",
                                     extra, cfg.num_experts, static_cast<int64_t>(fixed)));
  return h;
}

// Builds the model type of `spec` over a backbone of `config` (random backbone weights from
// `seed`: load the real ones next), sizes the extension from spec.extra where spec.hidden /
// spec.rank is 0 (written back into spec), attaches it with freshly initialised weights, and
// calls f(model). f must return int for every model type.
template <class F>
int with_extended_model(ExtensionSpec& spec, const nr::ModelConfig& config, uint64_t seed, F&& f) {
  spec.resolve_defaults();
  if (config.hidden_act != "silu")
    throw nr::ValueError(fmt::format("extensions are built over Llama (silu) backbones; this backbone has hidden_act "
                                     "'{}'", config.hidden_act));
  if (spec.method == "finetune") {
    nr::Llama model(config, seed);
    return f(model);
  }
  if (spec.method == "migu-finetune") {
    nr::MiguLlama model(config, seed);
    return f(model);
  }
  if (spec.is_experts()) {
    nr::NewExpertsLlama<> model(config, seed);
    if (spec.experts <= 0) spec.experts = default_new_experts;
    if (spec.top_k > spec.experts)
      throw nr::ValueError(fmt::format("--top-k {} exceeds --experts {}", spec.top_k, spec.experts));
    if (spec.hidden <= 0)
      spec.hidden = new_expert_hidden_for_budget(spec.extra, nr::count_parameters(model), config, spec.new_experts_config());
    nr::Rng rng(seed * 0x9E3779B97F4A7C15ull + 0xE7);
    nr::attach_new_experts(model, spec.new_experts_config(), rng);
    return f(model);
  }
  if (spec.method == "migu-lora") return detail::with_lora_model<nr::MiguLoraLlama>(spec, config, seed, f);
  if (spec.is_lora()) return detail::with_lora_model<nr::LoraLlama>(spec, config, seed, f);
  if (spec.gate == "elu") return detail::with_adapter_model<nr::EluGate>(spec, config, seed, f);
  if (spec.gate == "sigmoid") return detail::with_adapter_model<nr::SigmoidGate>(spec, config, seed, f);
  return detail::with_adapter_model<nr::NoGate>(spec, config, seed, f);
}

// Methods whose checkpoint is a plain backbone-shaped model.
inline bool is_plain_method(const std::string& method) {
  return method == "backbone" || method == "finetune" || method == "migu-finetune" || method == "lora-merged";
}

// What a loaded checkpoint is.
struct LoadedInfo {
  nr::ModelConfig config;
  nlohmann::json nr_fields = nlohmann::json::object();  // config.json "nr" (or adapter_config.json)
  std::optional<ExtensionSpec> spec;                    // set for lora and adapter models
};

// Loads a checkpoint for evaluation and calls f(model, info):
//   adapter empty:  `checkpoint` is any nrlab checkpoint (backbone, finetune, merged: a plain
//                   model; lora / adapters: the full extended model), its type read from
//                   config.json "nr";
//   adapter given:  `checkpoint` is the backbone and `adapter` a directory holding
//                   adapter_config.json + adapter_model.safetensors.
template <class F>
int with_loaded_model(const fs::path& checkpoint, const std::string& adapter, F&& f) {
  const nr::ConfigJsonDocument doc = nr::load_config_json_document(checkpoint / nr::config_file_name);
  LoadedInfo info;
  info.config = doc.config;
  if (!adapter.empty()) {
    info.nr_fields = nr::load_adapter_config(adapter);
    const std::string source = (fs::path(adapter) / nr::adapter_config_file_name).string();
    ExtensionSpec spec = ExtensionSpec::from_adapter_config(info.nr_fields, source);
    info.spec = spec;
    if (is_moe_checkpoint(info.nr_fields)) {  // new experts inserted into a MoE backbone
      const MoeArch arch = moe_arch_of(info.nr_fields, info.config, source);
      return with_moe_model(info.config, arch.moe, arch.attention, 0, [&](auto& model) {
        nr::load_backbone(checkpoint, model);
        nr::load_adapter_file(adapter, model);
        return f(model, info);
      });
    }
    return with_extended_model(spec, info.config, 0, [&](auto& model) {
      nr::load_backbone(checkpoint, model);
      nr::load_adapter_file(adapter, model);
      return f(model, info);
    });
  }
  if (doc.json.contains("nr") && doc.json["nr"].is_object()) info.nr_fields = doc.json["nr"];
  const std::string method = info.nr_fields.value("method", "backbone");
  if (is_moe_checkpoint(info.nr_fields)) {  // a MoE backbone, pruned or not, or one with inserted experts
    const std::string source = (checkpoint / nr::config_file_name).string();
    const MoeArch arch = moe_arch_of(info.nr_fields, info.config, source);
    if (method != "backbone") info.spec = ExtensionSpec::from_json(info.nr_fields, source + " \"nr\"");
    return with_moe_model(info.config, arch.moe, arch.attention, 0, [&](auto& model) {
      nr::load_model_weights(checkpoint, model);
      return f(model, info);
    });
  }
  if (is_plain_method(method)) {
    return with_model(info.config, 0, [&](auto& model) {
      nr::load_model_weights(checkpoint, model);
      return f(model, info);
    });
  }
  ExtensionSpec spec = ExtensionSpec::from_json(info.nr_fields, (checkpoint / nr::config_file_name).string() + " \"nr\"");
  info.spec = spec;
  return with_extended_model(spec, info.config, 0, [&](auto& model) {
    nr::load_model_weights(checkpoint, model);
    return f(model, info);
  });
}

// ---- evaluation -------------------------------------------------------------------------

struct ValidSet {
  std::string name;
  std::vector<int32_t> tokens;
};

// The valid.txt of every domain of a corpus, each cut to at most `max_tokens` bytes (0 = all).
inline std::vector<ValidSet> load_valid_sets(const fs::path& corpus, int64_t max_tokens) {
  std::vector<ValidSet> sets;
  for (const std::string& name : nr::list_domains(corpus)) {
    ValidSet v{name, tokenize(nr::load_domain(corpus, name).valid)};
    if (max_tokens > 0 && static_cast<int64_t>(v.tokens.size()) > max_tokens) v.tokens.resize(static_cast<size_t>(max_tokens));
    sets.push_back(std::move(v));
  }
  return sets;
}

template <class E>
struct IsAdapter : std::false_type {};
template <class G>
struct IsAdapter<nr::Adapter<G>> : std::true_type {};

template <class E>
struct IsNewExperts : std::false_type {};
template <class A>
struct IsNewExperts<nr::NewExperts<A>> : std::true_type {};

// Whether the blocks of a model carry adapters (and so record adapter statistics).
template <class Model>
constexpr bool has_adapters() {
  return IsAdapter<std::decay_t<decltype(std::declval<Model&>().layers[0].extension)>>::value;
}
// Whether they carry new experts beside the FFN (which record the new-expert routing mass).
template <class Model>
constexpr bool has_new_experts() {
  return IsNewExperts<std::decay_t<decltype(std::declval<Model&>().layers[0].extension)>>::value;
}
template <class Model>
constexpr bool has_extension_stats() {
  return has_adapters<Model>() || has_new_experts<Model>();
}
// Whether the model's projections record output magnitudes for a MIGU gradient mask.
template <class Model>
constexpr bool is_migu_model() {
  return std::is_same_v<Model, nr::MiguLlama> || std::is_same_v<Model, nr::MiguLoraLlama>;
}

// BPB of `tokens` with adapter statistics collected into a fresh context; every sequence is
// flagged `original`.
template <class Model>
nr::BpbResult bpb_with_stats(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch,
                             bool original, nr::ForwardContext& fc) {
  fc = nr::ForwardContext{};
  fc.collect_stats = true;
  return nr::bits_per_byte(model, tokens, ctx, batch, [&](int64_t B) -> nr::ForwardContext& {
    fc.original.assign(static_cast<size_t>(B), original ? 1 : 0);
    fc.local_losses.clear();
    return fc;
  });
}

// Per layer: {"layer", "adapter_abs_mean", and for gated adapters "gate_mean", "gate_near_zero"}
// from the statistics the adapters recorded, or "new_expert_mass" (mean over tokens of the
// router's probability 1 - q_0 of the new experts) for new experts (keys
// "layer<l>.<original|new>.<name>").
inline nlohmann::json stats_by_layer(const nr::ForwardContext& fc, int64_t layers, bool original) {
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t l = 0; l < layers; ++l) {
    nlohmann::json row = {{"layer", l}};
    for (const char* metric : {"adapter_abs_mean", "gate_mean", "gate_near_zero", "new_expert_mass"}) {
      const std::string key = fmt::format("layer{}.{}.{}", l, original ? "original" : "new", metric);
      const auto s = fc.stats.find(key);
      const auto c = fc.counts.find(key);
      if (s != fc.stats.end() && c != fc.counts.end() && c->second > 0) row[metric] = s->second / c->second;
    }
    rows.push_back(row);
  }
  return rows;
}

// A readable table of stats.json's "domains" (one column group per domain).
inline std::string format_stats_table(const nlohmann::json& stats) {
  const nlohmann::json& domains = stats.at("domains");
  std::vector<std::string> names;
  for (auto it = domains.begin(); it != domains.end(); ++it) names.push_back(it.key());
  // Original domain first.
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return domains[a].value("original", false) > domains[b].value("original", false);
  });
  const bool experts = !names.empty() && !domains[names[0]]["layers"].empty() &&
                       domains[names[0]]["layers"][0].contains("new_expert_mass");
  if (experts) {
    std::string out = "new-expert statistics: router probability of the new experts, 1 - q_0, mean over tokens\n";
    out += fmt::format("{:>5}", "layer");
    for (const std::string& n : names) out += fmt::format(" {:>12}", fmt::format("mass {}", n));
    out += "\n";
    for (size_t l = 0; l < domains[names[0]]["layers"].size(); ++l) {
      out += fmt::format("{:>5}", l);
      for (const std::string& n : names) {
        const nlohmann::json& row = domains[n]["layers"][l];
        out += row.contains("new_expert_mass") ? fmt::format(" {:>12.4f}", row["new_expert_mass"].get<double>())
                                               : fmt::format(" {:>12}", "-");
      }
      out += "\n";
    }
    return out;
  }
  const bool gated = !names.empty() && !domains[names[0]]["layers"].empty() &&
                     domains[names[0]]["layers"][0].contains("gate_mean");
  std::string out = "adapter statistics: mean |adapter output| per element";
  out += gated ? "; gate g: mean, and fraction of tokens with |g| < 0.01\n" : "\n";
  out += fmt::format("{:>5}", "layer");
  for (const std::string& n : names) out += fmt::format(" {:>12}", fmt::format("|y| {}", n));
  if (gated) {
    for (const std::string& n : names) out += fmt::format(" {:>10}", fmt::format("g {}", n));
    for (const std::string& n : names) out += fmt::format(" {:>10}", fmt::format("g~0 {}", n));
  }
  out += "\n";
  const size_t L = domains[names[0]]["layers"].size();
  for (size_t l = 0; l < L; ++l) {
    out += fmt::format("{:>5}", l);
    auto cell = [&](const std::string& n, const char* metric, int width, const char* f) {
      const nlohmann::json& row = domains[n]["layers"][l];
      return row.contains(metric) ? fmt::format(fmt::runtime(f), row[metric].get<double>(), width)
                                  : fmt::format(" {:>{}}", "-", width);
    };
    for (const std::string& n : names) out += cell(n, "adapter_abs_mean", 12, " {:>{}.5f}");
    if (gated) {
      for (const std::string& n : names) out += cell(n, "gate_mean", 10, " {:>{}.4f}");
      for (const std::string& n : names) out += cell(n, "gate_near_zero", 10, " {:>{}.3f}");
    }
    out += "\n";
  }
  return out;
}

// BPB of every valid set; for adapter models with `stats`, the original and the new domain are
// evaluated with collect_stats and their flags, and the statistics come back in *stats_out.
// `predicted`, when given, receives the number of predicted tokens of each domain.
template <class Model>
nlohmann::json evaluate_domains(const Model& model, const std::vector<ValidSet>& sets, int64_t ctx, int64_t batch,
                                const std::string& original_domain = "", const std::string& new_domain = "",
                                nlohmann::json* stats_out = nullptr, std::map<std::string, int64_t>* predicted = nullptr) {
  nlohmann::json bpb = nlohmann::json::object();
  nlohmann::json domains = nlohmann::json::object();
  for (const ValidSet& v : sets) {
    const bool is_orig = v.name == original_domain, is_new = v.name == new_domain;
    if (stats_out && (is_orig || is_new)) {
      nr::ForwardContext fc;
      const nr::BpbResult r = bpb_with_stats(model, v.tokens, ctx, batch, is_orig, fc);
      bpb[v.name] = r.bpb;
      if (predicted) (*predicted)[v.name] = r.tokens;
      domains[v.name] = {{"original", is_orig}, {"bpb", r.bpb}, {"tokens", r.tokens},
                         {"layers", stats_by_layer(fc, static_cast<int64_t>(model.layers.size()), is_orig)}};
    } else {
      const nr::BpbResult r = nr::bits_per_byte(model, v.tokens, ctx, batch);
      bpb[v.name] = r.bpb;
      if (predicted) (*predicted)[v.name] = r.tokens;
    }
  }
  if (stats_out) {
    if (domains.empty())
      throw nr::ValueError(fmt::format("adapter statistics: neither the original domain '{}' nor the new domain '{}' is "
                                       "in the corpus", original_domain, new_domain));
    *stats_out = {{"original_domain", original_domain}, {"new_domain", new_domain}, {"domains", domains}};
  }
  return bpb;
}

}  // namespace nrlab
