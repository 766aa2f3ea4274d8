// config.json I/O: round trips, Hugging Face conventions, defaults, and every malformed field.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/io/atomic_file.hpp"
#include "nr/io/model_config_json.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;
using nr::ModelConfig;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int serial = 0;
    path = fs::temp_directory_path() / fmt::format("nr_test_config_json_{}_{}_{}", static_cast<long>(::getpid()),
                                                   serial++, std::random_device{}());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void check_same(const ModelConfig& a, const ModelConfig& b) {
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

// The config of TinyLlama-1.1B as published, with its many fields nr does not use.
const char* tinyllama_config = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 5632,
  "max_position_embeddings": 2048,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 22,
  "num_key_value_heads": 4,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0",
  "use_cache": true,
  "vocab_size": 32000
})";

// Writes `j` to <dir>/<name>.json, loads it and requires an IoError naming the file and
// containing every word in `words`.
void require_rejected(const TempDir& dir, const std::string& name, const std::string& text,
                      const std::vector<std::string>& words) {
  const std::string path = dir.file(name + ".json");
  nr::write_file_atomic(path, text);
  INFO("case " << name);
  std::string message;
  REQUIRE_THROWS_AS(nr::load_config_json(path), nr::IoError);
  try {
    nr::load_config_json(path);
  } catch (const nr::IoError& e) {
    message = e.what();
  }
  INFO("message: " << message);
  CHECK_THAT(message, Contains(path));
  for (const std::string& w : words) CHECK_THAT(message, Contains(w));
}

}  // namespace

TEST_CASE("config.json round trip keeps every field exactly", "[io][config]") {
  TempDir dir;
  ModelConfig c;
  c.vocab_size = 1000;
  c.hidden_size = 96;
  c.intermediate_size = 200;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 500000.5;
  c.max_position_embeddings = 77;
  c.tie_word_embeddings = true;
  c.hidden_act = "gelu_pytorch_tanh";
  const std::string path = dir.file("config.json");
  nr::save_config_json(path, c);
  check_same(nr::load_config_json(path), c);

  for (const char* name : {"nano", "tiny", "small"}) {
    INFO("preset " << name);
    nr::save_config_json(path, nr::preset(name));
    check_same(nr::load_config_json(path), nr::preset(name));
  }
  // An awkward double survives the text form bit for bit.
  c.rms_norm_eps = 0.1 + 0.2;
  nr::save_config_json(path, c);
  CHECK(nr::load_config_json(path).rms_norm_eps == 0.1 + 0.2);
}

TEST_CASE("config.json follows the Hugging Face conventions", "[io][config]") {
  TempDir dir;
  const std::string path = dir.file("config.json");
  const ModelConfig c = nr::preset("nano");
  nr::save_config_json(path, c);
  const std::string text = nr::read_file(path);
  CHECK(text.back() == '\n');
  CHECK(text.rfind("{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],", 0) == 0);  // sorted, indent 2
  const json j = json::parse(text);
  CHECK(j["architectures"] == json::array({"LlamaForCausalLM"}));
  CHECK(j["model_type"] == "llama");
  CHECK(j["torch_dtype"] == "float32");
  CHECK(j["bos_token_id"].is_null());
  CHECK(j["eos_token_id"].is_null());
  CHECK(j["head_dim"] == c.head_dim());
  CHECK(j["hidden_size"] == c.hidden_size);
  CHECK(j["hidden_size"].is_number_integer());
  CHECK(j["rms_norm_eps"].is_number_float());
  CHECK(j["tie_word_embeddings"] == false);
  CHECK(j["hidden_act"] == "silu");
  CHECK(nr::config_to_json(c) == j);
}

