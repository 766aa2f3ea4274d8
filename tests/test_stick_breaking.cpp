// Stick-breaking attention (ModuleFormer Section 3.2, Appendix A): forward against a naive double
// reference, gradient checks (with grouped-query heads), numerics for large logits, shape errors,
// and the nn module as the attention of a Block.
#include <catch2/catch.hpp>

#include <cmath>

#include "nr/autograd/backward.hpp"
#include "nr/nn/block.hpp"
#include "nr/nn/gated_ffn.hpp"
#include "nr/nn/language_model.hpp"
#include "nr/nn/stick_breaking_attention.hpp"
#include "nr/ops/stick_breaking_attention.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Var;

namespace {

// o[b, i, h*D + d] = sum_{j <= i} A_ij v[b, j, g*D + d], A_ij = p_ij prod_{j < l <= i} (1 - p_il),
// computed as a plain product in double.
std::vector<double> naive(const Var& q, const Var& k, const Var& v, int64_t H, int64_t Hkv) {
  const int64_t B = q.shape()[0], T = q.shape()[1], D = q.shape()[2] / H, group = H / Hkv;
  const float *Q = q.value().data(), *K = k.value().data(), *V = v.value().data();
  std::vector<double> out(static_cast<size_t>(B * T * H * D), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      for (int64_t i = 0; i < T; ++i) {
        std::vector<double> p(static_cast<size_t>(i + 1));
        for (int64_t j = 0; j <= i; ++j) {
          double z = 0;
          for (int64_t d = 0; d < D; ++d) z += double(Q[(b * T + i) * H * D + h * D + d]) * K[(b * T + j) * Hkv * D + g * D + d];
          z /= std::sqrt(double(D));
          p[static_cast<size_t>(j)] = 1.0 / (1.0 + std::exp(-z));
        }
        for (int64_t j = 0; j <= i; ++j) {
          double a = p[static_cast<size_t>(j)];
          for (int64_t l = j + 1; l <= i; ++l) a *= 1.0 - p[static_cast<size_t>(l)];
          for (int64_t d = 0; d < D; ++d)
            out[static_cast<size_t>((b * T + i) * H * D + h * D + d)] += a * V[(b * T + j) * Hkv * D + g * D + d];
        }
      }
    }
  return out;
}

double max_diff(const Var& y, const std::vector<double>& ref) {
  double m = 0;
  for (size_t i = 0; i < ref.size(); ++i) m = std::max(m, std::abs(double(y.value().data()[i]) - ref[i]));
  return m;
}

}  // namespace

TEST_CASE("stick-breaking attention matches a naive double reference", "[stick_breaking]") {
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}, {3, 1}}) {
    const int64_t B = 2, T = 9, D = 4;
    const Var q = nr::testing::random_var(Shape{B, T, H * D}, 1, -2, 2);
    const Var k = nr::testing::random_var(Shape{B, T, Hkv * D}, 2, -2, 2);
    const Var v = nr::testing::random_var(Shape{B, T, Hkv * D}, 3);
    const Var y = nr::stick_breaking_attention(q, k, v, H, Hkv);
    REQUIRE(y.shape() == Shape{B, T, H * D});
    const double diff = max_diff(y, naive(q, k, v, H, Hkv));
    INFO("H " << H << " Hkv " << Hkv << ": max |nr - naive| = " << diff);
    CHECK(diff < 1e-5);
  }
}

