// Adapter files (ext/adapter_file.hpp): PEFT-style LoRA files, nr adapter files, strict loading.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "nr/ext/adapter_file.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/nr.hpp"

namespace fs = std::filesystem;

namespace {

nr::ModelConfig micro_config() {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 16;
  return c;
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-adapter-file-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

template <class M>
void randomize_extension(M& m, uint64_t seed) {
  nr::Rng rng(seed);
  m.visit_parameters([&](const std::string& name, nr::Var& v) {
    if (nr::is_extension_parameter(name)) nr::normal_(v.value(), 0.0, 0.1, rng);
  }, "");
}

template <class M>
std::vector<float> extension_values(M& m) {
  std::vector<float> out;
  m.visit_parameters([&](const std::string& name, nr::Var& v) {
    if (!nr::is_extension_parameter(name)) return;
    const std::vector<float> x = v.value().to_vector();
    out.insert(out.end(), x.begin(), x.end());
  }, "");
  return out;
}

}  // namespace

TEST_CASE("a LoRA adapter file uses PEFT's names and config, and round-trips", "[ext][adapter_file][lora]") {
  const fs::path dir = temp_dir("lora");
  const nr::LoraConfig cfg{.rank = 4, .alpha = 8.0};
  nr::LoraLlama a(micro_config(), 1);
  nr::Rng rng(2);
  nr::enable_lora(a, cfg, rng);
  randomize_extension(a, 3);
  nr::save_adapter_file(dir, a, nr::lora_adapter_config(cfg, "/models/backbone"));

  const nr::SafetensorsFile st = nr::load_safetensors(dir / nr::adapter_file_name);
  CHECK(st.tensors.size() == 2 * 3 * 2);  // layers x FFN targets x (A, B)
  REQUIRE(st.tensors.count("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight") == 1);
  CHECK(st.tensors.at("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight").shape() == nr::Shape{4, 32});
  CHECK(st.tensors.at("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight").shape() == nr::Shape{32, 4});
  CHECK(st.tensors.count("base_model.model.model.layers.0.mlp.gate_proj.weight") == 0);  // no backbone tensor

  const nlohmann::json j = nr::load_adapter_config(dir);
  CHECK(j["peft_type"] == "LORA");
  CHECK(j["task_type"] == "CAUSAL_LM");
  CHECK(j["r"] == 4);
  CHECK(j["lora_alpha"] == 8);
  CHECK(j["lora_alpha"].is_number_integer());
  CHECK(j["target_modules"] == nlohmann::json({"gate_proj", "up_proj", "down_proj"}));
  CHECK(j["lora_dropout"] == 0.0);
  CHECK(j["bias"] == "none");
  CHECK(j["fan_in_fan_out"] == false);
  CHECK(j["inference_mode"] == true);
  CHECK(j["base_model_name_or_path"] == "/models/backbone");
  CHECK(j["init_lora_weights"] == true);
  CHECK(j["modules_to_save"].is_null());
  CHECK(j["layers_to_transform"].is_null());
  CHECK(j["rank_pattern"] == nlohmann::json::object());
  CHECK(j["alpha_pattern"] == nlohmann::json::object());
  CHECK(j["revision"].is_null());
  CHECK(j["use_rslora"] == false);
  CHECK(j["use_dora"] == false);

  nr::LoraLlama b(micro_config(), 1);
  nr::Rng rng2(77);
  nr::enable_lora(b, cfg, rng2);
  CHECK(nr::load_adapter_file(dir, b)["r"] == 4);
  CHECK(extension_values(b) == extension_values(a));
  fs::remove_all(dir);
}

TEST_CASE("an nr adapter file round-trips and rebuilds the same outputs over the backbone", "[ext][adapter_file]") {
  const fs::path backbone_dir = temp_dir("backbone"), dir = temp_dir("adapter");
  nr::Llama backbone(micro_config(), 5);
  nr::save_model(backbone_dir, backbone, micro_config());
  const nr::AdapterConfig cfg{.hidden = 6, .init = nr::AdapterInit::low_variance, .l1_weight = 0.5};

  nr::AdapterLlama<nr::EluGate> a(micro_config(), 9);
  nr::Rng rng(1);
  nr::attach_adapters(a, cfg, rng);
  nr::load_backbone(backbone_dir, a);
  randomize_extension(a, 4);
  const nlohmann::json config = nr::nr_adapter_config<nr::EluGate>(cfg, backbone_dir.string());
  CHECK(config["peft_type"] == "NR_ADAPTER");
  CHECK(config["gate"] == "elu");
  CHECK(config["site"] == "ffn-parallel");
  CHECK(config["init"] == "low-variance");
  CHECK(config["hidden"] == 6);
  nr::save_adapter_file(dir, a, config);
  const nr::SafetensorsFile st = nr::load_safetensors(dir / nr::adapter_file_name);
  CHECK(st.tensors.count("model.layers.1.adapter.block_gate.weight") == 1);
  CHECK(st.tensors.count("model.layers.0.adapter.up_proj.weight") == 1);
  CHECK(st.tensors.size() == 2 * 5);  // norm, gate_proj, up_proj, down_proj, block_gate per layer

  nr::AdapterLlama<nr::EluGate> b(micro_config(), 123);
  nr::Rng rng2(8);
  nr::attach_adapters(b, cfg, rng2);
  nr::load_backbone(backbone_dir, b);
  nr::load_adapter_file(dir, b);
  const nr::Indices ids(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}, nr::Shape{1, 8});
  nr::NoGrad no_grad;
  CHECK(a(ids).value().to_vector() == b(ids).value().to_vector());
  fs::remove_all(backbone_dir);
  fs::remove_all(dir);
}

