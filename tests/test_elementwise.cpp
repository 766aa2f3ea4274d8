// add / sub / mul (same shape and row-vector broadcast), scale, the operators, sum / mean and
// reshape: forward values, gradient checks, shape errors and frozen inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/autograd/backward.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/ops/reduce.hpp"
#include "nr/ops/reshape.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

Var constant(const std::vector<float>& v, const Shape& s) { return Var::constant(Tensor::from_vector(v, s)); }

}  // namespace

TEST_CASE("add, sub and mul forward, same shape and broadcast row vector", "[elementwise]") {
  Var a = constant({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  Var b = constant({10, 20, 30, 40, 50, 60}, Shape{2, 3});
  Var r = constant({1, -1, 2}, Shape{3});

  CHECK(nr::add(a, b).value().to_vector() == std::vector<float>{11, 22, 33, 44, 55, 66});
  CHECK(nr::sub(a, b).value().to_vector() == std::vector<float>{-9, -18, -27, -36, -45, -54});
  CHECK(nr::mul(a, b).value().to_vector() == std::vector<float>{10, 40, 90, 160, 250, 360});
  CHECK(nr::add(a, r).value().to_vector() == std::vector<float>{2, 1, 5, 5, 4, 8});
  CHECK(nr::sub(a, r).value().to_vector() == std::vector<float>{0, 3, 1, 3, 6, 4});
  CHECK(nr::mul(a, r).value().to_vector() == std::vector<float>{1, -2, 6, 4, -5, 12});
  CHECK(nr::scale(a, -0.5f).value().to_vector() == std::vector<float>{-0.5f, -1, -1.5f, -2, -2.5f, -3});
  CHECK(nr::add(a, b).shape() == Shape{2, 3});
  CHECK(nr::mul(a, r).shape() == Shape{2, 3});
}

TEST_CASE("operators are the named ops", "[elementwise]") {
  Var a = constant({1, 2, 3, 4}, Shape{2, 2});
  Var b = constant({5, 6, 7, 8}, Shape{2, 2});
  CHECK((a + b).value().to_vector() == nr::add(a, b).value().to_vector());
  CHECK((a - b).value().to_vector() == nr::sub(a, b).value().to_vector());
  CHECK((a * b).value().to_vector() == nr::mul(a, b).value().to_vector());
  CHECK((a * 3.0f).value().to_vector() == std::vector<float>{3, 6, 9, 12});
  CHECK((2.0f * a).value().to_vector() == std::vector<float>{2, 4, 6, 8});
}

TEST_CASE("add / sub / mul gradients, same shape", "[elementwise][gradcheck]") {
  const Shape s{2, 3, 4};
  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::add(x[0], x[1]); }, {random_var(s, 1), random_var(s, 2)});
  INFO(r1.report);
  CHECK(r1.ok);
  CHECK(r1.checked == 48);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return nr::sub(x[0], x[1]); }, {random_var(s, 3), random_var(s, 4)});
  INFO(r2.report);
  CHECK(r2.ok);
  auto r3 = gradcheck([](const std::vector<Var>& x) { return nr::mul(x[0], x[1]); }, {random_var(s, 5), random_var(s, 6)});
  INFO(r3.report);
  CHECK(r3.ok);
  // An input used twice receives the sum of both contributions: d(a * a) = 2 a.
  auto r4 = gradcheck([](const std::vector<Var>& x) { return nr::mul(x[0], x[0]); }, {random_var(s, 7)});
  INFO(r4.report);
  CHECK(r4.ok);
}

TEST_CASE("add / sub / mul gradients with a broadcast row vector", "[elementwise][gradcheck]") {
  const Shape s{2, 3, 5};
  const Shape row{5};
  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::add(x[0], x[1]); }, {random_var(s, 11), random_var(row, 12)});
  INFO(r1.report);
  CHECK(r1.ok);
  CHECK(r1.checked == 30 + 5);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return nr::sub(x[0], x[1]); }, {random_var(s, 13), random_var(row, 14)});
  INFO(r2.report);
  CHECK(r2.ok);
  auto r3 = gradcheck([](const std::vector<Var>& x) { return nr::mul(x[0], x[1]); }, {random_var(s, 15), random_var(row, 16)});
  INFO(r3.report);
  CHECK(r3.ok);
  // Rank-1 a with a (C,) b is the same-shape case.
  auto r4 = gradcheck([](const std::vector<Var>& x) { return nr::mul(x[0], x[1]); }, {random_var(row, 17), random_var(row, 18)});
  INFO(r4.report);
  CHECK(r4.ok);
}

