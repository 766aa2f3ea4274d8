// nr/recipes/load.hpp — load any model nr knows into an instance of the right type and hand it to
// a generic lambda: f(model, info).
//
// One function decides the format (model_format):
//   a file ending in .gguf                         ModelFormat::gguf            a Llama GGUF
//                                                  (io/gguf_llama.hpp, dequantised to F32)
//   a directory whose config.json has no "nr"      ModelFormat::hf_directory    a Hugging Face Llama
//                                                  directory (io/hf_directory.hpp: one or sharded
//                                                  model*.safetensors)
//   a directory whose config.json has "nr"         ModelFormat::nr_checkpoint   its "nr" fields give
//                                                  the type: backbone, finetune, lora-merged (plain),
//                                                  an extension method (registry.hpp), a MoE backbone
// and with an adapter directory (adapter_config.json + adapter_model.safetensors) the checkpoint
// is the backbone and the adapter brings the extension.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "nr/data/token_file.hpp"
#include "nr/ext/adapter_file.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/recipes/models.hpp"
#include "nr/recipes/registry.hpp"

#include "nr/io/gguf_llama.hpp"
#include "nr/io/gguf_tokenizer.hpp"
#include "nr/io/hf_directory.hpp"
#include "nr/tokenize/any_tokenizer.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/tokenize/tokenizer_json.hpp"

namespace nr::recipes {

enum class ModelFormat { nr_checkpoint, hf_directory, gguf };

// What `path` holds (see the header comment). IoError when it is neither a .gguf file nor a
// directory with a config.json.
inline ModelFormat model_format(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(path) && path.extension() == ".gguf") return ModelFormat::gguf;
  if (!fs::is_directory(path))  // name the file a checkpoint directory would need
    throw IoError(fmt::format("{}: no such model: neither a .gguf file nor a directory with {}", path.string(),
                              (path / config_file_name).string()));
  const ConfigJsonDocument doc = load_config_json_document(path / config_file_name);
  return doc.json.contains("nr") && doc.json["nr"].is_object() ? ModelFormat::nr_checkpoint : ModelFormat::hf_directory;
}

// Methods whose checkpoint is a plain backbone-shaped model.
inline bool is_plain_method(const std::string& method) {
  if (method == "backbone" || method == "lora-merged") return true;
  const MethodInfo* m = find_method(method);
  return m != nullptr && m->family == MethodFamily::full;
}

// What a loaded model is.
struct LoadedInfo {
  ModelFormat format = ModelFormat::nr_checkpoint;
  ModelConfig config;
  nlohmann::json nr_fields = nlohmann::json::object();  // config.json "nr" (or adapter_config.json)
  std::optional<ExtensionSpec> spec;                    // set for extension methods
  std::string method() const { return nr_fields.is_object() ? nr_fields.value("method", "backbone") : "backbone"; }
};

