// MIGU (magnitude-based gradient updating): recorded output magnitudes, the top-(1 - T) row mask,
// masked rows left bit-identical by AdamW (with and without weight decay), full fine-tuning and
// LoRA.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "nr/autograd/backward.hpp"
#include "nr/data/sampler.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/lora.hpp"
#include "nr/optim/adamw.hpp"
#include "nr/optim/gradient_mask.hpp"
#include "nr/ext/migu.hpp"
#include "nr/testing/gradcheck.hpp"
#include "nr/train/step.hpp"

using nr::Shape;
using nr::Var;

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

std::vector<int32_t> text_tokens() {
  std::string s;
  for (int i = 0; i < 40; ++i) s += "le chat noir dort sur le tapis. the black cat sleeps. ";
  return nr::ByteTokenizer{}.encode(s);
}

std::vector<float> row_of(const Var& w, int64_t r) {
  const int64_t cols = w.numel() / w.shape()[0];
  return std::vector<float>(w.value().data() + r * cols, w.value().data() + (r + 1) * cols);
}

// Runs `steps` train steps and checks, for every masked parameter and step, that masked rows are
// bit-identical, that kept rows with a gradient moved, and that the kept fraction is 1 - T;
// `masked_slots` optimizer slots must carry a mask at every step.
template <class Model>
void check_masked_training(Model& m, nr::AdamW& opt, size_t masked_slots, int64_t steps, double T) {
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 3);
  int64_t checked_rows = 0, moved_rows = 0;
  for (int64_t s = 0; s < steps; ++s) {
    std::map<std::string, nr::Tensor> before;
    for (auto& slot : opt.slots()) before[slot.name] = slot.param.value().clone();
    nr::train_step(m, opt, sampler.batch_at(s), 1e-2, 1.0, s);
    size_t with_mask = 0;
    for (auto& slot : opt.slots()) with_mask += !slot.row_mask.empty();
    CHECK(with_mask == masked_slots);
    for (auto& slot : opt.slots()) {
      INFO("step " << s << " " << slot.name);
      if (slot.row_mask.empty()) continue;  // not a masked parameter
      const int64_t out = slot.param.shape()[0];
      int64_t kept = 0;
      for (uint8_t k : slot.row_mask) kept += k;
      CHECK(kept == out - static_cast<int64_t>(std::floor(T * static_cast<double>(out))));
      CHECK(std::abs(double(kept) / double(out) - (1.0 - T)) <= 1.0 / double(out));
      const Var old(before.at(slot.name));
      for (int64_t r = 0; r < out; ++r) {
        ++checked_rows;
        if (!slot.row_mask[static_cast<size_t>(r)])
          CHECK(row_of(slot.param, r) == row_of(old, r));  // bit for bit
        else if (row_of(slot.param, r) != row_of(old, r))
          ++moved_rows;
      }
    }
  }
  INFO("rows checked " << checked_rows << ", kept rows that moved " << moved_rows);
  CHECK(checked_rows > 0);
  CHECK(moved_rows > 0);
}

}  // namespace

TEST_CASE("MIGU keeps the out - floor(T out) largest rows", "[migu]") {
  const std::vector<double> n = {0.1, 0.9, 0.3, 0.3, 0.7, 0.0, 0.5, 0.2, 0.8, 0.4};
  CHECK(nr::MiguMask::top_rows(n, 0.7) == std::vector<uint8_t>{0, 1, 0, 0, 1, 0, 0, 0, 1, 0});  // keep 3
  CHECK(nr::MiguMask::top_rows(n, 0.0) == std::vector<uint8_t>(10, 1));
  CHECK(nr::MiguMask::top_rows(n, 1.0) == std::vector<uint8_t>(10, 0));
  // floor(0.75 * 10) = 7 masked; the tie 0.3 / 0.3 goes to the lower index.
  CHECK(nr::MiguMask::top_rows(n, 0.65) == std::vector<uint8_t>{0, 1, 0, 0, 1, 0, 1, 0, 1, 0});
  CHECK(nr::MiguMask::top_rows({0.3, 0.3, 0.3}, 0.5) == std::vector<uint8_t>{1, 1, 0});
}