TEST_CASE("scale and the operators differentiate", "[elementwise][gradcheck]") {
  const Shape s{3, 4};
  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::scale(x[0], -1.75f); }, {random_var(s, 21)});
  INFO(r1.report);
  CHECK(r1.ok);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return (x[0] + x[1]) * x[2] - 0.5f * x[0] * 3.0f; },
                      {random_var(s, 22), random_var(s, 23), random_var(Shape{4}, 24)});
  INFO(r2.report);
  CHECK(r2.ok);
}

TEST_CASE("broadcast gradient is the column sum over rows (parallel path)", "[elementwise]") {
  // 300 x 200 = 60000 elements: above the parallel grain and more than one column block.
  const int64_t R = 300, C = 200;
  Var a = random_var(Shape{R, C}, 31);
  Var b = random_var(Shape{C}, 32);
  Tensor g = Tensor::empty(Shape{R, C});
  nr::Rng rng(33);
  nr::uniform_(g, -1.0, 1.0, rng);

  Var y = nr::mul(a, b);
  nr::backward(y, g);
  REQUIRE(b.has_grad());
  REQUIRE(a.has_grad());
  double max_err_b = 0.0, max_err_a = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    double ref = 0.0;
    for (int64_t r = 0; r < R; ++r) ref += static_cast<double>(g.at({r, c})) * a.value().at({r, c});
    max_err_b = std::max(max_err_b, std::abs(ref - b.grad().at({c})));
    for (int64_t r = 0; r < R; ++r)
      max_err_a = std::max(max_err_a, static_cast<double>(std::abs(g.at({r, c}) * b.value().at({c}) - a.grad().at({r, c}))));
  }
  CHECK(max_err_b < 1e-5);
  CHECK(max_err_a == 0.0);  // one float product per element, as the reference

  Var s = nr::sub(a, b);
  b.zero_grad();
  nr::backward(s, g);
  for (int64_t c = 0; c < C; c += 37) {
    double ref = 0.0;
    for (int64_t r = 0; r < R; ++r) ref -= g.at({r, c});
    CHECK(std::abs(ref - b.grad().at({c})) < 1e-5);
  }
}

