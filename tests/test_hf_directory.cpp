// Hugging Face model directories (io/hf_directory.hpp): single file, sharded, F16/BF16 weights,
// tied embeddings, real config.json files of transformers 4 and 5, and every refusal: a missing
// shard, a tensor listed twice or in two shards, a shard path leaving the directory, bad configs.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/core/rng.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/io/hf_directory.hpp"
#include "nr/nn/language_model.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;
using nr::ModelConfig;
using nr::Tensor;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int serial = 0;
    path = fs::temp_directory_path() / fmt::format("nr_test_hf_directory_{}_{}_{}", static_cast<long>(::getpid()),
                                                   serial++, std::random_device{}());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path sub(const std::string& name) const {
    fs::create_directories(path / name);
    return path / name;
  }
};

ModelConfig tiny_config(bool tied) {
  ModelConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100000.0;
  c.max_position_embeddings = 64;
  c.tie_word_embeddings = tied;
  return c;
}

// A config.json as transformers 5 writes it for a Llama model (rope_parameters, dtype, and the
// fields nr ignores).
json hf_config_v5(const ModelConfig& c) {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"attention_bias", false},
              {"attention_dropout", 0.0},
              {"bos_token_id", 1},
              {"dtype", "float32"},
              {"eos_token_id", 2},
              {"head_dim", c.head_dim()},
              {"hidden_act", "silu"},
              {"hidden_size", c.hidden_size},
              {"initializer_range", 0.02},
              {"intermediate_size", c.intermediate_size},
              {"max_position_embeddings", c.max_position_embeddings},
              {"mlp_bias", false},
              {"model_type", "llama"},
              {"num_attention_heads", c.num_attention_heads},
              {"num_hidden_layers", c.num_hidden_layers},
              {"num_key_value_heads", c.num_key_value_heads},
              {"pad_token_id", 2},
              {"pretraining_tp", 1},
              {"rms_norm_eps", c.rms_norm_eps},
              {"rope_parameters", {{"rope_theta", c.rope_theta}, {"rope_type", "default"}}},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"transformers_version", "5.25.0"},
              {"unk_token_id", 0},
              {"use_cache", true},
              {"vocab_size", c.vocab_size}};
}

// Weights with the names and shapes of a model built from c, each a multiple of 1/64 in
// [-127/64, 127/64] (so that F16 and BF16 hold it exactly), different in every tensor and seed.
std::map<std::string, Tensor> tiny_weights(const ModelConfig& c, uint64_t seed) {
  nr::Llama model(c, seed);
  std::map<std::string, Tensor> out;
  uint64_t k = seed * 7919;
  for (auto& [name, t] : nr::parameter_tensors(model)) {
    Tensor copy = t.contiguous().clone();
    float* p = copy.data();
    for (int64_t i = 0; i < copy.numel(); ++i) {
      k = k * 6364136223846793005ull + 1442695040888963407ull;
      p[i] = static_cast<float>(static_cast<int>((k >> 33) % 255) - 127) / 64.0f;
    }
    out.emplace(name, copy);
  }
  return out;
}

void write_json(const fs::path& path, const json& j) { nr::write_file_atomic(path, j.dump(2)); }

uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  REQUIRE((bits & 0xffffu) == 0);  // exactly representable
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t to_f16(float f) {  // normal numbers and zero, exactly representable
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  if ((bits & 0x7fffffffu) == 0) return static_cast<uint16_t>(sign);
  const int exp = static_cast<int>((bits >> 23) & 0xffu) - 127 + 15;
  REQUIRE(exp > 0);
  REQUIRE(exp < 31);
  REQUIRE((bits & 0x1fffu) == 0);
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | ((bits >> 13) & 0x3ffu));
}

// A safetensors file written by hand with each tensor in the given dtype ("F32", "F16", "BF16").
void write_safetensors(const fs::path& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& dtypes) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& [name, t] : tensors) {
    const std::string dtype = dtypes.count(name) ? dtypes.at(name) : "F32";
    const Tensor c = t.contiguous();
    const size_t begin = data.size();
    for (int64_t i = 0; i < c.numel(); ++i) {
      const float v = c.data()[i];
      if (dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const uint16_t h = dtype == "BF16" ? to_bf16(v) : to_f16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    json shape = json::array();
    for (int64_t d = 0; d < c.shape().rank(); ++d) shape.push_back(c.shape()[d]);
    header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');
  const uint64_t n = h.size();
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  nr::write_file_atomic(path, bytes + h + data);
}

// A sharded directory: tensors whose name sorts before `split` in shard 1, the rest in shard 2.
json write_sharded(const fs::path& dir, const std::map<std::string, Tensor>& w, const std::string& split) {
  std::map<std::string, Tensor> a, b;
  json wm = json::object();
  for (const auto& [name, t] : w) {
    const bool first = name < split;
    (first ? a : b).emplace(name, t);
    wm[name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dir / "model-00001-of-00002.safetensors", a, {});
  write_safetensors(dir / "model-00002-of-00002.safetensors", b, {});
  const json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", wm}};
  write_json(dir / "model.safetensors.index.json", index);
  return index;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape())) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data(), cb.data(), static_cast<size_t>(ca.numel()) * sizeof(float)) == 0;
}