TEST_CASE("config.json carries extra keys such as nr's own settings", "[io][config]") {
  TempDir dir;
  const std::string path = dir.file("config.json");
  const json extra = {{"nr", {{"extension", "gated_adapter"}, {"rank", 8}, {"layers", {1, 3}}}},
                      {"model_type", "gemma"}};
  nr::save_config_json(path, nr::preset("tiny"), extra);
  const nr::ConfigJsonDocument doc = nr::load_config_json_document(path);
  check_same(doc.config, nr::preset("tiny"));
  CHECK(doc.json["nr"] == extra["nr"]);
  CHECK(doc.json["model_type"] == "gemma");

  CHECK_THROWS_AS(nr::config_to_json(nr::preset("nano"), {{"hidden_size", 64}}), nr::ValueError);
  CHECK_THROWS_WITH(nr::config_to_json(nr::preset("nano"), {{"head_dim", 64}}), Contains("'head_dim'"));
  CHECK_THROWS_AS(nr::config_to_json(nr::preset("nano"), json::array({1})), nr::ValueError);
  ModelConfig bad = nr::preset("nano");
  bad.num_attention_heads = 0;
  const std::string never = dir.file("never.json");
  CHECK_THROWS_AS(nr::save_config_json(never, bad), nr::ValueError);
  CHECK_FALSE(fs::exists(never));
  const std::string missing_dir = (dir.path / "absent" / "config.json").string();
  CHECK_THROWS_AS(nr::save_config_json(missing_dir, nr::preset("nano")), nr::IoError);
  CHECK_THROWS_WITH(nr::save_config_json(missing_dir, nr::preset("nano")), Contains(missing_dir));
}

TEST_CASE("config.json from Hugging Face: unknown keys ignored, optional keys defaulted", "[io][config]") {
  TempDir dir;
  const std::string path = dir.file("tinyllama.json");
  nr::write_file_atomic(path, tinyllama_config);
  const ModelConfig c = nr::load_config_json(path);
  CHECK(c.vocab_size == 32000);
  CHECK(c.hidden_size == 2048);
  CHECK(c.intermediate_size == 5632);
  CHECK(c.num_hidden_layers == 22);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.num_key_value_heads == 4);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.max_position_embeddings == 2048);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.hidden_act == "silu");

  // Only the required fields: LlamaConfig's defaults for the rest (null counts as missing).
  const std::string minimal = dir.file("minimal.json");
  nr::write_file_atomic(minimal, R"({"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 32, "rms_norm_eps": 1e-6,
    "num_key_value_heads": null, "rope_theta": 500000})");
  const ModelConfig m = nr::load_config_json(minimal);
  CHECK(m.num_key_value_heads == 4);
  CHECK(m.rope_theta == 500000.0);  // an integer is a fine real number
  CHECK_FALSE(m.tie_word_embeddings);
  CHECK(m.hidden_act == "silu");
  CHECK(m.rms_norm_eps == 1e-6);
}

