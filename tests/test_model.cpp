// Model-level checks: parameter names, GQA vs MHA, loss falls, BPB protocol, checkpoints, resume.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "nr/io/checkpoint.hpp"
#include "nr/nr.hpp"

namespace fs = std::filesystem;
using nr::Shape;

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

std::vector<int32_t> text_tokens() {
  std::string s;
  for (int i = 0; i < 60; ++i) s += "the quick brown fox jumps over the lazy dog. ";
  return nr::ByteTokenizer{}.encode(s);
}

nr::Indices ids_of(const std::vector<int32_t>& v, int64_t B, int64_t T) {
  return nr::Indices(std::vector<int32_t>(v.begin(), v.begin() + B * T), Shape{B, T});
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-model-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

}  // namespace

TEST_CASE("parameters are registered with Hugging Face Llama names", "[model]") {
  nr::Llama m(micro_config(), 1);
  auto params = nr::named_parameters(m);
  std::vector<std::string> names;
  for (auto& [n, v] : params) names.push_back(n);
  CHECK(names.front() == "model.embed_tokens.weight");
  CHECK(std::find(names.begin(), names.end(), "model.layers.1.self_attn.k_proj.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "model.layers.0.mlp.down_proj.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "model.layers.0.input_layernorm.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "model.layers.0.post_attention_layernorm.weight") != names.end());
  CHECK(std::find(names.begin(), names.end(), "model.norm.weight") != names.end());
  CHECK(names.back() == "lm_head.weight");
  CHECK(names.size() == 1 + 2 * 9 + 2);

  nr::ModelConfig tied = micro_config();
  tied.tie_word_embeddings = true;
  nr::Llama t(tied, 1);
  CHECK(nr::named_parameters(t).size() == names.size() - 1);
  CHECK(t(ids_of(text_tokens(), 1, 8)).shape() == Shape{1, 8, 256});
}

TEST_CASE("GQA equals MHA whose key/value weights repeat the GQA ones per group", "[model][gqa]") {
  nr::ModelConfig g = micro_config();
  g.num_key_value_heads = 2;  // groups of 2 query heads
  nr::Llama gqa(g, 3);
  nr::ModelConfig m = micro_config();
  nr::Llama mha(m, 4);
  // Copy every weight; expand k/v projections: kv head j serves query heads 2j and 2j+1.
  std::map<std::string, nr::Var> gp;
  for (auto& [n, v] : nr::named_parameters(gqa)) gp[n] = v;
  const int64_t D = g.head_dim(), C = g.hidden_size;
  for (auto& [n, v] : nr::named_parameters(mha)) {
    const nr::Tensor& src = gp.at(n).value();
    if (src.shape() == v.shape()) {
      v.value().copy_(src);
      continue;
    }
    for (int64_t h = 0; h < m.num_attention_heads; ++h) {
      const int64_t j = h / 2;
      std::copy_n(src.data() + j * D * C, D * C, v.value().data() + h * D * C);
    }
  }
  const nr::Indices ids = ids_of(text_tokens(), 2, 12);
  const nr::Tensor a = gqa(ids).value(), b = mha(ids).value();
  double max_diff = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) max_diff = std::max(max_diff, double(std::abs(a.data()[i] - b.data()[i])));
  INFO("max |GQA - MHA| = " << max_diff);
  CHECK(max_diff < 1e-5);
}

TEST_CASE("bits per byte follows the window protocol", "[model][eval]") {
  nr::Llama m(micro_config(), 5);
  m.lm_head.weight.value().zero_();  // uniform predictions: exactly 8 bits per byte
  std::vector<int32_t> tokens(40, 65);
  const nr::BpbResult r = nr::bits_per_byte(m, tokens, 16, 2);
  // windows of 16, 16, 8 tokens: 15 + 15 + 7 predictions
  CHECK(r.tokens == 37);
  CHECK(r.bpb == Approx(8.0).epsilon(1e-6));
  std::vector<int32_t> ragged(33, 66);  // last window of 1 token predicts nothing
  CHECK(nr::bits_per_byte(m, ragged, 16).tokens == 30);
}

TEST_CASE("training lowers the loss well below its initial value", "[model][train]") {
  nr::Llama m(micro_config(), 7);
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 8, 16, 11);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 3e-3});
  double first = 0, last = 0;
  for (int64_t s = 0; s < 60; ++s) {
    const auto r = nr::train_step(m, opt, sampler.batch_at(s), 3e-3, 1.0, s);
    if (s == 0) first = r.loss;
    last = r.loss;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first == Approx(std::log(256.0)).margin(0.2));
  CHECK(last < 0.5 * first);
}

TEST_CASE("frozen parameters stay unchanged and get no gradient memory", "[model][train]") {
  nr::Llama m(micro_config(), 8);
  nr::set_trainable(m, false);
  m.lm_head.weight.set_requires_grad(true);
  const nr::Tensor before = m.layers[0].mlp.up_proj.weight.value().clone();
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 1);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2});
  CHECK(opt.slots().size() == 1);
  for (int64_t s = 0; s < 3; ++s) nr::train_step(m, opt, sampler.batch_at(s), 1e-2, 1.0, s);
  CHECK_FALSE(m.layers[0].mlp.up_proj.weight.has_grad());
  CHECK(m.layers[0].mlp.up_proj.weight.value().to_vector() == before.to_vector());
}

