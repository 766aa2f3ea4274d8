// Whole-model parity with an independent PyTorch implementation (tests/torch_reference.py).
//
// nr writes a small GQA model and its logits on fixed tokens; the Python script rebuilds the
// model from the safetensors file nr wrote and compares logits and loss to 1e-4. Skipped with a
// message when /usr/bin/python3 cannot import torch (scripts/deps.sh installs python3-torch).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

#include "nr/io/checkpoint.hpp"
#include "nr/nr.hpp"

namespace fs = std::filesystem;

namespace {
bool torch_available() { return std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

void check_against_torch(const std::string& act, bool tied) {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 24;
  c.hidden_act = act;
  c.tie_word_embeddings = tied;
  const fs::path dir = fs::temp_directory_path() / ("nr-torch-parity-" + act + std::to_string(tied) + "-" +
                                                    std::to_string(::getpid()));
  fs::remove_all(dir);
  auto run = [&](auto& model) {
    // Norm gains away from one so that their use is checked too; larger weights so that the
    // logits are far from uniform.
    nr::Rng rng(3);
    model.visit_parameters([&](const std::string& name, nr::Var& p) {
      if (name.find("norm") != std::string::npos) nr::uniform_(p.value(), 0.5, 1.5, rng);
      else nr::normal_(p.value(), 0.0, 0.2, rng);
    }, "");
    std::vector<int32_t> ids(2 * 20), targets(2 * 20);
    for (size_t i = 0; i < ids.size(); ++i) {
      ids[i] = static_cast<int32_t>((i * 37 + 11) % 256);
      targets[i] = static_cast<int32_t>((i * 53 + 7) % 256);
    }
    const nr::Indices in(ids, nr::Shape{2, 20}), tg(targets, nr::Shape{2, 20});
    nr::NoGrad ng;
    const nr::Var logits = model(in);
    const nr::Var loss = nr::cross_entropy(logits, tg);
    nr::save_model(dir, model, c);
    std::vector<float> fids(ids.begin(), ids.end()), ftg(targets.begin(), targets.end());
    nr::save_safetensors(dir / "outputs.safetensors",
                         {{"ids", nr::Tensor::from_vector(fids, nr::Shape{2, 20})},
                          {"targets", nr::Tensor::from_vector(ftg, nr::Shape{2, 20})},
                          {"logits", logits.value()},
                          {"loss", loss.value()}},
                         {});
    return 0;
  };
  if (act == "silu") {
    nr::Llama m(c, 1);
    run(m);
  } else {
    nr::LanguageModel<nr::GemmaStyleBlock> m(c, 1);
    run(m);
  }
  const std::string cmd = "/usr/bin/python3 " NR_SOURCE_DIR "/tests/torch_reference.py " + dir.string();
  const int rc = std::system(cmd.c_str());
  CHECK(rc == 0);
  fs::remove_all(dir);
}
}  // namespace

TEST_CASE("logits and loss match an independent PyTorch model to 1e-4", "[model][torch]") {
  if (!torch_available()) {
    WARN("skipped: /usr/bin/python3 cannot import torch (install python3-torch)");
    return;
  }
  SECTION("Llama (SiLU), untied head") { check_against_torch("silu", false); }
  SECTION("GELU-tanh FFN, tied embeddings") { check_against_torch("gelu_pytorch_tanh", true); }
}