TEST_CASE("loading an adapter file is strict about names and shapes", "[ext][adapter_file]") {
  const fs::path dir = temp_dir("strict");
  const nr::AdapterConfig cfg{.hidden = 6};
  nr::AdapterLlama<nr::NoGate> a(micro_config(), 1);
  nr::Rng rng(1);
  nr::attach_adapters(a, cfg, rng);
  nr::save_adapter_file(dir, a, nr::nr_adapter_config<nr::NoGate>(cfg, "b"));
  const std::string file = (dir / nr::adapter_file_name).string();

  SECTION("another width: shape error naming the file and the tensor") {
    nr::AdapterLlama<nr::NoGate> wider(micro_config(), 1);
    nr::attach_adapters(wider, nr::AdapterConfig{.hidden = 7}, rng);
    REQUIRE_THROWS_AS(nr::load_adapter_file(dir, wider), nr::IoError);
    REQUIRE_THROWS_WITH(nr::load_adapter_file(dir, wider), Catch::Contains(file) &&
                                                               Catch::Contains("model.layers.0.adapter") &&
                                                               Catch::Contains("(6, 32)") && Catch::Contains("(7, 32)"));
  }
  SECTION("a gated model needs the block gate the file lacks") {
    nr::AdapterLlama<nr::EluGate> gated(micro_config(), 1);
    nr::attach_adapters(gated, cfg, rng);
    REQUIRE_THROWS_WITH(nr::load_adapter_file(dir, gated),
                        Catch::Contains("model.layers.0.adapter.block_gate.weight") && Catch::Contains("missing"));
  }
  SECTION("a tensor the model does not have") {
    nr::LoraLlama lora(micro_config(), 1);
    nr::enable_lora(lora, nr::LoraConfig{.rank = 2}, rng);
    nr::save_adapter_file(dir, lora, nlohmann::json{{"peft_type", "NR_ADAPTER"}});  // LoRA tensors, nr names
    nr::LoraLlama fewer(micro_config(), 1);
    nr::enable_lora(fewer, nr::LoraConfig{.rank = 2, .targets = {"gate_proj"}}, rng);
    REQUIRE_THROWS_WITH(nr::load_adapter_file(dir, fewer),
                        Catch::Contains("down_proj.lora_A.weight") && Catch::Contains("not an extension parameter"));
  }
  SECTION("a model without extension, a config without peft_type, a missing directory") {
    nr::Llama plain(micro_config(), 1);
    REQUIRE_THROWS_AS(nr::load_adapter_file(dir, plain), nr::ValueError);
    REQUIRE_THROWS_AS(nr::save_adapter_file(dir, plain, nlohmann::json{{"peft_type", "X"}}), nr::ValueError);
    REQUIRE_THROWS_AS(nr::save_adapter_file(dir, a, nlohmann::json{{"r", 4}}), nr::ValueError);
    REQUIRE_THROWS_WITH(nr::load_adapter_config(dir / "nope"), Catch::Contains("adapter_config.json is missing"));
  }
  fs::remove_all(dir);
}

TEST_CASE("adapter setting names parse and print", "[ext][adapter_file]") {
  for (nr::ExtensionSite s : {nr::ExtensionSite::ffn_parallel, nr::ExtensionSite::ffn_serial,
                              nr::ExtensionSite::attention_parallel})
    CHECK(nr::parse_site(nr::site_name(s)) == s);
  CHECK(nr::parse_init("he") == nr::AdapterInit::he);
  CHECK(nr::parse_init(nr::init_name(nr::AdapterInit::low_variance)) == nr::AdapterInit::low_variance);
  REQUIRE_THROWS_WITH(nr::parse_site("ffn"), Catch::Contains("ffn-parallel"));
  REQUIRE_THROWS_AS(nr::parse_init("xavier"), nr::ValueError);
}