TEST_CASE("stick-breaking attention over several row blocks matches the reference", "[stick_breaking]") {
  // T = 150: query rows in blocks of 64, 64 and 22, each meeting keys [0, i1).
  const int64_t B = 1, T = 150, H = 2, Hkv = 1, D = 4;
  const Var q = nr::testing::random_var(Shape{B, T, H * D}, 21, -2, 2);
  const Var k = nr::testing::random_var(Shape{B, T, Hkv * D}, 22, -2, 2);
  const Var v = nr::testing::random_var(Shape{B, T, Hkv * D}, 23);
  const double diff = max_diff(nr::stick_breaking_attention(q, k, v, H, Hkv), naive(q, k, v, H, Hkv));
  INFO("max |nr - naive| = " << diff);
  CHECK(diff < 1e-5);
  auto r = nr::testing::gradcheck(
      [](const std::vector<Var>& x) { return nr::stick_breaking_attention(x[0], x[1], x[2], 1, 1); },
      {nr::testing::random_var(Shape{1, 67, 2}, 24, -1.5, 1.5), nr::testing::random_var(Shape{1, 67, 2}, 25, -1.5, 1.5),
       nr::testing::random_var(Shape{1, 67, 2}, 26)});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("stick-breaking weights: the first step sees sigmoid of its own match", "[stick_breaking]") {
  // T = 1: o_0 = sigmoid(q.k / sqrt(D)) v_0; the rest of the stick attends to nothing.
  Var q(nr::Tensor::from_vector({1, 1, 1, 1}, Shape{1, 1, 4}));
  Var k(nr::Tensor::from_vector({0.5f, 0.5f, 0.5f, 0.5f}, Shape{1, 1, 4}));
  Var v(nr::Tensor::from_vector({2, -2, 4, 1}, Shape{1, 1, 4}));
  const float s = 1.0f / (1.0f + std::exp(-1.0f));  // q.k / sqrt(4) = 1
  const std::vector<float> y = nr::stick_breaking_attention(q, k, v, 1, 1).value().to_vector();
  for (size_t i = 0; i < 4; ++i) CHECK(y[i] == Approx(s * v.value().data()[i]).epsilon(1e-6));
}

TEST_CASE("stick-breaking attention picks the most recent strong match", "[stick_breaking]") {
  // Keys 1 and 3 match the query strongly (logit 20), the others not at all (logit -20): row 4
  // puts almost all its weight on key 3, the latest match, none on key 1 behind it.
  const int64_t T = 5;
  Var q(nr::Tensor::full(Shape{1, T, 1}, 1.0f));
  Var k(nr::Tensor::from_vector({-20, 20, -20, 20, -20}, Shape{1, T, 1}));
  Var v(nr::Tensor::from_vector({0, 1, 2, 3, 4}, Shape{1, T, 1}));
  const std::vector<float> y = nr::stick_breaking_attention(q, k, v, 1, 1).value().to_vector();
  CHECK(y[4] == Approx(3.0).epsilon(1e-6));
  CHECK(y[2] == Approx(1.0).epsilon(1e-6));
  CHECK(std::abs(y[0]) < 1e-6);
}

TEST_CASE("stick-breaking attention stays finite for huge logits", "[stick_breaking]") {
  Var q = nr::testing::random_var(Shape{1, 64, 8}, 4, -300, 300);
  Var k = nr::testing::random_var(Shape{1, 64, 8}, 5, -300, 300);
  Var v = nr::testing::random_var(Shape{1, 64, 8}, 6);
  Var y = nr::stick_breaking_attention(q, k, v, 2, 2);
  for (float x : y.value().to_vector()) REQUIRE(std::isfinite(x));
  nr::backward(y, nr::Tensor::ones(y.shape()));
  for (const Var* w : {&q, &k, &v})
    for (float g : w->grad().to_vector()) REQUIRE(std::isfinite(g));
}

TEST_CASE("stick-breaking attention gradients", "[stick_breaking][gradcheck]") {
  for (auto [H, Hkv] : {std::pair<int64_t, int64_t>{2, 2}, {4, 2}}) {
    INFO("H " << H << " Hkv " << Hkv);
    const int64_t B = 2, T = 5, D = 3;
    auto r = nr::testing::gradcheck(
        [H = H, Hkv = Hkv](const std::vector<Var>& x) { return nr::stick_breaking_attention(x[0], x[1], x[2], H, Hkv); },
        {nr::testing::random_var(Shape{B, T, H * D}, 7, -1.5, 1.5), nr::testing::random_var(Shape{B, T, Hkv * D}, 8, -1.5, 1.5),
         nr::testing::random_var(Shape{B, T, Hkv * D}, 9)});
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("stick-breaking attention: only the inputs that require grad get one", "[stick_breaking]") {
  Var q = nr::testing::random_var(Shape{1, 4, 4}, 1);
  Var k = Var::constant(nr::testing::random_var(Shape{1, 4, 4}, 2).value());
  Var v = nr::testing::random_var(Shape{1, 4, 4}, 3);
  Var y = nr::stick_breaking_attention(q, k, v, 2, 2);
  nr::backward(y, nr::Tensor::ones(y.shape()));
  CHECK(q.has_grad());
  CHECK(v.has_grad());
  CHECK_FALSE(k.has_grad());
}

TEST_CASE("stick-breaking attention shape errors name the shapes", "[stick_breaking][errors]") {
  const Var q = nr::testing::random_var(Shape{2, 5, 8}, 1), k = nr::testing::random_var(Shape{2, 5, 4}, 2);
  REQUIRE_THROWS_WITH(nr::stick_breaking_attention(q, k, nr::testing::random_var(Shape{2, 5, 6}, 3), 2, 1),
                      Catch::Contains("(2, 5, 8)") && Catch::Contains("(2, 5, 4)") && Catch::Contains("(2, 5, 6)"));
  REQUIRE_THROWS_AS(nr::stick_breaking_attention(q, nr::testing::random_var(Shape{2, 4, 4}, 2),
                                                 nr::testing::random_var(Shape{2, 4, 4}, 3), 2, 1),
                    nr::ShapeError);
  REQUIRE_THROWS_AS(nr::stick_breaking_attention(q, k, k, 2, 2), nr::ShapeError);  // k holds 1 head of 4, not 2
  REQUIRE_THROWS_AS(nr::stick_breaking_attention(q, k, k, 3, 2), nr::ValueError);
}

TEST_CASE("StickBreakingAttention is a Block's attention, with Llama names and no RoPE", "[stick_breaking][nn]") {
  nr::ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 8;
  using Model = nr::LanguageModel<nr::Block<nr::StickBreakingAttention<>, nr::GatedFfn<nr::Silu>>>;
  Model m(c, 3);
  nr::Llama llama(c, 3);
  const auto a = nr::named_parameters(m), b = nr::named_parameters(llama);
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].first == b[i].first);
    CHECK(a[i].second.shape() == b[i].second.shape());
  }
  const nr::Indices ids(std::vector<int32_t>{1, 5, 9, 2, 7, 3}, Shape{1, 6});
  const Var logits = m(ids);
  CHECK(logits.shape() == Shape{1, 6, 256});
  auto r = nr::testing::gradcheck(
      [&](const std::vector<Var>& x) {
        nr::ForwardContext ctx;
        return m.layers[0].self_attn(x[0], ctx);
      },
      {nr::testing::random_var(Shape{1, 4, 16}, 11)});
  INFO(r.report);
  CHECK(r.ok);
}