void check_same_tensors(const std::map<std::string, Tensor>& got, const std::map<std::string, Tensor>& want) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) {
    INFO("tensor " << name);
    REQUIRE(got.count(name) == 1);
    CHECK(bit_equal(got.at(name), t));
  }
}

void check_same_config(const ModelConfig& a, const ModelConfig& b) {
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.num_key_value_heads == b.num_key_value_heads);
  CHECK(a.rms_norm_eps == b.rms_norm_eps);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.max_position_embeddings == b.max_position_embeddings);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.hidden_act == b.hidden_act);
}

void require_rejected(const fs::path& dir, const std::vector<std::string>& fragments) {
  INFO("directory " << dir.string());
  try {
    (void)nr::load_hf_directory(dir);
    FAIL("load_hf_directory accepted " << dir.string());
  } catch (const nr::IoError& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    for (const std::string& f : fragments) CHECK_THAT(msg, Contains(f));
  }
}

}  // namespace

TEST_CASE("a single-file Hugging Face directory loads, tied embeddings and all", "[io][hf]") {
  TempDir tmp;
  const ModelConfig c = tiny_config(true);
  const auto w = tiny_weights(c, 7);
  const fs::path dir = tmp.sub("single");
  CHECK_FALSE(nr::is_hf_directory(dir));
  write_json(dir / "config.json", hf_config_v5(c));
  CHECK_FALSE(nr::is_hf_directory(dir));  // config alone is not a model
  write_safetensors(dir / "model.safetensors", w, {});
  CHECK(nr::is_hf_directory(dir));
  CHECK_FALSE(nr::is_hf_directory(dir / "config.json"));
  CHECK_FALSE(nr::is_hf_directory(tmp.path / "nothing-here"));

  const nr::PretrainedModel m = nr::load_hf_directory(dir);
  check_same_config(m.config, c);
  CHECK(m.config.rope_theta == 100000.0);  // from rope_parameters (transformers 5)
  CHECK(m.source == dir.string());
  CHECK(m.tensors.count("lm_head.weight") == 0);
  check_same_tensors(m.tensors, w);

  // The tensors fit a model built from the config, and it runs.
  nr::Llama model(m.config, 1);
  nr::assign_parameters(model, m.tensors, m.source);
  nr::Indices ids;
  ids.shape = nr::Shape{1, 5};
  ids.data = {1, 5, 9, 30, 39};
  const nr::Var logits = model(ids);
  CHECK(logits.shape() == nr::Shape{1, 5, c.vocab_size});

  // An lm_head.weight equal to the embedding is dropped; one that differs is refused.
  auto with_head = w;
  with_head.emplace("lm_head.weight", w.at("model.embed_tokens.weight").clone());
  write_safetensors(dir / "model.safetensors", with_head, {});
  check_same_tensors(nr::load_hf_directory(dir).tensors, w);
  with_head.at("lm_head.weight").data()[3] += 1.0f;
  write_safetensors(dir / "model.safetensors", with_head, {});
  require_rejected(dir, {"tie_word_embeddings", "'lm_head.weight' differs"});
}

TEST_CASE("a sharded directory loads the same tensors as a single file", "[io][hf]") {
  TempDir tmp;
  const ModelConfig c = tiny_config(false);
  const auto w = tiny_weights(c, 11);
  REQUIRE(w.count("lm_head.weight") == 1);
  const fs::path dir = tmp.sub("sharded");
  write_json(dir / "config.json", hf_config_v5(c));
  write_sharded(dir, w, "model.layers.1");
  CHECK(nr::is_hf_directory(dir));
  const nr::PretrainedModel m = nr::load_hf_directory(dir);
  check_same_config(m.config, c);
  check_same_tensors(m.tensors, w);
  nr::Llama model(m.config, 1);
  nr::assign_parameters(model, m.tensors, m.source);  // every parameter present, none extra

  // Untied without lm_head.weight is refused.
  auto no_head = w;
  no_head.erase("lm_head.weight");
  const fs::path dir2 = tmp.sub("no_head");
  write_json(dir2 / "config.json", hf_config_v5(c));
  write_safetensors(dir2 / "model.safetensors", no_head, {});
  require_rejected(dir2, {"no 'lm_head.weight'", "tie_word_embeddings is false"});
}

