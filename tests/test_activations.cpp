// sigmoid, silu, gelu (tanh), elu and the fused gated activations silu_mul / gelu_mul: forward
// values against PyTorch (float64), gradient checks, stability, shape errors, frozen inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/autograd/backward.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/ops/elu.hpp"
#include "nr/ops/gated_activation.hpp"
#include "nr/ops/gelu.hpp"
#include "nr/ops/sigmoid.hpp"
#include "nr/ops/silu.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

const std::vector<float> points = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 2.0f, 3.0f};

// Reference values from torch.nn.functional in float64 at `points`.
const std::vector<double> ref_sigmoid = {0.04742587317756678, 0.2689414213699951, 0.3775406687981454, 0.5,
                                         0.6224593312018546,  0.7310585786300049, 0.8807970779778823, 0.9525741268224334};
const std::vector<double> ref_silu = {-0.14227761953270035, -0.2689414213699951, -0.1887703343990727, 0.0,
                                      0.3112296656009273,   0.7310585786300049,  1.7615941559557646,  2.8577223804672998};
const std::vector<double> ref_gelu = {-0.0036373920817729943, -0.1588080093917233, -0.15428599017485606, 0.0,
                                      0.34571400982514394,    0.8411919906082768,  1.954597694087775,    2.996362607918227};
const std::vector<double> ref_elu = {-0.950212931632136, -0.6321205588285577, -0.3934693402873666, 0.0, 0.5, 1.0, 2.0, 3.0};
const std::vector<double> ref_elu_half = {-0.475106465816068, -0.31606027941427883, -0.1967346701436833, 0.0, 0.5, 1.0, 2.0, 3.0};

void check_values(const Var& y, const std::vector<double>& ref) {
  const std::vector<float> v = y.value().to_vector();
  REQUIRE(v.size() == ref.size());
  for (size_t i = 0; i < v.size(); ++i) {
    INFO("x = " << points[i]);
    CHECK(std::abs(v[i] - ref[i]) <= 1e-6 + 1e-6 * std::abs(ref[i]));
  }
}

// Random values in [-3, 3] at least 0.05 away from 0 (the kink of elu).
Var away_from_zero(const Shape& s, uint64_t seed) {
  Var x = random_var(s, seed, -3.0, 3.0);
  float* p = x.value().data();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] += p[i] >= 0.0f ? 0.05f : -0.05f;
  return x;
}

}  // namespace

TEST_CASE("activation forward values match PyTorch", "[activations]") {
  Var x = Var::constant(Tensor::from_vector(points, Shape{2, 4}));
  check_values(nr::sigmoid(x), ref_sigmoid);
  check_values(nr::silu(x), ref_silu);
  check_values(nr::gelu(x), ref_gelu);
  check_values(nr::elu(x), ref_elu);
  check_values(nr::elu(x, 0.5f), ref_elu_half);
  CHECK(nr::silu(x).shape() == Shape{2, 4});

  // The values quoted in the documentation.
  Var one = Var::constant(Tensor::full(Shape{1}, 1.0f));
  CHECK(nr::silu(one).item() == Approx(0.7310586).epsilon(1e-6));
  CHECK(nr::gelu(one).item() == Approx(0.8411920).epsilon(1e-6));
  CHECK(nr::elu(Var::constant(Tensor::full(Shape{1}, -1.0f))).item() == Approx(-0.6321206).epsilon(1e-6));
}

TEST_CASE("activation gradients", "[activations][gradcheck]") {
  const Shape s{3, 7};
  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::sigmoid(x[0]); }, {random_var(s, 1, -4.0, 4.0)});
  INFO(r1.report);
  CHECK(r1.ok);
  CHECK(r1.checked == 21);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return nr::silu(x[0]); }, {random_var(s, 2, -4.0, 4.0)});
  INFO(r2.report);
  CHECK(r2.ok);
  auto r3 = gradcheck([](const std::vector<Var>& x) { return nr::gelu(x[0]); }, {random_var(s, 3, -4.0, 4.0)});
  INFO(r3.report);
  CHECK(r3.ok);
  auto r4 = gradcheck([](const std::vector<Var>& x) { return nr::elu(x[0]); }, {away_from_zero(s, 4)});
  INFO(r4.report);
  CHECK(r4.ok);
  auto r5 = gradcheck([](const std::vector<Var>& x) { return nr::elu(x[0], 0.3f); }, {away_from_zero(s, 5)});
  INFO(r5.report);
  CHECK(r5.ok);
}

