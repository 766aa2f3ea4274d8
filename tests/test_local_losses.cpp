// abs, l1_mean (with and without row weights) and bce_with_logits: forward values against hand
// computations, gradient checks, stability, empty selections, shape errors, frozen inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/autograd/backward.hpp"
#include "nr/ops/bce.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/ops/l1.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

// Random values in [-1, 1] at least 0.05 away from 0 (the kink of |x|).
Var away_from_zero(const Shape& s, uint64_t seed) {
  Var x = random_var(s, seed);
  float* p = x.value().data();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] += p[i] >= 0.0f ? 0.05f : -0.05f;
  return x;
}

// The textbook binary cross-entropy in double, for moderate logits.
double naive_bce(double z, double t) {
  const double s = 1.0 / (1.0 + std::exp(-z));
  return -t * std::log(s) - (1.0 - t) * std::log(1.0 - s);
}

Tensor random_targets(const Shape& s, uint64_t seed, bool soft) {
  nr::Rng rng(seed);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = soft ? static_cast<float>(rng.uniform()) : static_cast<float>(rng.randint(2));
  return t;
}

}  // namespace

TEST_CASE("abs forward, subgradient and gradient", "[l1][gradcheck]") {
  Var x = Var::parameter(Tensor::from_vector({-2.0f, 0.0f, 3.5f}, Shape{3}));
  Var y = nr::abs(x);
  CHECK(y.value().to_vector() == std::vector<float>{2.0f, 0.0f, 3.5f});
  nr::backward(y, Tensor::ones(Shape{3}));
  CHECK(x.grad().to_vector() == std::vector<float>{-1.0f, 0.0f, 1.0f});  // 0 at the kink

  auto r = gradcheck([](const std::vector<Var>& v) { return nr::abs(v[0]); }, {away_from_zero(Shape{4, 5}, 1)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 20);
}

TEST_CASE("l1_mean forward values", "[l1]") {
  // x (2, 2, 3): 4 rows of 3.
  Var x = Var::constant(Tensor::from_vector({1, -2, 3, /**/ -4, 5, -6, /**/ 0.5f, 0.5f, -0.5f, /**/ 1, 1, 1}, Shape{2, 2, 3}));
  // Unweighted: mean |x| = (6 + 15 + 1.5 + 3) / 12.
  CHECK(nr::l1_mean(x).shape() == Shape{});
  CHECK(nr::l1_mean(x).item() == Approx(25.5 / 12.0));
  // Rows 0 and 2 selected: (6 + 1.5) / (3 * 2).
  const std::vector<float> w = {1, 0, 1, 0};
  CHECK(nr::l1_mean(x, w).item() == Approx(7.5 / 6.0));
  // Soft weights: (0.5 * 6 + 2 * 15) / (3 * 2.5).
  const std::vector<float> soft = {0.5f, 2.0f, 0.0f, 0.0f};
  CHECK(nr::l1_mean(x, soft).item() == Approx(33.0 / 7.5));
  // All ones is the unweighted mean.
  CHECK(nr::l1_mean(x, std::vector<float>(4, 1.0f)).item() == Approx(nr::l1_mean(x).item()));
}

TEST_CASE("l1_mean is zero when the weights select no rows, nonzero otherwise", "[l1]") {
  Var x = Var::parameter(Tensor::from_vector({1, -2, 3, -4, 5, -6}, Shape{2, 3}));
  const std::vector<float> none = {0, 0};
  Var loss = nr::l1_mean(x, none);
  CHECK(loss.item() == 0.0f);
  REQUIRE(loss.requires_grad());
  nr::backward(loss);
  REQUIRE(x.has_grad());  // a zero gradient, like any other op's contribution
  for (float v : x.grad().to_vector()) CHECK(v == 0.0f);

  x.zero_grad();
  const std::vector<float> second = {0, 1};
  Var loss2 = nr::l1_mean(x, second);
  CHECK(loss2.item() == Approx(5.0));
  nr::backward(loss2);
  // Only the selected row receives a gradient: sign(x) / (C * 1).
  const auto g = x.grad().to_vector();
  CHECK(g[0] == 0.0f);
  CHECK(g[1] == 0.0f);
  CHECK(g[2] == 0.0f);
  CHECK(g[3] == Approx(-1.0 / 3));
  CHECK(g[4] == Approx(1.0 / 3));
  CHECK(g[5] == Approx(-1.0 / 3));

  // Masked rows are never read: a NaN in a row of weight 0 does not reach the loss.
  Var y = Var::constant(Tensor::from_vector({NAN, 1, 1, 2, -2, 2}, Shape{2, 3}));
  CHECK(nr::l1_mean(y, second).item() == Approx(2.0));
}

TEST_CASE("l1_mean gradients", "[l1][gradcheck]") {
  const Shape s{2, 3, 4};  // 6 rows of 4
  auto r1 = gradcheck([](const std::vector<Var>& v) { return nr::l1_mean(v[0]); }, {away_from_zero(s, 11)});
  INFO(r1.report);
  CHECK(r1.ok);
  const std::vector<float> w = {1, 0, 1, 1, 0, 0.5f};
  auto r2 = gradcheck([&](const std::vector<Var>& v) { return nr::l1_mean(v[0], w); }, {away_from_zero(s, 12)});
  INFO(r2.report);
  CHECK(r2.ok);
  // As a weighted local loss added to another term.
  auto r3 = gradcheck([&](const std::vector<Var>& v) { return nr::l1_mean(v[0] * v[1], w) * 0.01f; },
                      {away_from_zero(s, 13), away_from_zero(Shape{4}, 14)});
  INFO(r3.report);
  CHECK(r3.ok);
}

TEST_CASE("l1_mean over many rows matches a naive sum (parallel path)", "[l1]") {
  const int64_t R = 4096, C = 16;
  Var x = random_var(Shape{R, C}, 21);
  std::vector<float> w(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) w[static_cast<size_t>(r)] = r % 3 == 0 ? 1.0f : 0.0f;
  double num = 0.0, den = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    den += w[static_cast<size_t>(r)] * C;
    for (int64_t c = 0; c < C; ++c) num += w[static_cast<size_t>(r)] * std::abs(static_cast<double>(x.value().at({r, c})));
  }
  Var loss = nr::l1_mean(x, w);
  CHECK(loss.item() == Approx(num / den).epsilon(1e-6));
  nr::backward(loss);
  CHECK(x.grad().at({3, 0}) == Approx((x.value().at({3, 0}) > 0 ? 1.0 : -1.0) / den));
  CHECK(x.grad().at({4, 0}) == 0.0f);
}