TEST_CASE("F16 and BF16 weights are widened to the same F32 values", "[io][hf]") {
  TempDir tmp;
  const ModelConfig c = tiny_config(true);
  const auto w = tiny_weights(c, 3);
  std::map<std::string, std::string> dtypes;
  int i = 0;
  for (const auto& [name, t] : w) dtypes[name] = (i++ % 2 == 0) ? "BF16" : "F16";
  const fs::path dir = tmp.sub("half");
  json cfg = hf_config_v5(c);
  cfg["dtype"] = "bfloat16";
  write_json(dir / "config.json", cfg);
  write_safetensors(dir / "model.safetensors", w, dtypes);
  check_same_tensors(nr::load_hf_directory(dir).tensors, w);

  // The same in shards, one all-BF16, one all-F16.
  const fs::path dir2 = tmp.sub("half_sharded");
  write_json(dir2 / "config.json", cfg);
  std::map<std::string, Tensor> a, b;
  std::map<std::string, std::string> da, db;
  json wm = json::object();
  for (const auto& [name, t] : w) {
    const bool first = name < "model.layers.1";
    (first ? a : b).emplace(name, t);
    (first ? da : db)[name] = first ? "BF16" : "F16";
    wm[name] = first ? "a.safetensors" : "b.safetensors";
  }
  write_safetensors(dir2 / "a.safetensors", a, da);
  write_safetensors(dir2 / "b.safetensors", b, db);
  write_json(dir2 / "model.safetensors.index.json", {{"weight_map", wm}});
  check_same_tensors(nr::load_hf_directory(dir2).tensors, w);
}

TEST_CASE("real config.json files of transformers 4 and 5 are read; math-changing fields are refused", "[io][hf]") {
  TempDir tmp;
  const ModelConfig c = tiny_config(true);
  const auto w = tiny_weights(c, 5);
  const fs::path dir = tmp.sub("configs");
  write_safetensors(dir / "model.safetensors", w, {});

  // transformers 4.x style: rope_theta at the top, rope_scaling null, torch_dtype.
  json v4 = hf_config_v5(c);
  v4.erase("rope_parameters");
  v4.erase("dtype");
  v4["rope_theta"] = c.rope_theta;
  v4["rope_scaling"] = nullptr;
  v4["torch_dtype"] = "bfloat16";
  write_json(dir / "config.json", v4);
  check_same_config(nr::load_hf_directory(dir).config, c);
  // Both places, agreeing.
  v4["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", c.rope_theta}};
  write_json(dir / "config.json", v4);
  check_same_config(nr::load_hf_directory(dir).config, c);

  auto rejected_with = [&](const std::function<void(json&)>& edit, const std::vector<std::string>& fragments) {
    json j = hf_config_v5(c);
    edit(j);
    write_json(dir / "config.json", j);
    require_rejected(dir, fragments);
  };
  rejected_with([](json& j) { j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; },
                {"'rope_scaling'", "llama3", "not supported"});
  rejected_with([](json& j) { j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 1e4}, {"factor", 4.0}}; },
                {"'rope_parameters'", "yarn", "not supported"});
  rejected_with([](json& j) { j["rope_parameters"]["partial_rotary_factor"] = 0.5; },
                {"'rope_parameters'", "not supported"});
  rejected_with([](json& j) { j["rope_theta"] = 10000.0; }, {"'rope_theta'", "disagree"});
  rejected_with([](json& j) { j["attention_bias"] = true; }, {"'attention_bias'", "not supported"});
  rejected_with([](json& j) { j["mlp_bias"] = true; }, {"'mlp_bias'", "not supported"});
  rejected_with([](json& j) { j["head_dim"] = 8; }, {"'head_dim' = 8", "hidden_size / num_attention_heads"});
  rejected_with([](json& j) { j["hidden_act"] = "gelu_pytorch_tanh"; }, {"hidden_act", "gelu_pytorch_tanh", "silu"});
  rejected_with([](json& j) { j["hidden_act"] = "relu"; }, {"hidden_act", "relu"});
  rejected_with([](json& j) { j["model_type"] = "mistral"; }, {"model_type", "mistral", "llama"});
  rejected_with([](json& j) { j.erase("vocab_size"); }, {"'vocab_size'", "missing"});
  rejected_with([](json& j) { j["num_key_value_heads"] = 3; }, {"num_key_value_heads"});

  nr::write_file_atomic(dir / "config.json", "{\"vocab_size\": 40,");
  require_rejected(dir, {"config.json", "not valid JSON"});

  // The config names a shape the weights do not have: assign_parameters names the tensor.
  json bigger = hf_config_v5(c);
  bigger["intermediate_size"] = 32;
  write_json(dir / "config.json", bigger);
  const nr::PretrainedModel m = nr::load_hf_directory(dir);
  nr::Llama model(m.config, 1);
  CHECK_THROWS_WITH(nr::assign_parameters(model, m.tensors, m.source), Contains("mlp") && Contains("shape"));
}

