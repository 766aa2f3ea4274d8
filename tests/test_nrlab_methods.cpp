// The recipes behind the nrlab commands (nr/recipes) for the expert and MIGU methods, run in-process on a nano model with a
// 32-byte context over a small synthetic corpus (seconds): `extend --method experts |
// migu-finetune | migu-lora` writes results.json and a checkpoint that loads back with the
// same BPB; MIGU moves exactly the kept rows; `pretrain --arch moe --attention stick-breaking`
// lowers its loss; `prune` removes experts and saves a smaller model that loads; `extend
// --method experts` on the MoE backbone inserts experts into its expert layers.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nr/nr.hpp>
#include <nr/recipes/extend.hpp>
#include <nr/recipes/load.hpp>
#include <nr/recipes/pretrain.hpp>
#include <nr/recipes/prune.hpp>

namespace fs = std::filesystem;
namespace nrlab = nr::recipes;  // the functions behind the nrlab commands

namespace {

// A corpus of three domains built from small vocabularies: en, en-mix (English) and fr.
struct Fixture {
  fs::path root;
  Fixture() {
    nr::set_num_threads(1);
    root = fs::temp_directory_path() / fmt::format("nr_test_nrlab_methods_{}", static_cast<long>(::getpid()));
    fs::remove_all(root);
    const std::vector<std::string> en = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "house"};
    const std::vector<std::string> fr = {"le", "chat", "est", "sur", "un", "tapis", "et", "chien", "va", "la", "maison"};
    write_domain("en", en, 1, 12000);
    write_domain("en-mix", en, 2, 12000);
    write_domain("fr", fr, 3, 12000);
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  fs::path corpus() const { return root / "corpus"; }