TEST_CASE("bce_with_logits forward values", "[bce]") {
  // Logit 0 is a coin flip: log 2 whatever the target.
  Var zero = Var::constant(Tensor::zeros(Shape{2, 1}));
  CHECK(nr::bce_with_logits(zero, Tensor::from_vector({0.0f, 1.0f}, Shape{2, 1})).item() == Approx(std::log(2.0)));
  // Against the textbook formula and PyTorch (float64: 1.084463508578761).
  const std::vector<float> z = {2.0f, -1.0f, 0.5f, -3.0f};
  const std::vector<float> t = {1.0f, 0.0f, 0.25f, 1.0f};
  Var logits = Var::constant(Tensor::from_vector(z, Shape{4}));
  double ref = 0.0;
  for (size_t i = 0; i < z.size(); ++i) ref += naive_bce(z[i], t[i]);
  ref /= 4.0;
  CHECK(ref == Approx(1.084463508578761).epsilon(1e-12));
  const float loss = nr::bce_with_logits(logits, Tensor::from_vector(t, Shape{4})).item();
  CHECK(loss == Approx(ref).epsilon(1e-6));
  // Row weights on (2, 2): only the second row [0.5 -> 0.25, -3 -> 1].
  Var l2 = Var::constant(Tensor::from_vector(z, Shape{2, 2}));
  const std::vector<float> w = {0, 1};
  CHECK(nr::bce_with_logits(l2, Tensor::from_vector(t, Shape{2, 2}), w).item() ==
        Approx((naive_bce(0.5, 0.25) + naive_bce(-3.0, 1.0)) / 2.0).epsilon(1e-6));
}

TEST_CASE("bce_with_logits is stable for large logits", "[bce][stability]") {
  Var z = Var::parameter(Tensor::from_vector({100.0f, -100.0f, 100.0f, -100.0f}, Shape{4}));
  const Tensor t = Tensor::from_vector({1.0f, 1.0f, 0.0f, 0.0f}, Shape{4});
  Var loss = nr::bce_with_logits(z, t);
  REQUIRE(std::isfinite(loss.item()));
  CHECK(loss.item() == Approx(50.0));  // (0 + 100 + 100 + 0) / 4
  nr::backward(loss);
  const auto g = z.grad().to_vector();
  for (float v : g) CHECK(std::isfinite(v));
  CHECK(g[0] == Approx(0.0).margin(1e-12));
  CHECK(g[1] == Approx(-0.25));
  CHECK(g[2] == Approx(0.25));
  CHECK(g[3] == Approx(0.0).margin(1e-12));
}