TEST_CASE("hostile sharded directories are refused with the file and the problem", "[io][hf]") {
  TempDir tmp;
  const ModelConfig c = tiny_config(true);
  const auto w = tiny_weights(c, 13);
  int serial = 0;
  // A fresh sharded directory; returns it and its index for editing.
  auto make = [&](json& index) {
    const fs::path dir = tmp.sub("case" + std::to_string(serial++));
    write_json(dir / "config.json", hf_config_v5(c));
    index = write_sharded(dir, w, "model.layers.1");
    return dir;
  };
  const std::string shard1 = "model-00001-of-00002.safetensors", shard2 = "model-00002-of-00002.safetensors";
  json index;

  SECTION("a missing shard") {
    const fs::path dir = make(index);
    fs::remove(dir / shard2);
    require_rejected(dir, {"model.safetensors.index.json", shard2, "missing"});
  }
  SECTION("a tensor listed twice in weight_map") {
    const fs::path dir = make(index);
    std::string text = index.dump(1);
    const std::string entry = "\"model.norm.weight\": \"" + shard2 + "\"";
    const size_t at = text.find(entry);
    REQUIRE(at != std::string::npos);
    text.insert(at, entry + ",\n ");
    nr::write_file_atomic(dir / "model.safetensors.index.json", text);
    require_rejected(dir, {"model.safetensors.index.json", "'model.norm.weight'", "listed twice"});
  }
  SECTION("a tensor stored in two shards") {
    const fs::path dir = make(index);
    std::map<std::string, Tensor> a;
    for (const auto& [name, t] : w)
      if (name < "model.layers.1" || name == "model.norm.weight") a.emplace(name, t);
    write_safetensors(dir / shard1, a, {});
    require_rejected(dir, {"'model.norm.weight'", shard1, "maps it to"});
  }
  SECTION("a listed tensor absent from its shard") {
    const fs::path dir = make(index);
    index["weight_map"]["model.norm.weight"] = shard1;
    write_json(dir / "model.safetensors.index.json", index);
    require_rejected(dir, {"'model.norm.weight'", shard1, "does not hold it"});
  }
  SECTION("a shard holding a tensor the index does not list") {
    const fs::path dir = make(index);
    index["weight_map"].erase("model.norm.weight");
    write_json(dir / "model.safetensors.index.json", index);
    require_rejected(dir, {"'model.norm.weight'", "does not list"});
  }
  SECTION("shard paths that leave the directory") {
    for (const std::string& bad : {"../" + shard2, "sub/" + shard2, "/tmp/" + shard2, std::string(".."),
                                  std::string(""), "..\\" + shard2}) {
      INFO("shard name '" << bad << "'");
      const fs::path dir = make(index);
      index["weight_map"]["model.norm.weight"] = bad;
      write_json(dir / "model.safetensors.index.json", index);
      require_rejected(dir, {"'model.norm.weight'", "not a plain file name"});
    }
  }
  SECTION("malformed index documents") {
    const fs::path dir = make(index);
    const fs::path f = dir / "model.safetensors.index.json";
    nr::write_file_atomic(f, "[1, 2]");
    require_rejected(dir, {"model.safetensors.index.json", "not an object"});
    nr::write_file_atomic(f, R"({"metadata": {}})");
    require_rejected(dir, {"weight_map"});
    nr::write_file_atomic(f, R"({"weight_map": {}})");
    require_rejected(dir, {"lists no tensor"});
    nr::write_file_atomic(f, R"({"weight_map": {"model.norm.weight": 3}})");
    require_rejected(dir, {"'model.norm.weight'", "not a shard file name"});
    nr::write_file_atomic(f, R"({"weight_map": )");
    require_rejected(dir, {"not valid JSON"});
    nr::write_file_atomic(f, std::string(100000, '[') + std::string(100000, ']'));
    require_rejected(dir, {"nests deeper"});
    nr::write_file_atomic(f, std::string("{\"weight_map\": {}}\0junk", 23));
    require_rejected(dir, {"NUL byte"});
  }
  SECTION("no weights, no config, not a directory") {
    const fs::path dir = make(index);
    fs::remove(dir / "model.safetensors.index.json");
    CHECK_FALSE(nr::is_hf_directory(dir));
    require_rejected(dir, {"neither model.safetensors nor model.safetensors.index.json"});
    const fs::path empty = tmp.sub("empty");
    require_rejected(empty, {"no config.json"});
    require_rejected(tmp.path / "absent", {"does not exist"});
    require_rejected(dir / "config.json", {"not a directory"});
  }
}