TEST_CASE("MiguLinear records raw and per-token normalised output magnitudes", "[migu]") {
  nr::MiguLinear l;
  l.weight = Var::parameter(nr::Tensor::from_vector({1, 0, 0, 2, -1, -1}, Shape{3, 2}));
  const Var x(nr::Tensor::from_vector({1, 1, 2, -1}, Shape{2, 2}));  // outputs (1, 2, -2), (2, -2, -1)
  const Var y = l(x);
  CHECK(y.value().to_vector() == std::vector<float>{1, 2, -2, 2, -2, -1});
  CHECK(l.magnitudes->tokens == 2);
  CHECK(l.magnitudes->raw == std::vector<double>{3, 4, 3});
  CHECK(l.magnitudes->normalized[0] == Approx(1.0 / 5 + 2.0 / 5));
  CHECK(l.magnitudes->normalized[1] == Approx(2.0 / 5 + 2.0 / 5));
  CHECK(l.magnitudes->normalized[2] == Approx(2.0 / 5 + 1.0 / 5));
  {
    nr::NoGrad ng;  // evaluation records nothing
    l(x);
  }
  l.weight.set_requires_grad(false);  // nor does a frozen weight
  l(x);
  CHECK(l.magnitudes->tokens == 2);
  nr::active_tape().clear();
}

TEST_CASE("the MIGU layers compute exactly what Linear and LoraLinear compute", "[migu]") {
  nr::Rng r1(1), r2(1);
  nr::LoraLlama plain(micro(), 5);
  nr::MiguLoraLlama migu(micro(), 5);
  nr::LoraConfig cfg;
  cfg.rank = 4;
  cfg.targets = nr::LoraConfig::all_targets();
  nr::enable_lora(plain, cfg, r1);
  nr::enable_lora(migu, cfg, r2);
  for (auto* m : {&plain.layers[0].mlp.up_proj, &plain.layers[1].self_attn.q_proj})
    nr::normal_(m->lora_B.value(), 0.0, 0.1, r1);
  for (auto* m : {&migu.layers[0].mlp.up_proj, &migu.layers[1].self_attn.q_proj})
    nr::normal_(m->lora_B.value(), 0.0, 0.1, r2);
  const nr::Indices ids(std::vector<int32_t>{3, 70, 101, 9, 44, 250, 17, 8}, Shape{1, 8});
  nr::ForwardContext c1, c2;
  CHECK(plain(ids, c1).value().to_vector() == migu(ids, c2).value().to_vector());
  nr::active_tape().clear();
  nr::Llama dense(micro(), 6);
  nr::MiguLlama dense_migu(micro(), 6);
  CHECK(dense(ids).value().to_vector() == dense_migu(ids).value().to_vector());
  nr::active_tape().clear();
}

TEST_CASE("MIGU full fine-tuning: masked rows stay bit-identical, 1 - T of the rows train", "[migu][train]") {
  for (double wd : {0.0, 0.1}) {
    INFO("weight decay " << wd);
    nr::MiguLlama m(micro(), 7);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2, .weight_decay = wd});
    const nr::MiguMask migu(m, {.threshold = 0.7});
    CHECK(migu.size() == 2 * 7);  // q, k, v, o, gate, up, down per block
    migu.attach(opt);
    REQUIRE_THROWS_AS(migu.attach(opt), nr::ValueError);
    check_masked_training(m, opt, migu.size(), 4, 0.7);
    // Unmasked parameters (embeddings, norms, lm_head) still train normally.
    CHECK(opt.slots().front().name == "model.embed_tokens.weight");
    CHECK(opt.slots().front().row_mask.empty());
  }
}