// Loads `path` (and `adapter`, when not empty) and returns f(model, info).
template <class F>
auto with_loaded_model(const std::filesystem::path& path, const std::string& adapter, F&& f) {
  namespace fs = std::filesystem;
  const ModelFormat format = model_format(path);
  LoadedInfo info;
  info.format = format;
  // A GGUF file or a sharded Hugging Face directory: a plain backbone, or the backbone of an
  // adapter. One model.safetensors is read below as the weights of a plain backbone (the same
  // tensors, with the file named in every error).
  if (format == ModelFormat::gguf ||
      (format == ModelFormat::hf_directory && !fs::exists(path / model_file_name))) {
    const PretrainedModel pretrained = format == ModelFormat::gguf ? load_llama_gguf(path) : load_hf_directory(path);
    info.config = pretrained.config;
    if (adapter.empty())
      return with_model(info.config, 0, [&](auto& model) {
        assign_parameters(model, pretrained.tensors, pretrained.source);
        return f(model, std::as_const(info));
      });
    info.nr_fields = load_adapter_config(adapter);
    const std::string source = (fs::path(adapter) / adapter_config_file_name).string();
    ExtensionSpec spec = spec_from_adapter_config(info.nr_fields, source);
    info.spec = spec;
    if (is_moe_checkpoint(info.nr_fields))
      throw ValueError(fmt::format("{}: experts inserted into a mixture-of-experts backbone need an nr checkpoint "
                                   "as backbone, not {}", source, path.string()));
    return build_extended(spec, info.config, 0, [&](auto& model) {
      load_backbone_tensors(pretrained.tensors, pretrained.source, model);
      load_adapter_file(adapter, model);
      return f(model, std::as_const(info));
    });
  }
  const ConfigJsonDocument doc = load_config_json_document(path / config_file_name);
  info.config = doc.config;
  if (!adapter.empty()) {
    info.nr_fields = load_adapter_config(adapter);
    const std::string source = (fs::path(adapter) / adapter_config_file_name).string();
    ExtensionSpec spec = spec_from_adapter_config(info.nr_fields, source);
    info.spec = spec;
    if (is_moe_checkpoint(info.nr_fields)) {  // new experts inserted into a MoE backbone
      const MoeArch arch = moe_arch_of(info.nr_fields, info.config, source);
      return with_moe_model(info.config, arch.moe, arch.attention, 0, [&](auto& model) {
        load_backbone(path, model);
        load_adapter_file(adapter, model);
        return f(model, std::as_const(info));
      });
    }
    return build_extended(spec, info.config, 0, [&](auto& model) {
      load_backbone(path, model);
      load_adapter_file(adapter, model);
      return f(model, std::as_const(info));
    });
  }
  if (format == ModelFormat::nr_checkpoint) info.nr_fields = doc.json["nr"];
  const std::string method = info.method();
  const std::string source = (path / config_file_name).string();
  if (is_moe_checkpoint(info.nr_fields)) {  // a MoE backbone, pruned or not, or one with inserted experts
    const MoeArch arch = moe_arch_of(info.nr_fields, info.config, source);
    if (method != "backbone") info.spec = spec_from_json(info.nr_fields, source + " \"nr\"");
    return with_moe_model(info.config, arch.moe, arch.attention, 0, [&](auto& model) {
      load_model_weights(path, model);
      return f(model, std::as_const(info));
    });
  }
  if (is_plain_method(method)) {
    return with_model(info.config, 0, [&](auto& model) {
      load_model_weights(path, model);
      return f(model, std::as_const(info));
    });
  }
  ExtensionSpec spec = spec_from_json(info.nr_fields, source + " \"nr\"");
  info.spec = spec;
  return build_extended(spec, info.config, 0, [&](auto& model) {
    load_model_weights(path, model);
    return f(model, std::as_const(info));
  });
}

// The weights and config of a plain backbone in any format: a GGUF file, a Hugging Face directory,
// or an nr checkpoint of a plain model (backbone, finetune, merged LoRA). An nr checkpoint of an
// extension is refused: its backbone is the checkpoint it was extended from.
inline PretrainedModel load_pretrained(const std::filesystem::path& path) {
  switch (model_format(path)) {
    case ModelFormat::gguf: return load_llama_gguf(path);
    case ModelFormat::hf_directory: return load_hf_directory(path);
    case ModelFormat::nr_checkpoint: break;
  }
  const ConfigJsonDocument doc = load_config_json_document(path / config_file_name);
  const std::string method = doc.json["nr"].value("method", "backbone");
  if (!is_plain_method(method))
    throw ValueError(fmt::format("{}: a '{}' checkpoint is not a plain backbone; give the backbone it extends",
                                 path.string(), method));
  PretrainedModel m;
  m.config = doc.config;
  m.source = (path / model_file_name).string();
  m.tensors = load_safetensors(path / model_file_name).tensors;
  return m;
}

// The tokenizer that goes with a model:
//   a GGUF file                          its own byte-level BPE (GGUF metadata)
//   a directory with tokenizer.json      that file (Hugging Face directories)
//   an nr checkpoint whose config.json   the tokenizer of the model named there: an extension of a
//     "nr" has "tokenizer": PATH         GGUF / Hugging Face backbone records its backbone's path
//   any other nr checkpoint              bytes (nr's own models are byte-level)
// A recorded tokenizer path that no longer exists is an IoError naming it.
inline AnyTokenizer model_tokenizer(const std::filesystem::path& path, int depth = 0) {
  namespace fs = std::filesystem;
  if (depth > 8) throw IoError(fmt::format("{}: its \"tokenizer\" chain is more than 8 models long", path.string()));
  if (fs::is_regular_file(path) && path.extension() == ".gguf") return load_gguf_tokenizer(path);
  if (fs::is_regular_file(path / "tokenizer.json")) return load_tokenizer_json(path / "tokenizer.json");
  if (fs::is_regular_file(path / config_file_name)) {
    const ConfigJsonDocument doc = load_config_json_document(path / config_file_name);
    const nlohmann::json nr = doc.json.value("nr", nlohmann::json::object());
    if (nr.is_object() && nr.contains("tokenizer")) {
      const fs::path from = nr.value("tokenizer", "");
      if (from.empty() || from == path || !fs::exists(from))
        throw IoError(fmt::format("{}: the model's tokenizer is that of '{}', which does not exist (any more): "
                                  "move the backbone back or edit \"tokenizer\" in config.json \"nr\"",
                                  (path / config_file_name).string(), from.string()));
      return model_tokenizer(from, depth + 1);
    }
  }
  return ByteTokenizer{};
}

