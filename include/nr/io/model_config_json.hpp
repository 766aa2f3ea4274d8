// nr/io/model_config_json.hpp — nr::ModelConfig as a Hugging Face `config.json`.
//
// Written the way transformers writes one (keys sorted, two-space indent), readable by
// transformers' LlamaConfig:
//   { "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32",
//     "bos_token_id": null, "eos_token_id": null (the byte tokenizer has neither),
//     "head_dim": hidden_size / num_attention_heads,
//     every ModelConfig field under its own name (vocab_size, hidden_size, intermediate_size,
//     num_hidden_layers, num_attention_heads, num_key_value_heads, rms_norm_eps, rope_theta,
//     max_position_embeddings, tie_word_embeddings, hidden_act),
//     plus the keys of an optional `extra` object (nr's own settings go under "nr"); extra may
//     replace "architectures", "model_type" or "torch_dtype" but not a ModelConfig field. }
//
// Read: unknown keys are ignored (real configs carry many). Required, because the shapes of the
// weights depend on them: vocab_size, hidden_size, intermediate_size, num_hidden_layers,
// num_attention_heads, max_position_embeddings, rms_norm_eps. Optional, with LlamaConfig's
// defaults when missing or null: num_key_value_heads (= num_attention_heads), rope_theta (10000;
// transformers >= 5 writes it as "rope_parameters": {"rope_theta": ..., "rope_type": "default"}),
// tie_word_embeddings (false), hidden_act ("silu"). Refused, because nr would silently compute
// something else: a head_dim other than hidden_size / num_attention_heads, a rope_scaling or
// rope_parameters other than null or plain RoPE (rope_type "default"), attention_bias or
// mlp_bias true. Integers must be JSON integers, real numbers
// may be integers or floats. Every problem (missing field, wrong type, a config that fails
// ModelConfig::validate, text that is not JSON or nests deeper than 64 levels) throws
// nr::IoError naming the file and the field.
// As with Python's json module, a key given twice keeps its last value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/json_text.hpp"
#include "nr/nn/config.hpp"

namespace nr {

// A parsed config.json: the model configuration and the whole document (for "nr" and friends).
struct ConfigJsonDocument {
  ModelConfig config;
  nlohmann::json json;  // the object as read, unknown keys included
};

namespace detail {

inline bool is_model_config_key(const std::string& key) {
  for (const char* k : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                        "tie_word_embeddings", "hidden_act", "head_dim"})
    if (key == k) return true;
  return false;
}

// Reads typed fields from a config object; every error names the file and the field.
class ConfigFieldReader {
 public:
  ConfigFieldReader(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  // Null when the key is missing or null and the field is optional; throws when it is required.
  const nlohmann::json* find(const char* key, bool required) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (required)
        throw IoError(fmt::format("config file '{}': required field '{}' is {}", source_, key,
                                  it == j_.end() ? "missing" : "null"));
      return nullptr;
    }
    return &*it;
  }
  void read(const char* key, int64_t& out, bool required) const {
    const nlohmann::json* v = find(key, required);
    if (!v) return;
    if (!v->is_number_integer()) throw wrong_type(key, *v, "an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw IoError(fmt::format("config file '{}': field '{}' = {} is out of range", source_, key, v->dump()));
    out = v->get<int64_t>();
  }
  void read(const char* key, double& out, bool required) const {
    const nlohmann::json* v = find(key, required);
    if (!v) return;
    if (!v->is_number()) throw wrong_type(key, *v, "a number");
    out = v->get<double>();
  }
  void read(const char* key, bool& out, bool required) const {
    const nlohmann::json* v = find(key, required);
    if (!v) return;
    if (!v->is_boolean()) throw wrong_type(key, *v, "true or false");
    out = v->get<bool>();
  }
  void read(const char* key, std::string& out, bool required) const {
    const nlohmann::json* v = find(key, required);
    if (!v) return;
    if (!v->is_string()) throw wrong_type(key, *v, "a string");
    out = v->get<std::string>();
  }
  IoError wrong_type(const char* key, const nlohmann::json& v, const char* expected) const {
    std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > 64) text = text.substr(0, 61) + "...";
    return IoError(fmt::format("config file '{}': field '{}' is a JSON {} ({}), expected {}", source_, key,
                               v.type_name(), text, expected));
  }

 private:
  const nlohmann::json& j_;
  const std::string& source_;
};

// A RoPE settings object that asks for plain RoPE: {"rope_type": "default", ...} (or "type").
inline bool is_default_rope(const nlohmann::json& v) {
  if (!v.is_object()) return false;
  const auto type = v.contains("rope_type") ? v.find("rope_type") : v.find("type");
  if (type == v.end() || !type->is_string() || type->get<std::string>() != "default") return false;
  const auto partial = v.find("partial_rotary_factor");
  return partial == v.end() || partial->is_null() || (partial->is_number() && partial->get<double>() == 1.0);
}

