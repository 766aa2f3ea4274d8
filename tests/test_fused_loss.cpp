// LanguageModel::loss runs the output head and the cross-entropy fused and chunked
// (linear_cross_entropy); this checks it against the unfused cross_entropy(model(ids), targets):
// the loss and every parameter's gradient, tied and untied heads, trainable and frozen, one
// chunk and several.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "nr/nr.hpp"

using nr::Shape;
using nr::Var;

namespace {

nr::ModelConfig small_config(bool tied, int64_t ctx) {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = ctx;
  c.tie_word_embeddings = tied;
  return c;
}

nr::Indices tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(B * T));
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 7919 + seed * 104729 + i * i) % static_cast<uint64_t>(V));
  return nr::Indices(t, Shape{B, T});
}

using Grads = std::map<std::string, std::vector<float>>;

// The loss and the gradient of every parameter that requires grad, through `loss_of`.
template <class LossOf>
std::pair<float, Grads> loss_and_grads(nr::Llama& model, LossOf&& loss_of) {
  model.visit_parameters([](const std::string&, Var& p) { p.drop_grad(); });
  nr::ForwardContext ctx;
  Var loss = loss_of(ctx);
  nr::backward(loss);
  Grads g;
  model.visit_parameters([&](const std::string& name, Var& p) {
    if (p.requires_grad()) {
      REQUIRE(p.grad().defined());
      g[name] = p.grad().to_vector();
    }
  });
  return {loss.item(), g};
}

// max |a - b| / max |b| over one tensor.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

void check_fused_equals_unfused(bool tied, bool frozen_backbone, int64_t B, int64_t T) {
  const nr::ModelConfig c = small_config(tied, T);
  nr::Llama model(c, 7);
  if (frozen_backbone)  // train the blocks only: the head (and embedding) get no gradient
    model.visit_parameters([](const std::string& name, Var& p) {
      if (name.find("layers") == std::string::npos) p.set_requires_grad(false);
    });
  const nr::Indices ids = tokens(B, T, c.vocab_size, 1), targets = tokens(B, T, c.vocab_size, 2);
  const auto [ref_loss, ref_grads] =
      loss_and_grads(model, [&](nr::ForwardContext& ctx) { return nr::cross_entropy(model(ids, ctx), targets); });
  const auto [loss, grads] = loss_and_grads(model, [&](nr::ForwardContext& ctx) { return model.loss(ids, targets, ctx); });
  INFO("fused " << loss << " unfused " << ref_loss);
  CHECK(std::abs(loss - ref_loss) <= 1e-5 * std::abs(ref_loss));
  REQUIRE(grads.size() == ref_grads.size());
  CHECK(grads.count(tied ? "model.embed_tokens.weight" : "lm_head.weight") == (frozen_backbone ? 0u : 1u));
  for (const auto& [name, g] : ref_grads) {
    INFO(name);
    REQUIRE(grads.count(name) == 1);
    CHECK(relative_error(grads.at(name), g) <= 1e-5);
  }
}

}  // namespace

TEST_CASE("LanguageModel::loss (fused head + cross-entropy) equals cross_entropy of the logits", "[model][fused_loss]") {
  // V = 256: one chunk holds 1 024 rows, so B T = 1 200 spans two chunks (the last one partial).
  for (bool tied : {false, true})
    for (bool frozen : {false, true})
      for (auto [B, T] : {std::pair<int64_t, int64_t>{2, 16}, {3, 400}}) {
        INFO("tied " << tied << " frozen backbone " << frozen << " B " << B << " T " << T);
        check_fused_equals_unfused(tied, frozen, B, T);
      }
}

TEST_CASE("LanguageModel::loss under NoGrad records nothing and gives the same value", "[model][fused_loss]") {
  const nr::ModelConfig c = small_config(true, 32);
  nr::Llama model(c, 3);
  const nr::Indices ids = tokens(2, 32, c.vocab_size, 4), targets = tokens(2, 32, c.vocab_size, 5);
  nr::ForwardContext ctx1, ctx2;
  const float with_grad = model.loss(ids, targets, ctx1).item();
  nr::NoGrad no_grad;
  Var l = model.loss(ids, targets, ctx2);
  CHECK_FALSE(l.requires_grad());
  CHECK(l.item() == Approx(with_grad).epsilon(1e-6));
}