// The path model_tokenizer should read for a model extended from `backbone`: the backbone's own
// absolute path when it brings a tokenizer (GGUF, or a directory with tokenizer.json), else empty
// (byte-level).
inline std::string tokenizer_source(const std::filesystem::path& backbone) {
  namespace fs = std::filesystem;
  if ((fs::is_regular_file(backbone) && backbone.extension() == ".gguf") || fs::is_regular_file(backbone / "tokenizer.json"))
    return fs::absolute(backbone).lexically_normal().string();
  if (fs::is_regular_file(backbone / config_file_name)) {
    const ConfigJsonDocument doc = load_config_json_document(backbone / config_file_name);
    const nlohmann::json nr = doc.json.value("nr", nlohmann::json::object());
    if (nr.is_object() && nr.contains("tokenizer")) return nr.value("tokenizer", "");
  }
  return "";
}

// A model behind a plain function ids (B, T) -> logits (B, T, V), with its tokenizer: for
// comparing two models whatever their types (nrlab eval --reference, eval/divergence.hpp)
// without instantiating every pair of model types. Empty `forward`: none loaded.
struct ModelFunction {
  std::function<Tensor(const Indices&)> forward;
  AnyTokenizer tokenizer;
  std::string source;
};

// Loads `path` (any model with_loaded_model reads) into a ModelFunction; an empty path gives an
// empty one.
inline ModelFunction load_model_function(const std::filesystem::path& path) {
  ModelFunction m;
  if (path.empty()) return m;
  m.source = path.string();
  m.tokenizer = model_tokenizer(path);
  with_loaded_model(path, "", [&](auto& model, const LoadedInfo&) {
    auto owned = std::make_shared<std::decay_t<decltype(model)>>(std::move(model));
    m.forward = [owned](const Indices& ids) { return (*owned)(ids).value(); };
    return 0;
  });
  return m;
}

// The weights `names` of the extension saved in the checkpoint `run`, as they were before
// training: rebuilt from its config.json ("nr": the spec and the seed). Extensions draw their
// initialisation from their own seed streams (seeds.hpp), whatever the backbone's weights, so the
// same spec and seed give the same weights (Figure 3 plots the update W - W0 with them).
inline std::map<std::string, Tensor> initial_extension_weights(const std::filesystem::path& run,
                                                               const std::set<std::string>& names) {
  const std::string source = (run / config_file_name).string();
  const ConfigJsonDocument doc = load_config_json_document(run / config_file_name);
  const nlohmann::json nr = doc.json.contains("nr") ? doc.json["nr"] : nlohmann::json();
  if (!nr.is_object() || !nr.contains("seed") || !nr["seed"].is_number_unsigned())
    throw IoError(fmt::format("{}: \"nr\" has no seed, so the extension's initial weights cannot be rebuilt", source));
  ExtensionSpec spec = spec_from_json(nr, source + " \"nr\"");
  std::map<std::string, Tensor> out;
  build_extended(spec, doc.config, nr["seed"].get<uint64_t>(), [&](auto& model) {
    model.visit_parameters([&](const std::string& name, Var& p) {
      if (names.count(name)) out[name] = p.value().clone();
    }, "");
    return 0;
  });
  for (const std::string& name : names)
    if (!out.count(name)) throw IoError(fmt::format("{}: the extension has no weight '{}'", source, name));
  return out;
}

// Refuses to compare the predictions of `model` (tokenizer `tok`) with `reference`'s unless both
// read text into the same ids: the same vocabulary, token for token (tokenizer_fingerprint).
template <Tokenizer Tok>
void check_same_tokenizer(const Tok& tok, const ModelFunction& reference, const std::string& model) {
  if (tok.vocab_size() != reference.tokenizer.vocab_size() ||
      tokenizer_fingerprint(tok) != tokenizer_fingerprint(reference.tokenizer))
    throw ValueError(fmt::format("{} and the reference {} do not share a tokenizer (vocabularies of {} and {} tokens{}): "
                                 "their predictions cannot be compared token by token", model, reference.source,
                                 tok.vocab_size(), reference.tokenizer.vocab_size(),
                                 tok.vocab_size() == reference.tokenizer.vocab_size() ? ", different tokens" : ""));
}

}  // namespace nr::recipes