TEST_CASE("MIGU with LoRA masks the rows of A and B", "[migu][train][lora]") {
  for (nr::MiguLoraSource source : {nr::MiguLoraSource::layer_output, nr::MiguLoraSource::branch_output}) {
    nr::MiguLoraLlama m(micro(), 9);
    nr::Rng rng(10);
    nr::LoraConfig cfg;
    cfg.rank = 8;
    cfg.targets = nr::LoraConfig::all_targets();
    nr::enable_lora(m, cfg, rng);
    for (auto& layer : m.layers) nr::normal_(layer.mlp.down_proj.lora_B.value(), 0.0, 0.05, rng);
    nr::freeze_backbone(m);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2, .weight_decay = 0.0});
    REQUIRE(opt.slots().size() == 2 * 7 * 2);  // A and B of 7 projections in 2 blocks
    const nr::MiguMask migu(m, {.threshold = 0.5, .lora_b_source = source});
    migu.attach(opt);
    CHECK(migu.size() == 2 * 7 * 3);  // W (frozen: no slot), A, B
    check_masked_training(m, opt, opt.slots().size(), 3, 0.5);
  }
}

TEST_CASE("MIGU's mask follows the recorded magnitudes and zeroes masked gradient rows", "[migu]") {
  for (nr::MiguLoraSource source : {nr::MiguLoraSource::layer_output, nr::MiguLoraSource::branch_output}) {
    nr::Rng rng(2);
    nr::MiguLoraLinear l(6, 5, rng);
    l.enable(4, 8.0, false, rng);
    nr::normal_(l.lora_B.value(), 0.0, 0.5, rng);
    l.weight.set_requires_grad(false);
    nr::AdamW opt({{"A", l.lora_A}, {"B", l.lora_B}}, {.lr = 1e-2});
    const std::shared_ptr<nr::OutputMagnitudes> b_source =
        source == nr::MiguLoraSource::layer_output ? l.layer_out : l.b_branch;
    nr::MiguMask mask;  // default settings (T = 0.7), layers registered by hand
    mask.add(l.lora_A, l.a_out);
    mask.add(l.lora_B, b_source);
    Var x = nr::testing::random_var(Shape{3, 6}, 3);
    Var y = l(x);
    nr::backward(y, nr::Tensor::ones(y.shape()));
    const std::vector<uint8_t> expect_a = nr::MiguMask::top_rows(l.a_out->normalized, 0.7);
    const std::vector<uint8_t> expect_b = nr::MiguMask::top_rows(b_source->normalized, 0.7);
    CHECK(l.a_out->tokens == 3);
    mask.apply(opt);
    CHECK(opt.slots()[0].row_mask == expect_a);
    CHECK(opt.slots()[1].row_mask == expect_b);
    for (size_t k = 0; k < 2; ++k) {
      const Var& p = opt.slots()[k].param;
      const int64_t cols = p.numel() / p.shape()[0];
      int64_t zero_rows = 0;
      for (int64_t r = 0; r < p.shape()[0]; ++r)
        if (!opt.slots()[k].row_mask[static_cast<size_t>(r)]) {
          ++zero_rows;
          for (int64_t c = 0; c < cols; ++c) CHECK(p.grad().data()[r * cols + c] == 0.0f);
        }
      CHECK(zero_rows == static_cast<int64_t>(std::floor(0.7 * static_cast<double>(p.shape()[0]))));
    }
    CHECK(l.a_out->tokens == 0);  // cleared for the next step
    // Nothing recorded since: the next apply leaves the parameters unmasked.
    mask.apply(opt);
    CHECK(opt.slots()[0].row_mask.empty());
  }
}

TEST_CASE("MIGU settings are checked", "[migu][errors]") {
  nr::MiguLlama m(micro(), 1);
  REQUIRE_THROWS_AS(nr::MiguMask(m, {.threshold = 1.5}), nr::ValueError);
  nr::AdamW opt({{"w", Var::parameter(nr::Tensor::zeros(Shape{3, 2}))}}, {});
  opt.slots()[0].param.grad_buffer();
  opt.slots()[0].row_mask = {1, 0};
  REQUIRE_THROWS_WITH(opt.step(1e-3), Catch::Contains("'w'") && Catch::Contains("(3, 2)"));
}