TEST_CASE("checkpoint save / load round trip is bit-exact", "[model][checkpoint]") {
  const fs::path dir = temp_dir("roundtrip");
  nr::Llama a(micro_config(), 9);
  nr::save_model(dir, a, micro_config());
  const nr::ModelConfig c = nr::load_config_json(dir / "config.json");
  CHECK(c.hidden_size == 32);
  nr::Llama b(c, 123);
  nr::load_model_weights(dir, b);
  auto pa = nr::named_parameters(a), pb = nr::named_parameters(b);
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO(pa[i].first);
    CHECK(pa[i].second.value().to_vector() == pb[i].second.value().to_vector());
  }
  // A model of another size is rejected with the tensor named.
  nr::ModelConfig other = micro_config();
  other.intermediate_size = 40;
  nr::Llama wrong(other, 1);
  REQUIRE_THROWS_WITH(nr::load_model_weights(dir, wrong), Catch::Contains("gate_proj") && Catch::Contains("(40, 32)"));
  fs::remove_all(dir);
}

TEST_CASE("resuming gives the same loss curve as an uninterrupted run", "[model][checkpoint][resume]") {
  const auto tokens = text_tokens();
  const nr::ModelConfig cfg = micro_config();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 21);
  auto run = [&](nr::Llama& m, nr::AdamW& opt, int64_t from, int64_t to) {
    std::vector<double> losses;
    for (int64_t s = from; s < to; ++s) losses.push_back(nr::train_step(m, opt, sampler.batch_at(s), 2e-3, 1.0, s).loss);
    return losses;
  };
  nr::Llama full(cfg, 2);
  nr::AdamW full_opt(nr::named_parameters(full), {.lr = 2e-3});
  const std::vector<double> reference = run(full, full_opt, 0, 8);

  const fs::path dir = temp_dir("resume");
  nr::Llama first(cfg, 2);
  nr::AdamW first_opt(nr::named_parameters(first), {.lr = 2e-3});
  std::vector<double> curve = run(first, first_opt, 0, 4);
  nr::save_training_state(dir, first, first_opt, 4);

  nr::Llama second(cfg, 999);  // different init: everything must come from the file
  nr::AdamW second_opt(nr::named_parameters(second), {.lr = 2e-3});
  const int64_t step = nr::load_training_state(dir, second, second_opt);
  REQUIRE(step == 4);
  for (double l : run(second, second_opt, step, 8)) curve.push_back(l);
  REQUIRE(curve.size() == reference.size());
  for (size_t i = 0; i < curve.size(); ++i) CHECK(curve[i] == reference[i]);  // bit-identical
  fs::remove_all(dir);
}

TEST_CASE("a non-finite loss stops training with a message naming the step", "[model][train]") {
  nr::Llama m(micro_config(), 10);
  m.lm_head.weight.value().data()[0] = std::numeric_limits<float>::quiet_NaN();
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 2, 16, 1);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-3});
  const nr::Tensor before = m.layers[0].mlp.up_proj.weight.value().clone();
  REQUIRE_THROWS_AS(nr::train_step(m, opt, sampler.batch_at(0), 1e-3, 1.0, 17), nr::NumericError);
  REQUIRE_THROWS_WITH(nr::train_step(m, opt, sampler.batch_at(0), 1e-3, 1.0, 17), Catch::Contains("step 17"));
  CHECK(m.layers[0].mlp.up_proj.weight.value().to_vector() == before.to_vector());
}

TEST_CASE("the model rejects sequences longer than its context", "[model][errors]") {
  nr::Llama m(micro_config(), 1);
  std::vector<int32_t> v(40, 1);
  REQUIRE_THROWS_AS(m(nr::Indices(v, Shape{2, 20})), nr::ShapeError);
  nr::ModelConfig bad = micro_config();
  bad.num_key_value_heads = 3;
  REQUIRE_THROWS_WITH(nr::Llama(bad, 1), Catch::Contains("num_key_value_heads"));
  REQUIRE_THROWS_AS(nr::preset("huge"), nr::ValueError);
}

TEST_CASE("the model refuses a config whose hidden_act its FFN type does not compute", "[model][errors]") {
  nr::ModelConfig gelu = micro_config();
  gelu.hidden_act = "gelu_pytorch_tanh";
  // A Llama (SiLU FFN) asked for GELU: refused, the message names both activations.
  try {
    nr::Llama m(gelu, 1);
    FAIL("a SiLU model accepted hidden_act = gelu_pytorch_tanh");
  } catch (const nr::ValueError& e) {
    const std::string what = e.what();
    CHECK(what.find("'gelu_pytorch_tanh'") != std::string::npos);
    CHECK(what.find("'silu'") != std::string::npos);
  }
  // The converse, and the matching pairs build.
  REQUIRE_THROWS_AS(nr::LanguageModel<nr::GemmaStyleBlock>(micro_config(), 1), nr::ValueError);
  CHECK_NOTHROW(nr::LanguageModel<nr::GemmaStyleBlock>(gelu, 1));
  CHECK_NOTHROW(nr::Llama(micro_config(), 1));
  // Blocks built by a factory are checked too (mixtures of experts declare their experts' act).
  using MoeBlock = nr::Block<nr::Attention<>, nr::Experts<nr::Silu>>;
  static_assert(nr::detail::block_hidden_act<MoeBlock>() != nullptr);
}