  void write_domain(const std::string& name, const std::vector<std::string>& words, uint64_t seed, size_t bytes) {
    nr::Rng rng(seed);
    auto text = [&](size_t n) {
      std::string s;
      while (s.size() < n) {
        s += words[static_cast<size_t>(rng.randint(static_cast<int64_t>(words.size())))];
        s += rng.randint(8) == 0 ? ".\n" : " ";
      }
      return s;
    };
    fs::create_directories(corpus() / name);
    std::ofstream(corpus() / name / "train.txt") << text(bytes);
    std::ofstream(corpus() / name / "valid.txt") << text(bytes / 6);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

nrlab::PretrainOptions pretrain_options(const fs::path& out) {
  nrlab::PretrainOptions o;
  o.corpus = fixture().corpus().string();
  o.out = out.string();
  o.preset = "nano";
  o.ctx = 32;
  o.steps = 30;
  o.batch = 4;
  o.lr = 3e-3;
  o.log_every = 0;
  o.save_every = 1000;
  o.eval_tokens = 2000;
  return o;
}

// The dense backbone, pretrained once.
const fs::path& dense_backbone() {
  static const fs::path dir = [] {
    const fs::path d = fixture().root / "backbone";
    REQUIRE(nrlab::run_pretrain(pretrain_options(d)) == 0);
    return d;
  }();
  return dir;
}

nrlab::ExtendOptions extend_options(const fs::path& backbone, const std::string& method, const fs::path& out) {
  nrlab::ExtendOptions o;
  o.checkpoint = backbone.string();
  o.corpus = fixture().corpus().string();
  o.new_domain = "fr";
  o.mix = "en-mix";
  o.p = 0.1;
  o.spec.method = method;
  o.out = out.string();
  o.steps = 6;
  o.batch = 4;
  o.log_every = 0;
  o.eval_tokens = 1500;
  return o;
}

// BPB of the fr valid set (first eval_tokens bytes) of a checkpoint loaded as `nrlab eval` does.
double loaded_fr_bpb(const fs::path& checkpoint, int64_t eval_tokens, std::string* method = nullptr) {
  double bpb = 0.0;
  nrlab::with_loaded_model(checkpoint, "", [&](auto& model, const nrlab::LoadedInfo& info) {
    const std::vector<nrlab::ValidSet> sets = nrlab::load_valid_sets(fixture().corpus(), eval_tokens);
    for (const nrlab::ValidSet& v : sets)
      if (v.name == "fr") bpb = nr::bits_per_byte(model, v.tokens, info.config.max_position_embeddings, 16).bpb;
    if (method) *method = info.nr_fields.value("method", "backbone");
    return 0;
  });
  return bpb;
}

nlohmann::json read_json(const fs::path& file) {
  REQUIRE(fs::exists(file));
  return nlohmann::json::parse(nr::read_file(file));
}

}  // namespace

TEST_CASE("extend --method experts|migu-finetune|migu-lora: results.json and a checkpoint that loads back",
          "[nrlab][extend]") {
  const fs::path& backbone = dense_backbone();
  for (const std::string method : {"experts", "migu-finetune", "migu-lora"}) {
    INFO(method);
    const fs::path out = fixture().root / ("ext-" + method);
    nlohmann::json results;
    REQUIRE(nrlab::run_extend(extend_options(backbone, method, out), &results) == 0);
    const nlohmann::json file = read_json(out / "results.json");
    CHECK(file == results);
    CHECK(file["method"] == method);
    CHECK(file["steps"] == 6);
    const double after = file["valid_bpb"]["fr"].get<double>(), before = file["backbone_valid_bpb"]["fr"].get<double>();
    CHECK(std::isfinite(after));
    CHECK(std::isfinite(before));
    CHECK(after < before);  // six steps on fr already help
    CHECK(fs::exists(out / "train_log.jsonl"));
    // nrlab eval's loader rebuilds the same model and finds the same BPB.
    std::string loaded_method;
    CHECK(loaded_fr_bpb(out, 1500, &loaded_method) == Approx(after).epsilon(1e-5));
    CHECK(loaded_method == method);
    if (method == "migu-finetune") {
      CHECK(file["new_params"] == 0);
      CHECK(file["trainable_params"] == file["backbone_params"]);
      CHECK(file["migu_threshold"] == Approx(nrlab::default_migu_threshold));
      CHECK_FALSE(fs::exists(out / nr::adapter_file_name));
    } else {
      CHECK(file["new_params"].get<int64_t>() > 0);
      CHECK(file["trainable_params"] == file["new_params"]);
      CHECK(fs::exists(out / nr::adapter_file_name));
    }
    if (method == "experts") {
      // The new experts are sized to the --extra budget (0.2 by default).
      CHECK(file["extra_fraction"].get<double>() == Approx(0.2).margin(0.02));
      CHECK(file["experts"] == nrlab::default_new_experts);
      CHECK(file["top_k"] == nrlab::default_new_top_k);
      CHECK(file["hidden"].get<int64_t>() > 0);
      // The router's probability of the new experts on each domain, per layer.
      const nlohmann::json& layers = file["stats"]["domains"]["fr"]["layers"];
      REQUIRE(layers.size() == 4);
      for (const nlohmann::json& l : layers) {
        CHECK(l["new_expert_mass"].get<double>() > 0.0);
        CHECK(l["new_expert_mass"].get<double>() < 1.0);
      }
    }
    if (method == "migu-lora") CHECK(file["rank"].get<int64_t>() > 0);
  }
}

TEST_CASE("extend --method migu-finetune moves only the top (1 - T) rows of each weight", "[nrlab][extend][migu]") {
  const fs::path& backbone = dense_backbone();
  const fs::path out = fixture().root / "migu-one-step";
  nrlab::ExtendOptions o = extend_options(backbone, "migu-finetune", out);
  o.steps = 1;
  o.spec.migu_threshold = 0.5;
  o.eval_initial = false;
  REQUIRE(nrlab::run_extend(o) == 0);
  const nr::SafetensorsFile a = nr::load_safetensors(backbone / nr::model_file_name);
  const nr::SafetensorsFile b = nr::load_safetensors(out / nr::model_file_name);
  for (const std::string name : {"model.layers.0.mlp.down_proj.weight", "model.layers.2.self_attn.q_proj.weight"}) {
    INFO(name);
    const nr::Tensor& x = a.get(name);
    const nr::Tensor& y = b.get(name);
    const int64_t rows = x.shape()[0], cols = x.shape()[1];
    int64_t changed = 0;
    for (int64_t r = 0; r < rows; ++r) {
      bool differs = false;
      for (int64_t c = 0; c < cols; ++c) differs = differs || x.data()[r * cols + c] != y.data()[r * cols + c];
      changed += differs;
    }
    CHECK(changed == rows - rows / 2);  // T = 0.5: floor(T rows) rows masked
  }
  // Parameters no layer records (embeddings) are not masked: every row may move.
  CHECK_FALSE(a.get("model.norm.weight").data()[0] == b.get("model.norm.weight").data()[0]);
}

TEST_CASE("extend refuses options of another method", "[nrlab][extend]") {
  nrlab::ExtensionSpec s;
  s.method = "lora";
  s.migu_threshold = 0.5;
  CHECK_THROWS_AS(nrlab::resolve_defaults(s), nr::ValueError);
  s = nrlab::ExtensionSpec{};
  s.method = "neutral";
  s.experts = 3;
  CHECK_THROWS_AS(nrlab::resolve_defaults(s), nr::ValueError);
  s = nrlab::ExtensionSpec{};
  s.method = "experts";
  s.experts = 2;
  s.top_k = 3;
  CHECK_THROWS_AS(nrlab::resolve_defaults(s), nr::ValueError);
}

TEST_CASE("pretrain --arch moe with stick-breaking attention; prune; insert experts", "[nrlab][moe]") {
  const fs::path moe = fixture().root / "moe";
  nrlab::PretrainOptions o = pretrain_options(moe);
  o.arch = "moe";
  o.attention = "stick-breaking";
  o.experts = 6;
  o.top_k = 2;
  o.steps = 40;
  nlohmann::json pre;
  REQUIRE(nrlab::run_pretrain(o, &pre) == 0);
  CHECK(pre["arch"] == "moe");
  CHECK(pre["attention"] == "stick-breaking");
  CHECK(pre["moe"]["num_experts"] == 6);
  CHECK(pre["moe"]["mi_weight"].get<double>() == Approx(0.01));
  CHECK(pre["loss_last_steps"].get<double>() < pre["loss_first_steps"].get<double>() - 0.5);  // the loss falls
  std::string method;
  CHECK(loaded_fr_bpb(moe, 1500, &method) > 0.0);
  CHECK(method == "backbone");

  // Resuming the run as a dense model is refused.
  nrlab::PretrainOptions dense = pretrain_options(moe);
  CHECK_THROWS_AS(nrlab::run_pretrain(dense), nr::ValueError);

  SECTION("prune removes experts and the smaller model loads") {
    nrlab::PruneOptions p;
    p.checkpoint = moe.string();
    p.text = (fixture().corpus() / "en" / "valid.txt").string();
    p.threshold = 0.95;
    p.out = (fixture().root / "moe-pruned").string();
    const nlohmann::json report = nrlab::run_prune(p);
    CHECK(report == read_json(fs::path(p.out) / "results.json"));
    const int64_t removed = report["parameters_removed"].get<int64_t>();
    CHECK(removed > 0);
    CHECK(report["parameters_after"].get<int64_t>() + removed == report["parameters_before"].get<int64_t>());
    CHECK(std::isfinite(report["bpb_before"].get<double>()));
    CHECK(std::isfinite(report["bpb_after"].get<double>()));
    int64_t kept = 0;
    for (const nlohmann::json& l : report["layers"]) {
      CHECK(l["experts_after"].get<int64_t>() >= 2);  // at least top_k
      kept += l["experts_after"].get<int64_t>();
    }
    CHECK(kept < 4 * 6);
    int64_t params = 0;
    nrlab::with_loaded_model(p.out, "", [&](auto& model, const nrlab::LoadedInfo&) {
      params = nr::count_parameters(model);
      if constexpr (requires { model.layers[0].mlp.num_experts(); }) {
        for (size_t l = 0; l < model.layers.size(); ++l)
          CHECK(model.layers[l].mlp.num_experts() == report["layers"][l]["experts_after"].get<int64_t>());
      } else {
        FAIL("the pruned checkpoint did not load as a mixture-of-experts model");
      }
      return 0;
    });
    CHECK(params == report["parameters_after"].get<int64_t>());
    // Pruning a model onto itself is refused.
    p.out = p.checkpoint;
    CHECK_THROWS_AS(nrlab::run_prune(p), nr::ValueError);
  }

  SECTION("extend --method experts inserts new experts into the expert layers") {
    const fs::path out = fixture().root / "moe-ext";
    nrlab::ExtendOptions e = extend_options(moe, "experts", out);
    e.spec.experts = 2;
    e.spec.concentration = 0.01;
    nlohmann::json results;
    REQUIRE(nrlab::run_extend(e, &results) == 0);
    CHECK(results["experts"] == 2);
    CHECK(results["moe"]["new_experts"]["count"] == 2);
    CHECK(results["moe"]["new_experts"]["routing"] == "extra_slots");
    CHECK(results["trainable_params"] == results["new_params"]);
    CHECK(results["valid_bpb"]["fr"].get<double>() < results["backbone_valid_bpb"]["fr"].get<double>());
    CHECK(loaded_fr_bpb(out, 1500) == Approx(results["valid_bpb"]["fr"].get<double>()).epsilon(1e-5));
    // Other methods are refused on a MoE backbone, with a message.
    CHECK_THROWS_AS(nrlab::run_extend(extend_options(moe, "lora", fixture().root / "moe-lora")), nr::ValueError);
  }
}
