// Activation recomputation (nn/recompute.hpp): a step with ForwardContext::recompute_blocks gives
// the loss, the local losses and every gradient of the step without it (full fine-tuning, LoRA,
// neutral residues with their l1 loss on original-domain sequences); the tape keeps one record
// per block instead of the block's ops; evaluation and frozen blocks are unchanged; a training
// run trains the same weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "nr/ext/adapter.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/lora.hpp"
#include "nr/nr.hpp"
#include "nr/testing/gradcheck.hpp"
#include "nr/train/trainer.hpp"

using nr::Shape;
using nr::Var;

namespace {

nr::ModelConfig micro() {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  return c;
}

nr::Indices ids_of(uint64_t seed, int64_t B = 2, int64_t T = 12) {
  std::vector<int32_t> v(static_cast<size_t>(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>((i * 31 + seed * 17 + i * i) % 256);
  return nr::Indices(v, Shape{B, T});
}

struct StepValues {
  float loss = 0.0f;
  std::vector<float> local_losses;
  std::map<std::string, std::vector<float>> grads;
  size_t tape_records = 0;  // records on the tape after the forward pass
};

// One forward + backward with or without recomputation; every parameter's gradient.
template <class Model>
StepValues step(Model& model, bool recompute, std::vector<uint8_t> original = {}) {
  model.visit_parameters([](const std::string&, Var& p) { p.drop_grad(); }, "");
  nr::ForwardContext ctx;
  ctx.recompute_blocks = recompute;
  ctx.original = std::move(original);
  Var total = model.loss(ids_of(1), ids_of(2), ctx);
  StepValues s;
  s.loss = total.item();
  for (const Var& l : ctx.local_losses) {
    s.local_losses.push_back(l.item());
    total = total + l;
  }
  s.tape_records = nr::active_tape().size();
  nr::backward(total);
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (p.requires_grad() && p.has_grad()) s.grads[name] = p.grad().to_vector();
  }, "");
  return s;
}

void check_same_step(const StepValues& a, const StepValues& b) {
  CHECK(a.loss == Approx(b.loss).epsilon(1e-6));
  REQUIRE(a.local_losses.size() == b.local_losses.size());
  for (size_t i = 0; i < a.local_losses.size(); ++i) CHECK(a.local_losses[i] == Approx(b.local_losses[i]).epsilon(1e-6));
  REQUIRE(a.grads.size() == b.grads.size());
  REQUIRE(!a.grads.empty());
  for (const auto& [name, g] : b.grads) {
    INFO(name);
    REQUIRE(a.grads.count(name) == 1);
    const std::vector<float>& r = a.grads.at(name);
    REQUIRE(r.size() == g.size());
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < g.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(r[i] - g[i])));
      scale = std::max(scale, static_cast<double>(std::abs(g[i])));
    }
    CHECK(scale > 0.0);
    CHECK(diff <= 1e-5 * scale);
  }
}

}  // namespace

TEST_CASE("recomputed blocks give the step of kept activations: full fine-tuning", "[recompute]") {
  nr::Llama model(micro(), 1);
  const StepValues kept = step(model, false);
  const StepValues recomputed = step(model, true);
  check_same_step(recomputed, kept);
  // Every parameter, the embedding included (it receives dL/dx through all the recomputed blocks).
  CHECK(recomputed.grads.count("model.embed_tokens.weight") == 1);
  // One record per block instead of each block's ops (embedding, norm and loss are kept as usual).
  CHECK(recomputed.tape_records < kept.tape_records);
  CHECK(recomputed.tape_records <= static_cast<size_t>(micro().num_hidden_layers) + 4);
  CHECK(kept.tape_records > static_cast<size_t>(10 * micro().num_hidden_layers));
}

TEST_CASE("recomputed blocks under LoRA: a frozen backbone, gradients for A and B only", "[recompute][lora]") {
  nr::LoraLlama model(micro(), 1);
  nr::Rng rng(5);
  nr::enable_lora(model, {.rank = 4, .alpha = 8.0}, rng);
  // B starts at zero; give it values so that every gradient path carries signal.
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (name.find("lora_B") != std::string::npos) nr::normal_(p.value(), 0.0, 0.1, rng);
  }, "");
  nr::freeze_backbone(model);
  const StepValues kept = step(model, false);
  const StepValues recomputed = step(model, true);
  check_same_step(recomputed, kept);
  for (const auto& [name, g] : recomputed.grads) CHECK(name.find("lora_") != std::string::npos);
}