TEST_CASE("bce_with_logits gradients", "[bce][gradcheck]") {
  const Shape s{3, 2, 4};  // 6 rows of 4
  const Tensor hard = random_targets(s, 31, false);
  const Tensor soft = random_targets(s, 32, true);
  auto r1 = gradcheck([&](const std::vector<Var>& v) { return nr::bce_with_logits(v[0], hard); },
                      {random_var(s, 33, -4.0, 4.0)});
  INFO(r1.report);
  CHECK(r1.ok);
  CHECK(r1.checked == 24);
  auto r2 = gradcheck([&](const std::vector<Var>& v) { return nr::bce_with_logits(v[0], soft); },
                      {random_var(s, 34, -4.0, 4.0)});
  INFO(r2.report);
  CHECK(r2.ok);
  const std::vector<float> w = {1, 1, 0, 0, 1, 0};
  auto r3 = gradcheck([&](const std::vector<Var>& v) { return nr::bce_with_logits(v[0], soft, w); },
                      {random_var(s, 35, -4.0, 4.0)});
  INFO(r3.report);
  CHECK(r3.ok);
  // A gate logit per token, (B, T, 1).
  auto r4 = gradcheck([&](const std::vector<Var>& v) { return nr::bce_with_logits(v[0], random_targets(Shape{2, 5, 1}, 36, false)); },
                      {random_var(Shape{2, 5, 1}, 37, -4.0, 4.0)});
  INFO(r4.report);
  CHECK(r4.ok);
}

TEST_CASE("bce_with_logits with no selected row is zero with zero gradient", "[bce]") {
  Var z = Var::parameter(Tensor::from_vector({1, -2, 3, -4}, Shape{2, 2}));
  const Tensor t = Tensor::from_vector({1, 0, 0, 1}, Shape{2, 2});
  const std::vector<float> none = {0, 0};
  Var loss = nr::bce_with_logits(z, t, none);
  CHECK(loss.item() == 0.0f);
  nr::backward(loss);
  REQUIRE(z.has_grad());
  for (float v : z.grad().to_vector()) CHECK(v == 0.0f);
  const std::vector<float> first = {1, 0};
  CHECK(nr::bce_with_logits(z, t, first).item() > 0.0f);
  nr::active_tape().clear();
}

TEST_CASE("local loss shape and value errors", "[l1][bce][errors]") {
  Var x = random_var(Shape{2, 3, 4}, 41);
  // Weights: one per row of the (6, 4) view.
  const std::vector<float> five(5, 1.0f);
  REQUIRE_THROWS_AS(nr::l1_mean(x, five), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::l1_mean(x, five), Catch::Contains("(2, 3, 4)") && Catch::Contains("5 row weights"));
  const std::vector<float> negative = {1, 1, -1, 1, 1, 1};
  REQUIRE_THROWS_AS(nr::l1_mean(x, negative), nr::ValueError);
  REQUIRE_THROWS_AS(nr::l1_mean(Var::constant(Tensor::scalar(1.0f))), nr::ShapeError);
  // Targets must have the logits' shape.
  const Tensor t = Tensor::zeros(Shape{2, 3});
  REQUIRE_THROWS_AS(nr::bce_with_logits(x, t), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::bce_with_logits(x, t), Catch::Contains("bce_with_logits") && Catch::Contains("(2, 3, 4)") &&
                                                     Catch::Contains("(2, 3)"));
  REQUIRE_THROWS_AS(nr::bce_with_logits(x, Tensor::zeros(Shape{2, 3, 4}), five), nr::ShapeError);
  CHECK(nr::active_tape().empty());
}

TEST_CASE("frozen inputs of local losses get no gradient", "[l1][bce][autograd]") {
  Var c = Var::constant(Tensor::from_vector({1, -2, 3, -4}, Shape{2, 2}));
  Var p = Var::parameter(Tensor::from_vector({0.5f, 0.5f}, Shape{2}));
  Var loss = nr::l1_mean(c * p) + nr::bce_with_logits(c, Tensor::ones(Shape{2, 2}));
  nr::backward(loss);
  CHECK_FALSE(c.has_grad());
  REQUIRE(p.has_grad());
  // d/dp_c mean_r,c |x_rc p_c| = sum_r |x_rc| / 4 for p > 0.
  CHECK(p.grad().at({0}) == Approx((1.0 + 3.0) / 4.0));
  CHECK(p.grad().at({1}) == Approx((2.0 + 4.0) / 4.0));
  CHECK_FALSE(nr::l1_mean(c).requires_grad());
  CHECK_FALSE(nr::bce_with_logits(c, Tensor::ones(Shape{2, 2})).requires_grad());
  CHECK(nr::active_tape().empty());
}
