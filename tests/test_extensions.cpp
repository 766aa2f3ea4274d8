// Extension methods at library level: identity at initialisation, frozen backbone, local losses,
// capacity budget, LoRA merge, backbone loading.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "nr/ext/adapter.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/budget.hpp"
#include "nr/ext/lora.hpp"
#include "nr/nr.hpp"
#include "nr/testing/gradcheck.hpp"

namespace fs = std::filesystem;
using nr::Shape;

namespace {

nr::ModelConfig micro() {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  return c;
}

nr::Indices sample_ids(int64_t B = 2, int64_t T = 12) {
  std::vector<int32_t> v(static_cast<size_t>(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>((i * 31 + 7) % 256);
  return nr::Indices(v, Shape{B, T});
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-ext-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

// Copies every parameter of `from` into the parameter of the same name in `to`.
template <class A, class B>
void copy_by_name(A& from, B& to) {
  std::map<std::string, nr::Var> src;
  for (auto& [n, v] : nr::named_parameters(from)) src[n] = v;
  to.visit_parameters([&](const std::string& n, nr::Var& v) {
    if (src.count(n)) v.value().copy_(src.at(n).value());
  }, "");
}

std::vector<float> logits_of(const auto& model, const nr::Indices& ids) {
  nr::NoGrad ng;
  return model(ids).value().to_vector();
}

template <class Gate>
void check_adapter_identity(nr::ExtensionSite site, nr::AdapterInit init) {
  nr::Llama backbone(micro(), 1);
  nr::AdapterLlama<Gate> ext(micro(), 2);
  nr::Rng rng(3);
  nr::attach_adapters(ext, {.hidden = 8, .site = site, .init = init}, rng);
  copy_by_name(backbone, ext);
  const nr::Indices ids = sample_ids();
  CHECK(logits_of(ext, ids) == logits_of(backbone, ids));  // exactly equal
}

}  // namespace

TEST_CASE("every extension starts as the identity of its backbone", "[ext][identity]") {
  using S = nr::ExtensionSite;
  for (S site : {S::ffn_parallel, S::ffn_serial, S::attention_parallel}) {
    INFO("site " << static_cast<int>(site));
    check_adapter_identity<nr::NoGate>(site, nr::AdapterInit::he);
    check_adapter_identity<nr::EluGate>(site, nr::AdapterInit::low_variance);
    check_adapter_identity<nr::SigmoidGate>(site, nr::AdapterInit::he);
  }
  nr::Llama backbone(micro(), 1);
  nr::LoraLlama lora(micro(), 2);
  nr::Rng rng(4);
  nr::LoraConfig cfg;
  cfg.rank = 4;
  cfg.targets = nr::LoraConfig::all_targets();
  nr::enable_lora(lora, cfg, rng);
  copy_by_name(backbone, lora);
  CHECK(logits_of(lora, sample_ids()) == logits_of(backbone, sample_ids()));
}

TEST_CASE("adapter initialisation: zero output matrix, He or low variance inputs", "[ext][init]") {
  nr::ModelConfig c = micro();
  c.hidden_size = 256;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.num_hidden_layers = 8;
  for (auto [init, expected] : {std::pair{nr::AdapterInit::he, 2.0 / 256}, {nr::AdapterInit::low_variance, 1.0 / (256 * 8)}}) {
    nr::Adapter<nr::EluGate> a;
    nr::Rng rng(1);
    a.init(c, {.hidden = 64, .init = init}, 0, rng);
    const std::vector<float> w = a.up_proj.weight.value().to_vector();
    double var = 0;
    for (float x : w) var += double(x) * x;
    var /= double(w.size());
    CHECK(var == Approx(expected).epsilon(0.05));
    for (float x : a.down_proj.weight.value().to_vector()) CHECK(x == 0.0f);
  }
}

TEST_CASE("a frozen backbone receives no gradient and stays unchanged", "[ext][freeze]") {
  nr::AdapterLlama<nr::EluGate> m(micro(), 5);
  nr::Rng rng(6);
  nr::attach_adapters(m, {.hidden = 8, .init = nr::AdapterInit::he, .l1_weight = 0.1}, rng);
  const int64_t trainable = nr::freeze_backbone(m);
  CHECK(trainable == 2 * nr::Adapter<nr::EluGate>::parameter_count(32, 8));
  std::map<std::string, std::vector<float>> before;
  for (auto& [n, v] : nr::named_parameters(m)) before[n] = v.value().to_vector();
  std::string text;
  for (int i = 0; i < 20; ++i) text += "le chat noir dort. the black cat sleeps. ";
  const auto tokens = nr::ByteTokenizer{}.encode(text);
  nr::MixtureSampler sampler({{"new", &tokens, 0.5}, {"old", &tokens, 0.5}}, 4, 16, 3);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2});
  for (int64_t s = 0; s < 3; ++s) nr::train_step(m, opt, sampler.batch_at(s), 1e-2, 1.0, s);
  for (auto& [n, v] : nr::named_parameters(m)) {
    INFO(n);
    if (nr::is_extension_parameter(n)) {
      if (n.find("down_proj") != std::string::npos) CHECK(v.value().to_vector() != before[n]);
    } else {
      CHECK_FALSE(v.has_grad());
      CHECK(v.value().to_vector() == before[n]);
    }
  }
}

TEST_CASE("the l1 local loss only sees tokens of original-domain sequences", "[ext][local-loss]") {
  nr::ModelConfig c = micro();
  nr::Adapter<nr::EluGate> a;
  nr::Rng rng(7);
  a.init(c, {.hidden = 8, .l1_weight = 2.0}, 0, rng);
  nr::normal_(a.down_proj.weight.value(), 0.0, 0.5, rng);  // a trained, non-zero residue
  const nr::Var x = nr::testing::random_var(Shape{2, 5, 32}, 8);

  nr::ForwardContext only_new;
  only_new.original = {0, 0};
  a(x, only_new);
  CHECK(only_new.local_losses.empty());  // nothing to push towards zero on new-domain text

  nr::ForwardContext mixed;
  mixed.original = {1, 0};
  const nr::Var y = a(x, mixed);
  REQUIRE(mixed.local_losses.size() == 1);
  double expected = 0;  // alpha * mean |y| over the 5 tokens of sequence 0
  for (int64_t i = 0; i < 5 * 32; ++i) expected += std::abs(y.value().data()[i]);
  expected = 2.0 * expected / (5 * 32);
  CHECK(mixed.local_losses[0].item() > 0.0f);
  CHECK(mixed.local_losses[0].item() == Approx(expected).epsilon(1e-5));

  nr::ForwardContext unknown;  // no domain flags (evaluation): no local loss
  a(x, unknown);
  CHECK(unknown.local_losses.empty());
}

TEST_CASE("the sigmoid gate is trained as an original-vs-new classifier", "[ext][local-loss]") {
  nr::Adapter<nr::SigmoidGate> a;
  nr::Rng rng(9);
  a.init(micro(), {.hidden = 4, .bce_weight = 1.0}, 0, rng);
  a.block_gate.weight.value().zero_();  // z = 0: BCE = ln 2 whatever the targets
  const nr::Var x = nr::testing::random_var(Shape{2, 3, 32}, 10);
  nr::ForwardContext ctx;
  ctx.original = {1, 0};
  a(x, ctx);
  REQUIRE(ctx.local_losses.size() == 1);
  // Weight 1 stands for the mean over the model's layers: each of micro()'s 2 layers adds ln 2 / 2.
  REQUIRE(micro().num_hidden_layers == 2);
  CHECK(ctx.local_losses[0].item() == Approx(std::log(2.0) / 2.0));
  nr::Adapter<nr::EluGate> elu;
  REQUIRE_THROWS_AS(elu.init(micro(), {.hidden = 4, .bce_weight = 1.0}, 0, rng), nr::ValueError);
}

TEST_CASE("an adapter block is differentiable end to end", "[ext][gradcheck]") {
  nr::Adapter<nr::EluGate> a;
  nr::Rng rng(11);
  a.init(micro(), {.hidden = 4, .init = nr::AdapterInit::he}, 0, rng);
  nr::normal_(a.down_proj.weight.value(), 0.0, 0.3, rng);
  auto r = nr::testing::gradcheck(
      [&](const std::vector<nr::Var>& v) {
        nr::ForwardContext ctx;
        return a(v[0], ctx);
      },
      {nr::testing::random_var(Shape{1, 3, 32}, 12)});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("the capacity budget is met within one hidden unit or one rank", "[ext][budget]") {
  for (const char* preset : {"nano", "tiny", "small"}) {
    const nr::ModelConfig c = nr::preset(preset);
    nr::Llama backbone(c, 1);
    const int64_t P = nr::count_parameters(backbone);
    for (double extra : {0.05, 0.1, 0.2, 0.5}) {
      INFO(preset << " extra " << extra);
      const int64_t h = nr::adapter_hidden_for_budget(extra, P, c, true);
      const int64_t added = c.num_hidden_layers * nr::Adapter<nr::EluGate>::parameter_count(c.hidden_size, h);
      const double one_unit = 3.0 * c.hidden_size * c.num_hidden_layers;
      CHECK(std::abs(double(added) - extra * P) <= one_unit / 2 + 1);

      nr::LoraLlama lora(c, 1);
      const int64_t per_rank = nr::lora_params_per_rank(lora, nr::LoraConfig{});
      const int64_t r = nr::lora_rank_for_budget(extra, P, per_rank);
      CHECK(std::abs(double(r * per_rank) - extra * P) <= per_rank / 2.0 + 1);
    }
  }
  REQUIRE_THROWS_AS(nr::adapter_hidden_for_budget(0.0, 100, micro(), false), nr::ValueError);
}

TEST_CASE("merging LoRA folds B A into W and keeps the logits", "[ext][lora]") {
  nr::LoraLlama m(micro(), 13);
  nr::Rng rng(14);
  nr::LoraConfig cfg;
  cfg.rank = 3;
  nr::enable_lora(m, cfg, rng);
  for (auto& layer : m.layers)  // pretend training moved B away from zero
    nr::for_each_projection(layer, [&](const std::string&, nr::LoraLinear& l) {
      if (l.rank() > 0) nr::normal_(l.lora_B.value(), 0.0, 0.1, rng);
    });
  const std::vector<float> before = logits_of(m, sample_ids());
  nr::merge_lora(m);
  CHECK(m.layers[0].mlp.up_proj.rank() == 0);
  const std::vector<float> after = logits_of(m, sample_ids());
  double max_diff = 0;
  for (size_t i = 0; i < before.size(); ++i) max_diff = std::max(max_diff, double(std::abs(before[i] - after[i])));
  INFO("max |merged - unmerged| = " << max_diff);
  CHECK(max_diff < 1e-5);
  // The merged model is a plain Llama under the plain names.
  nr::Llama plain(micro(), 1);
  copy_by_name(m, plain);
  CHECK(nr::named_parameters(plain).size() == nr::named_parameters(m).size());
  const std::vector<float> plain_logits = logits_of(plain, sample_ids());
  for (size_t i = 0; i < before.size(); ++i) CHECK(std::abs(plain_logits[i] - after[i]) == 0.0f);
}

TEST_CASE("a backbone checkpoint loads into an extended model by name", "[ext][backbone]") {
  const fs::path dir = temp_dir("backbone");
  nr::Llama backbone(micro(), 15);
  nr::save_model(dir, backbone, micro());
  nr::AdapterLlama<nr::EluGate> ext(micro(), 16);
  nr::Rng rng(17);
  nr::attach_adapters(ext, {.hidden = 4}, rng);
  const std::vector<std::string> fresh = nr::load_backbone(dir, ext);
  CHECK(fresh.size() == 2 * 5);  // norm, gate, up, down, block_gate per layer
  CHECK(logits_of(ext, sample_ids()) == logits_of(backbone, sample_ids()));

  nr::ModelConfig other = micro();
  other.num_hidden_layers = 3;
  nr::AdapterLlama<nr::EluGate> deeper(other, 1);
  REQUIRE_THROWS_WITH(nr::load_backbone(dir, deeper), Catch::Contains("model.layers.2") && Catch::Contains("missing"));
  nr::ModelConfig shallow = micro();
  shallow.num_hidden_layers = 1;
  nr::AdapterLlama<nr::EluGate> fewer(shallow, 1);
  REQUIRE_THROWS_WITH(nr::load_backbone(dir, fewer), Catch::Contains("model.layers.1") && Catch::Contains("no parameter"));
  fs::remove_all(dir);
}