namespace {

// Rows [from, T) of every batch element of x (B, T, W).
Var last_rows(const Var& x, int64_t from) {
  const int64_t B = x.shape()[0], T = x.shape()[1], W = x.shape()[2];
  std::vector<float> v;
  for (int64_t b = 0; b < B; ++b)
    v.insert(v.end(), x.value().data() + (b * T + from) * W, x.value().data() + (b * T + T) * W);
  return Var(nr::Tensor::from_vector(v, Shape{B, T - from, W}), true);
}

}  // namespace

TEST_CASE("stick-breaking attention after past keys (KV cache) gives the reference's last rows", "[stick_breaking][past]") {
  for (auto [T, past] : {std::pair<int64_t, int64_t>{9, 8}, {9, 3}, {70, 66}, {70, 2}}) {
    const int64_t B = 2, H = 4, Hkv = 2, D = 4, W = H * D;
    INFO("T " << T << " past " << past);
    const Var q = nr::testing::random_var(Shape{B, T, W}, 61, -2, 2);
    const Var k = nr::testing::random_var(Shape{B, T, Hkv * D}, 62, -2, 2);
    const Var v = nr::testing::random_var(Shape{B, T, Hkv * D}, 63);
    const std::vector<double> full = naive(q, k, v, H, Hkv);
    std::vector<double> ref;
    for (int64_t b = 0; b < B; ++b) ref.insert(ref.end(), full.begin() + (b * T + past) * W, full.begin() + (b * T + T) * W);
    const Var y = nr::stick_breaking_attention(last_rows(q, past), k, v, H, Hkv, past);
    REQUIRE(y.shape() == Shape{B, T - past, W});
    CHECK(max_diff(y, ref) < 1e-5);
  }
  const Var q = nr::testing::random_var(Shape{1, 6, 8}, 71, -2, 2);
  auto r = nr::testing::gradcheck(
      [](const std::vector<Var>& x) { return nr::stick_breaking_attention(x[0], x[1], x[2], 2, 1, 4); },
      {last_rows(q, 4), nr::testing::random_var(Shape{1, 6, 4}, 72, -2, 2), nr::testing::random_var(Shape{1, 6, 4}, 73)});
  INFO(r.report);
  CHECK(r.ok);
  REQUIRE_THROWS_AS(nr::stick_breaking_attention(last_rows(q, 4), q, q, 2, 2, 3), nr::ShapeError);
}