// transformers >= 5 writes RoPE as "rope_parameters": {"rope_theta": 100000.0, "rope_type":
// "default"} instead of a top-level "rope_theta". Plain RoPE only; a theta given in both places
// must agree.
inline void read_rope_parameters(const ConfigFieldReader& r, const nlohmann::json& j, const std::string& source,
                                 double& rope_theta) {
  const nlohmann::json* p = r.find("rope_parameters", false);
  if (!p) return;
  const std::string text = p->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (!is_default_rope(*p))
    throw IoError(fmt::format("config file '{}': field 'rope_parameters' = {} is not supported (only plain RoPE: "
                              "rope_type \"default\")",
                              source, text.size() > 160 ? text.substr(0, 157) + "..." : text));
  const auto theta = p->find("rope_theta");
  if (theta == p->end() || theta->is_null()) return;
  if (!theta->is_number())
    throw IoError(fmt::format("config file '{}': field 'rope_parameters.rope_theta' is a JSON {}, expected a number",
                              source, theta->type_name()));
  const double value = theta->get<double>();
  if (const auto top = j.find("rope_theta"); top != j.end() && !top->is_null() && value != rope_theta)
    throw IoError(fmt::format("config file '{}': 'rope_theta' = {} and 'rope_parameters.rope_theta' = {} disagree",
                              source, rope_theta, value));
  rope_theta = value;
}

}  // namespace detail

// The config.json object for c, with the keys of `extra` (a JSON object) added. Throws
// ValueError when c fails validate(), extra is not an object or would replace a config field.
inline nlohmann::json config_to_json(const ModelConfig& c, const nlohmann::json& extra = nlohmann::json::object()) {
  c.validate();
  if (!extra.is_object())
    throw ValueError(fmt::format("config_to_json: extra must be a JSON object, got a JSON {}", extra.type_name()));
  nlohmann::json j = nlohmann::json::object();
  j["architectures"] = nlohmann::json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["torch_dtype"] = "float32";
  j["bos_token_id"] = nullptr;
  j["eos_token_id"] = nullptr;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim();
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = c.hidden_act;
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (detail::is_model_config_key(it.key()))
      throw ValueError(fmt::format("config_to_json: extra key '{}' would replace the ModelConfig field of that name",
                                   it.key()));
    j[it.key()] = it.value();
  }
  return j;
}

// The ModelConfig in a parsed config.json; source_name names it in error messages.
inline ModelConfig config_from_json(const nlohmann::json& j, const std::string& source_name) {
  if (!j.is_object())
    throw IoError(fmt::format("config file '{}': the document is a JSON {}, not an object", source_name, j.type_name()));
  const detail::ConfigFieldReader r(j, source_name);
  ModelConfig c;
  r.read("vocab_size", c.vocab_size, true);
  r.read("hidden_size", c.hidden_size, true);
  r.read("intermediate_size", c.intermediate_size, true);
  r.read("num_hidden_layers", c.num_hidden_layers, true);
  r.read("num_attention_heads", c.num_attention_heads, true);
  c.num_key_value_heads = c.num_attention_heads;
  r.read("num_key_value_heads", c.num_key_value_heads, false);
  r.read("rms_norm_eps", c.rms_norm_eps, true);
  c.rope_theta = 10000.0;
  r.read("rope_theta", c.rope_theta, false);
  detail::read_rope_parameters(r, j, source_name, c.rope_theta);
  r.read("max_position_embeddings", c.max_position_embeddings, true);
  c.tie_word_embeddings = false;
  r.read("tie_word_embeddings", c.tie_word_embeddings, false);
  c.hidden_act = "silu";
  r.read("hidden_act", c.hidden_act, false);
  try {
    c.validate();
  } catch (const ValueError& e) {
    throw IoError(fmt::format("config file '{}': {}", source_name, e.what()));
  }

  // Settings nr does not implement: refuse rather than compute something else.
  int64_t head_dim = c.head_dim();
  r.read("head_dim", head_dim, false);
  if (head_dim != c.head_dim())
    throw IoError(fmt::format("config file '{}': field 'head_dim' = {} differs from hidden_size / num_attention_heads "
                              "= {}, which nr requires",
                              source_name, head_dim, c.head_dim()));
  if (const nlohmann::json* v = r.find("rope_scaling", false); v && !detail::is_default_rope(*v))
    throw IoError(fmt::format("config file '{}': field 'rope_scaling' = {} is not supported (only plain RoPE)",
                              source_name, v->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    r.read(key, bias, false);
    if (bias) throw IoError(fmt::format("config file '{}': field '{}' = true is not supported (nr has no biases)",
                                        source_name, key));
  }
  return c;
}

// The deepest nesting parse_config_json accepts (the document object is level 1; real configs
// nest 3 or 4 levels).
inline constexpr int config_json_max_depth = json_max_depth;

// Parses config.json text; source_name names it in error messages. NUL bytes and absurd nesting
// are refused (io/json_text.hpp).
inline ConfigJsonDocument parse_config_json(std::string_view text, const std::string& source_name) {
  ConfigJsonDocument doc;
  doc.json = parse_json_text(text, fmt::format("config file '{}'", source_name));
  doc.config = config_from_json(doc.json, source_name);
  return doc;
}

inline ConfigJsonDocument load_config_json_document(const std::filesystem::path& path) {
  return parse_config_json(read_file(path), path.string());
}

inline ModelConfig load_config_json(const std::filesystem::path& path) { return load_config_json_document(path).config; }

// Writes config_to_json(c, extra) atomically. ValueError as config_to_json; IoError when the file
// cannot be written.
inline void save_config_json(const std::filesystem::path& path, const ModelConfig& c,
                             const nlohmann::json& extra = nlohmann::json::object()) {
  const nlohmann::json j = config_to_json(c, extra);
  std::string text;
  try {
    text = j.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(fmt::format("save_config_json '{}': a string is not valid UTF-8: {}", path.string(), e.what()));
  }
  write_file_atomic(path, text);
}

}  // namespace nr