TEST_CASE("config.json refuses missing, mistyped and inconsistent fields, naming file and field", "[io][config]") {
  TempDir dir;
  const json valid = nr::config_to_json(nr::preset("nano"));
  auto with = [&](const char* key, const json& value) {
    json j = valid;
    j[key] = value;
    return j.dump();
  };
  auto without = [&](const char* key) {
    json j = valid;
    j.erase(key);
    return j.dump();
  };

  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "max_position_embeddings", "rms_norm_eps"}) {
    require_rejected(dir, fmt::format("missing_{}", key), without(key), {fmt::format("'{}'", key), "missing"});
    require_rejected(dir, fmt::format("null_{}", key), with(key, nullptr), {fmt::format("'{}'", key), "null"});
  }
  require_rejected(dir, "int_as_string", with("hidden_size", "128"), {"'hidden_size'", "JSON string", "expected an integer"});
  require_rejected(dir, "int_as_float", with("hidden_size", 128.0), {"'hidden_size'", "expected an integer"});
  require_rejected(dir, "int_as_bool", with("num_hidden_layers", true), {"'num_hidden_layers'", "expected an integer"});
  require_rejected(dir, "int_out_of_range", with("vocab_size", 18446744073709551615ull), {"'vocab_size'", "out of range"});
  require_rejected(dir, "double_as_string", with("rms_norm_eps", "1e-5"), {"'rms_norm_eps'", "expected a number"});
  require_rejected(dir, "bool_as_int", with("tie_word_embeddings", 1), {"'tie_word_embeddings'", "true or false"});
  require_rejected(dir, "string_as_int", with("hidden_act", 5), {"'hidden_act'", "expected a string"});
  require_rejected(dir, "kv_as_list", with("num_key_value_heads", json::array({4})), {"'num_key_value_heads'", "array"});

  // ModelConfig::validate's complaints, as IoError naming the file.
  require_rejected(dir, "negative_vocab", with("vocab_size", -5), {"vocab_size must be positive"});
  require_rejected(dir, "heads_not_dividing", with("num_attention_heads", 3), {"not a multiple of num_attention_heads 3"});
  require_rejected(dir, "unknown_act", with("hidden_act", "relu"), {"unknown hidden_act 'relu'"});
  require_rejected(dir, "zero_eps", with("rms_norm_eps", 0.0), {"rms_norm_eps must be positive"});

  // Settings nr cannot honour.
  require_rejected(dir, "head_dim", with("head_dim", 64), {"'head_dim' = 64", "32"});
  require_rejected(dir, "rope_scaling", with("rope_scaling", {{"type", "linear"}, {"factor", 2.0}}),
                   {"'rope_scaling'", "linear", "not supported"});
  require_rejected(dir, "attention_bias", with("attention_bias", true), {"'attention_bias'", "not supported"});
  require_rejected(dir, "mlp_bias", with("mlp_bias", true), {"'mlp_bias'", "not supported"});

  // Not a JSON object at all.
  require_rejected(dir, "not_json", "{\"vocab_size\": 256,", {"not valid JSON"});
  require_rejected(dir, "empty", "", {"not valid JSON"});
  require_rejected(dir, "nul_then_junk", valid.dump() + std::string(1, '\0') + "junk", {"NUL byte"});
  require_rejected(dir, "not_object", "[1, 2, 3]", {"array", "not an object"});
  CHECK_THROWS_WITH(nr::load_config_json(dir.file("absent.json")), Contains(dir.file("absent.json")) && Contains("No such file"));
  CHECK_THROWS_WITH(nr::parse_config_json("[]", "inline-config"), Contains("inline-config"));
}

TEST_CASE("config.json written by nr reads in Python's json module", "[io][config][python]") {
  if (std::system("/usr/bin/python3 -c 'import json' > /dev/null 2>&1") != 0) {
    WARN("skipped: /usr/bin/python3 is not available");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("config.json");
  ModelConfig c = nr::preset("small");
  c.num_key_value_heads = 2;
  c.rms_norm_eps = 1e-6;
  nr::save_config_json(path, c, {{"nr", {{"method", "neutral_residues"}}}});
  const std::string script = dir.file("check.py");
  nr::write_file_atomic(script, R"PY(
import json, sys
c = json.load(open(sys.argv[1]))
assert c['architectures'] == ['LlamaForCausalLM'] and c['model_type'] == 'llama', c
assert c['hidden_size'] == 512 and c['num_hidden_layers'] == 8 and c['num_attention_heads'] == 8, c
assert c['num_key_value_heads'] == 2 and c['head_dim'] == 64, c
assert c['rms_norm_eps'] == 1e-6 and c['rope_theta'] == 10000.0, c
assert c['bos_token_id'] is None and c['eos_token_id'] is None, c
assert c['tie_word_embeddings'] is False and c['hidden_act'] == 'silu', c
assert c['nr'] == {'method': 'neutral_residues'}, c
print('python read config: ok')
)PY");
  const std::string log = dir.file("check.log");
  const int rc = std::system(fmt::format("/usr/bin/python3 '{}' '{}' > '{}' 2>&1", script, path, log).c_str());
  INFO("python output: " << nr::read_file(log));
  CHECK(rc == 0);
}