TEST_CASE("recomputed blocks keep the neutral residues' l1 loss and its gradient", "[recompute][local-loss]") {
  nr::AdapterLlama<nr::EluGate> model(micro(), 1);
  nr::Rng rng(3);
  nr::attach_adapters(model, {.hidden = 8, .init = nr::AdapterInit::low_variance, .l1_weight = 3.0}, rng);
  model.visit_parameters([&](const std::string& name, Var& p) {  // trained, non-zero residues
    if (name.find("adapter.down_proj") != std::string::npos) nr::normal_(p.value(), 0.0, 0.2, rng);
  }, "");
  nr::freeze_backbone(model);
  const StepValues kept = step(model, false, {1, 0});
  const StepValues recomputed = step(model, true, {1, 0});
  REQUIRE(kept.local_losses.size() == static_cast<size_t>(micro().num_hidden_layers));
  CHECK(kept.local_losses[0] > 0.0f);
  check_same_step(recomputed, kept);

  // The l1 loss alone (the language-model loss weighted by zero) still reaches the adapters:
  // its gradient flows only through the recomputed copies of the local losses.
  model.visit_parameters([](const std::string&, Var& p) { p.drop_grad(); }, "");
  nr::ForwardContext ctx;
  ctx.recompute_blocks = true;
  ctx.original = {1, 0};
  Var total = model.loss(ids_of(1), ids_of(2), ctx) * 0.0f;
  for (const Var& l : ctx.local_losses) total = total + l;
  nr::backward(total);
  double norm = 0.0;
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (name.find("adapter.down_proj") != std::string::npos && p.has_grad())
      for (float g : p.grad().to_vector()) norm += static_cast<double>(g) * g;
  }, "");
  CHECK(norm > 0.0);
}

TEST_CASE("recompute_block is the plain block without gradients and for frozen blocks", "[recompute]") {
  nr::Llama model(micro(), 1);
  const nr::Indices ids = ids_of(4);
  std::vector<float> plain, recomputed;
  {
    nr::NoGrad ng;
    nr::ForwardContext a, b;
    b.recompute_blocks = true;
    plain = model.loss(ids, ids_of(5), a).value().to_vector();
    recomputed = model.loss(ids, ids_of(5), b).value().to_vector();
    CHECK(nr::active_tape().empty());
  }
  CHECK(plain == recomputed);

  // A frozen block with a frozen input records nothing.
  nr::freeze_backbone(model);
  const Var x = nr::testing::random_var(Shape{2, 6, 32}, 9);
  Var x_const = Var::constant(x.value());
  nr::ForwardContext ctx;
  const Var y = nr::recompute_block(model.layers[0], x_const, ctx);
  CHECK_FALSE(y.requires_grad());
  CHECK(nr::active_tape().empty());
}

TEST_CASE("train() with recompute_blocks trains the same weights", "[recompute][train]") {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 400; ++i) tokens.push_back(static_cast<int32_t>((i * 37 + i / 7) % 200));
  auto run = [&](bool recompute) {
    nr::Llama m(micro(), 3);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 3e-3});
    const nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 12, 7);
    nr::TrainLoopOptions o;
    o.show_progress = false;
    o.steps = 6;
    o.schedule = nr::LrSchedule{.peak = 3e-3, .warmup = 2, .total = 6};
    o.recompute_blocks = recompute;
    nr::train(m, opt, sampler, o, {});
    std::map<std::string, std::vector<float>> w;
    m.visit_parameters([&](const std::string& name, Var& p) { w[name] = p.value().to_vector(); }, "");
    return w;
  };
  const auto kept = run(false), recomputed = run(true);
  REQUIRE(kept.size() == recomputed.size());
  const auto initial = [] {
    nr::Llama m(micro(), 3);
    std::map<std::string, std::vector<float>> w;
    m.visit_parameters([&](const std::string& name, Var& p) { w[name] = p.value().to_vector(); }, "");
    return w;
  }();
  for (const auto& [name, w] : kept) {
    INFO(name);
    const std::vector<float>& r = recomputed.at(name);
    double diff = 0.0, moved = 0.0;
    for (size_t i = 0; i < w.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(r[i] - w[i])));
      moved = std::max(moved, static_cast<double>(std::abs(w[i] - initial.at(name)[i])));
    }
    CHECK(moved > 1e-4);       // the weights trained
    CHECK(diff <= 1e-5 * (1.0 + moved) + 1e-6);  // and the same way
  }
}