TEST_CASE("gated activations: forward and gradients", "[activations][gradcheck]") {
  const Shape s{2, 3, 5};
  Var g = random_var(s, 11, -3.0, 3.0);
  Var u = random_var(s, 12);
  {
    nr::NoGrad ng;
    const std::vector<float> fused = nr::silu_mul(g, u).value().to_vector();
    const std::vector<float> composed = nr::mul(nr::silu(g), u).value().to_vector();
    CHECK(fused == composed);
    const std::vector<float> fused_gelu = nr::gelu_mul(g, u).value().to_vector();
    const std::vector<float> composed_gelu = nr::mul(nr::gelu(g), u).value().to_vector();
    CHECK(fused_gelu == composed_gelu);
  }
  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::silu_mul(x[0], x[1]); },
                      {random_var(s, 13, -3.0, 3.0), random_var(s, 14)});
  INFO(r1.report);
  CHECK(r1.ok);
  CHECK(r1.checked == 60);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return nr::gelu_mul(x[0], x[1]); },
                      {random_var(s, 15, -3.0, 3.0), random_var(s, 16)});
  INFO(r2.report);
  CHECK(r2.ok);
  // gate and up the same value: both contributions add up.
  auto r3 = gradcheck([](const std::vector<Var>& x) { return nr::silu_mul(x[0], x[0]); }, {random_var(s, 17, -3.0, 3.0)});
  INFO(r3.report);
  CHECK(r3.ok);
}

TEST_CASE("fused and composed gated activations give the same gradients", "[activations]") {
  const Shape s{4, 9};
  Tensor gout = Tensor::empty(s);
  nr::Rng rng(21);
  nr::uniform_(gout, -1.0, 1.0, rng);
  Var g1 = random_var(s, 22, -3.0, 3.0), u1 = random_var(s, 23);
  Var g2 = Var::parameter(g1.value().clone()), u2 = Var::parameter(u1.value().clone());
  Var y1 = nr::silu_mul(g1, u1);
  nr::backward(y1, gout);
  Var y2 = nr::silu(g2) * u2;
  nr::backward(y2, gout);
  const auto dg1 = g1.grad().to_vector(), dg2 = g2.grad().to_vector();
  const auto du1 = u1.grad().to_vector(), du2 = u2.grad().to_vector();
  for (size_t i = 0; i < dg1.size(); ++i) {
    CHECK(dg1[i] == Approx(dg2[i]).margin(1e-6));
    CHECK(du1[i] == du2[i]);
  }
}

TEST_CASE("activations are stable for large inputs", "[activations][stability]") {
  const std::vector<float> big = {-100.0f, 100.0f, -1e4f, 1e4f, -1e30f, 1e30f};
  Var x = Var::parameter(Tensor::from_vector(big, Shape{6}));
  Var s = nr::sigmoid(x);
  const auto sv = s.value().to_vector();
  for (float v : sv) CHECK(std::isfinite(v));
  CHECK(sv[0] >= 0.0f);
  CHECK(sv[0] < 1e-40f);
  CHECK(sv[1] == 1.0f);
  nr::backward(s, Tensor::ones(Shape{6}));
  for (float v : x.grad().to_vector()) CHECK(std::isfinite(v));

  for (auto op : {+[](const Var& v) { return nr::silu(v); }, +[](const Var& v) { return nr::gelu(v); },
                  +[](const Var& v) { return nr::elu(v); }}) {
    Var z = Var::parameter(Tensor::from_vector(big, Shape{6}));
    Var y = op(z);
    const auto yv = y.value().to_vector();
    for (float v : yv) CHECK(std::isfinite(v));
    CHECK(yv[1] == Approx(100.0f));  // each of them is the identity far on the right
    nr::backward(y, Tensor::ones(Shape{6}));
    const auto dz = z.grad().to_vector();
    for (float v : dz) CHECK(std::isfinite(v));
    CHECK(dz[5] == Approx(1.0f));
  }
}

TEST_CASE("gated activation shape errors name both shapes", "[activations][errors]") {
  Var g = random_var(Shape{2, 8}, 31);
  Var u = random_var(Shape{2, 4}, 32);
  REQUIRE_THROWS_AS(nr::silu_mul(g, u), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::silu_mul(g, u), Catch::Contains("silu_mul") && Catch::Contains("(2, 8)") && Catch::Contains("(2, 4)"));
  REQUIRE_THROWS_WITH(nr::gelu_mul(g, u), Catch::Contains("gelu_mul") && Catch::Contains("(2, 8)") && Catch::Contains("(2, 4)"));
  // A non-contiguous view is refused with its shape in the message.
  Var t = Var::constant(random_var(Shape{3, 4}, 33).value().transpose());
  REQUIRE_THROWS_AS(nr::silu(t), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::silu(t), Catch::Contains("silu") && Catch::Contains("(4, 3)"));
}

TEST_CASE("frozen inputs of activations get no gradient", "[activations][autograd]") {
  Var g = Var::constant(Tensor::from_vector({0.5f, -1.0f, 2.0f}, Shape{3}));
  Var u = Var::parameter(Tensor::from_vector({1.0f, 2.0f, 3.0f}, Shape{3}));
  Var y = nr::gelu_mul(g, u);
  nr::backward(y, Tensor::ones(Shape{3}));
  CHECK_FALSE(g.has_grad());
  REQUIRE(u.has_grad());
  CHECK(u.grad().at({1}) == Approx(-0.1588080).epsilon(1e-5));  // gelu(-1)

  Var c = Var::constant(Tensor::ones(Shape{3}));
  CHECK_FALSE(nr::silu(c).requires_grad());
  CHECK_FALSE(nr::elu(c).requires_grad());
  CHECK_FALSE(nr::silu_mul(c, c).requires_grad());
  CHECK(nr::active_tape().empty());
}