TEST_CASE("sum and mean forward and gradients", "[reduce][gradcheck]") {
  Var a = constant({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  Var s = nr::sum(a);
  CHECK(s.shape() == Shape{});
  CHECK(s.item() == 21.0f);
  Var m = nr::mean(a);
  CHECK(m.shape() == Shape{});
  CHECK(m.item() == 3.5f);

  auto r1 = gradcheck([](const std::vector<Var>& x) { return nr::sum(x[0]); }, {random_var(Shape{2, 3, 4}, 41)});
  INFO(r1.report);
  CHECK(r1.ok);
  auto r2 = gradcheck([](const std::vector<Var>& x) { return nr::mean(x[0]); }, {random_var(Shape{2, 3, 4}, 42)});
  INFO(r2.report);
  CHECK(r2.ok);

  Var p = random_var(Shape{4, 5}, 43);
  Var loss = nr::mean(p);
  nr::backward(loss);
  for (float v : p.grad().to_vector()) CHECK(v == Approx(1.0 / 20.0));
}

TEST_CASE("sum accumulates in double", "[reduce]") {
  // 2^22 copies of 0.1f: a float accumulator would drift by percents; double stays exact to
  // float precision.
  const int64_t n = int64_t{1} << 22;
  Var a = Var::constant(Tensor::full(Shape{n}, 0.1f));
  const double expected = static_cast<double>(n) * static_cast<double>(0.1f);
  CHECK(std::abs(nr::sum(a).item() - expected) <= 1e-6 * expected);
  CHECK(std::abs(nr::mean(a).item() - static_cast<double>(0.1f)) <= 1e-7);
}

TEST_CASE("reshape is a view and its gradient flows back", "[reshape][gradcheck]") {
  {
    nr::NoGrad ng;  // values only: nothing left on the tape for later tests
    Var x = random_var(Shape{2, 3, 4}, 51);
    Var y = nr::reshape(x, Shape{6, 4});
    CHECK(y.shape() == Shape{6, 4});
    CHECK(y.value().data() == x.value().data());  // shares storage
    CHECK(nr::reshape(x, {-1, 2}).shape() == Shape{12, 2});
    CHECK(nr::reshape(x, {24}).shape() == Shape{24});
  }

  auto r1 = gradcheck([](const std::vector<Var>& v) { return nr::reshape(v[0], Shape{4, 6}); }, {random_var(Shape{2, 3, 4}, 52)});
  INFO(r1.report);
  CHECK(r1.ok);
  // Reshape inside a composite: a row vector broadcast over a flattened (B T, C) view.
  auto r2 = gradcheck(
      [](const std::vector<Var>& v) { return nr::reshape(nr::mul(nr::reshape(v[0], {-1, 4}), v[1]), Shape{2, 3, 4}); },
      {random_var(Shape{2, 3, 4}, 53), random_var(Shape{4}, 54)});
  INFO(r2.report);
  CHECK(r2.ok);
}

TEST_CASE("elementwise shape errors name both shapes", "[elementwise][errors]") {
  Var a = random_var(Shape{2, 3}, 61);
  Var b = random_var(Shape{3, 2}, 62);
  REQUIRE_THROWS_AS(nr::add(a, b), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::add(a, b), Catch::Contains("add") && Catch::Contains("(2, 3)") && Catch::Contains("(3, 2)"));
  REQUIRE_THROWS_WITH(nr::sub(a, b), Catch::Contains("sub") && Catch::Contains("(2, 3)") && Catch::Contains("(3, 2)"));
  REQUIRE_THROWS_WITH(a * b, Catch::Contains("mul") && Catch::Contains("(2, 3)") && Catch::Contains("(3, 2)"));
  // A row vector must match the last dimension.
  Var r = random_var(Shape{2}, 63);
  REQUIRE_THROWS_AS(nr::mul(a, r), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::mul(a, r), Catch::Contains("(2, 3)") && Catch::Contains("(2,)"));
  // Broadcasting goes one way: the row vector is b.
  REQUIRE_THROWS_AS(nr::add(random_var(Shape{3}, 64), a), nr::ShapeError);
  // Reshape to a different element count.
  REQUIRE_THROWS_AS(nr::reshape(a, Shape{4, 2}), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::reshape(a, Shape{4, 2}), Catch::Contains("(2, 3)") && Catch::Contains("(4, 2)"));
  REQUIRE_THROWS_AS(nr::mean(Var::constant(Tensor::zeros(Shape{0, 3}))), nr::ShapeError);
}

TEST_CASE("frozen inputs get no gradient", "[elementwise][autograd]") {
  Var a = Var::constant(Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}));
  Var b = Var::parameter(Tensor::from_vector({1, 1, 2}, Shape{3}));
  Var loss = nr::sum(nr::reshape(nr::mul(a, b), {-1}));
  nr::backward(loss);
  CHECK_FALSE(a.has_grad());
  REQUIRE(b.has_grad());
  CHECK(b.grad().to_vector() == std::vector<float>{5, 7, 9});

  Var c = Var::constant(Tensor::ones(Shape{2, 3}));
  Var d = Var::constant(Tensor::ones(Shape{2, 3}));
  Var e = c + d;
  CHECK_FALSE(e.requires_grad());
  CHECK(nr::active_tape().empty());

  // Under NoGrad nothing is recorded even for trainable inputs.
  Var p = Var::parameter(Tensor::ones(Shape{2, 3}));
  {
    nr::NoGrad ng;
    Var q = nr::sum(p * 2.0f);
    CHECK_FALSE(q.requires_grad());
  }
  CHECK(nr::active_tape().empty());
}
