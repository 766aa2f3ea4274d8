// Routing primitives: gather_rows, scatter_add_rows, concat_rows, mean_rows, entropy — forward
// values against hand computations, gradient checks, shape and index errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "nr/autograd/backward.hpp"
#include "nr/ops/concat_rows.hpp"
#include "nr/ops/entropy.hpp"
#include "nr/ops/gather_rows.hpp"
#include "nr/ops/mean_rows.hpp"
#include "nr/ops/scatter_add_rows.hpp"
#include "nr/ops/softmax.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Indices;
using nr::Shape;
using nr::Var;

namespace {

Indices idx(std::vector<int32_t> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  return Indices(std::move(v), Shape{n});
}

}  // namespace

TEST_CASE("gather_rows picks rows, with repeats", "[gather_rows]") {
  Var x(nr::Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{3, 2}));
  const Var y = nr::gather_rows(x, idx({2, 0, 2}));
  CHECK(y.shape() == Shape{3, 2});
  CHECK(y.value().to_vector() == std::vector<float>{5, 6, 1, 2, 5, 6});
  CHECK(nr::gather_rows(x, idx({})).shape() == Shape{0, 2});
}

TEST_CASE("gather_rows gradients: repeated rows receive the sum", "[gather_rows][gradcheck]") {
  auto r = nr::testing::gradcheck([](const std::vector<Var>& v) { return nr::gather_rows(v[0], idx({3, 0, 3, 1, 3})); },
                                  {nr::testing::random_var(Shape{5, 7}, 1)});
  INFO(r.report);
  CHECK(r.ok);
  // Exact: dL/dx for L = sum(y) counts how often each row was picked.
  Var x = nr::testing::random_var(Shape{4, 3}, 2);
  Var y = nr::gather_rows(x, idx({1, 1, 3}));
  nr::backward(y, nr::Tensor::ones(y.shape()));
  CHECK(x.grad().to_vector() == std::vector<float>{0, 0, 0, 2, 2, 2, 0, 0, 0, 1, 1, 1});
}

TEST_CASE("gather_rows with many columns runs the blocked backward", "[gather_rows][gradcheck]") {
  // C = 150 > one column block of 64: the parallel kernel splits the columns.
  Var x = nr::testing::random_var(Shape{3, 150}, 3);
  Var y = nr::gather_rows(x, idx({2, 2, 0, 1, 2}));
  nr::Tensor g = nr::Tensor::empty(y.shape());
  for (int64_t i = 0; i < g.numel(); ++i) g.data()[i] = static_cast<float>(i % 7) - 3.0f;
  nr::backward(y, g);
  for (int64_t c = 0; c < 150; ++c) {
    const float expect2 = g.data()[0 * 150 + c] + g.data()[1 * 150 + c] + g.data()[4 * 150 + c];
    CHECK(x.grad().at({2, c}) == expect2);
    CHECK(x.grad().at({0, c}) == g.data()[2 * 150 + c]);
  }
}

TEST_CASE("gather_rows errors name the shapes and the bad index", "[gather_rows][errors]") {
  Var x = nr::testing::random_var(Shape{3, 2}, 1);
  REQUIRE_THROWS_AS(nr::gather_rows(x, idx({0, 3})), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::gather_rows(x, idx({0, 3})), Catch::Contains("3") && Catch::Contains("position 1"));
  REQUIRE_THROWS_AS(nr::gather_rows(x, idx({-1})), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::gather_rows(nr::testing::random_var(Shape{2, 3, 2}, 1), idx({0})),
                      Catch::Contains("(2, 3, 2)") && Catch::Contains("(1,)"));
  REQUIRE_THROWS_WITH(nr::gather_rows(x, Indices({0, 1}, Shape{1, 2})),
                      Catch::Contains("(1, 2)") && Catch::Contains("(3, 2)"));
}

TEST_CASE("scatter_add_rows adds rows into their positions", "[scatter_add_rows]") {
  Var x(nr::Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{3, 2}));
  const Var y = nr::scatter_add_rows(x, idx({2, 0, 2}), 4);
  CHECK(y.shape() == Shape{4, 2});
  CHECK(y.value().to_vector() == std::vector<float>{3, 4, 0, 0, 6, 8, 0, 0});
}

TEST_CASE("scatter_add_rows gradients", "[scatter_add_rows][gradcheck]") {
  auto r = nr::testing::gradcheck(
      [](const std::vector<Var>& v) { return nr::scatter_add_rows(v[0], idx({1, 4, 1, 0, 1, 3}), 5); },
      {nr::testing::random_var(Shape{6, 3}, 4)});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("scatter_add_rows is the adjoint of gather_rows", "[scatter_add_rows]") {
  // <gather(x), y> = <x, scatter(y)> for any x (N, C), y (M, C).
  const Indices ix = idx({0, 2, 2, 4, 1, 2});
  const Var x = nr::testing::random_var(Shape{5, 3}, 5), y = nr::testing::random_var(Shape{6, 3}, 6);
  const std::vector<float> gx = nr::gather_rows(x, ix).value().to_vector(), sy = nr::scatter_add_rows(y, ix, 5).value().to_vector();
  double a = 0, b = 0;
  for (size_t i = 0; i < gx.size(); ++i) a += double(gx[i]) * y.value().data()[i];
  for (size_t i = 0; i < sy.size(); ++i) b += double(sy[i]) * x.value().data()[i];
  CHECK(a == Approx(b).epsilon(1e-6));
}

TEST_CASE("scatter_add_rows errors", "[scatter_add_rows][errors]") {
  Var x = nr::testing::random_var(Shape{3, 2}, 1);
  REQUIRE_THROWS_AS(nr::scatter_add_rows(x, idx({0, 1, 5}), 5 - 1), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::scatter_add_rows(x, idx({0, 1}), 4), Catch::Contains("(2,)") && Catch::Contains("(3, 2)"));
  REQUIRE_THROWS_AS(nr::scatter_add_rows(nr::testing::random_var(Shape{3}, 1), idx({0, 1, 2}), 4), nr::ShapeError);
  REQUIRE_THROWS_AS(nr::scatter_add_rows(x, idx({0, 1, 2}), -1), nr::ShapeError);
}

TEST_CASE("concat_rows stacks matrices, empty ones included", "[concat_rows]") {
  Var a(nr::Tensor::from_vector({1, 2}, Shape{1, 2}));
  Var e(nr::Tensor::empty(Shape{0, 2}));
  Var b(nr::Tensor::from_vector({3, 4, 5, 6}, Shape{2, 2}));
  const Var y = nr::concat_rows({a, e, b});
  CHECK(y.shape() == Shape{3, 2});
  CHECK(y.value().to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("concat_rows gradients, with a frozen input", "[concat_rows][gradcheck]") {
  auto r = nr::testing::gradcheck(
      [](const std::vector<Var>& v) { return nr::concat_rows({v[0], v[1], v[2]}); },
      {nr::testing::random_var(Shape{2, 3}, 1), nr::testing::random_var(Shape{0, 3}, 2), nr::testing::random_var(Shape{4, 3}, 3)});
  INFO(r.report);
  CHECK(r.ok);
  Var frozen = Var::constant(nr::Tensor::ones(Shape{2, 2}));
  Var fresh = nr::testing::random_var(Shape{1, 2}, 4);
  Var y = nr::concat_rows({frozen, fresh});
  nr::backward(y, nr::Tensor::full(y.shape(), 2.0f));
  CHECK_FALSE(frozen.has_grad());
  CHECK(fresh.grad().to_vector() == std::vector<float>{2, 2});
}

TEST_CASE("concat_rows errors name every shape", "[concat_rows][errors]") {
  REQUIRE_THROWS_AS(nr::concat_rows({}), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::concat_rows({nr::testing::random_var(Shape{2, 3}, 1), nr::testing::random_var(Shape{2, 4}, 2)}),
                      Catch::Contains("(2, 3)") && Catch::Contains("(2, 4)"));
  REQUIRE_THROWS_AS(nr::concat_rows({nr::testing::random_var(Shape{2, 3, 1}, 1)}), nr::ShapeError);
}

TEST_CASE("mean_rows averages over every leading dimension", "[mean_rows]") {
  Var x(nr::Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 2, 2}));
  CHECK(nr::mean_rows(x).value().to_vector() == std::vector<float>{4, 5});
  auto r = nr::testing::gradcheck([](const std::vector<Var>& v) { return nr::mean_rows(v[0]); },
                                  {nr::testing::random_var(Shape{3, 2, 5}, 7)});
  INFO(r.report);
  CHECK(r.ok);
  REQUIRE_THROWS_WITH(nr::mean_rows(nr::testing::random_var(Shape{0, 3}, 1)), Catch::Contains("(0, 3)"));
}

TEST_CASE("entropy of rows: uniform gives log C, one-hot gives 0", "[entropy]") {
  Var p(nr::Tensor::from_vector({0.25f, 0.25f, 0.25f, 0.25f, 1, 0, 0, 0, 0.5f, 0.5f, 0, 0}, Shape{3, 4}));
  const std::vector<float> h = nr::entropy(p).value().to_vector();
  REQUIRE(h.size() == 3);
  CHECK(h[0] == Approx(std::log(4.0)).epsilon(1e-6));
  CHECK(h[1] == 0.0f);
  CHECK(h[2] == Approx(std::log(2.0)).epsilon(1e-6));
  Var single(nr::Tensor::from_vector({0.5f, 0.5f}, Shape{2}));
  CHECK(nr::entropy(single).shape() == Shape{});
  REQUIRE_THROWS_WITH(nr::entropy(nr::testing::random_var(Shape{3, 0}, 1)), Catch::Contains("(3, 0)"));
}

TEST_CASE("entropy gradients, directly and through a softmax", "[entropy][gradcheck]") {
  auto direct = nr::testing::gradcheck([](const std::vector<Var>& v) { return nr::entropy(v[0]); },
                                       {nr::testing::random_var(Shape{2, 3, 4}, 8, 0.05, 1.0)});
  INFO(direct.report);
  CHECK(direct.ok);
  auto via_softmax = nr::testing::gradcheck([](const std::vector<Var>& v) { return nr::entropy(nr::softmax(v[0])); },
                                            {nr::testing::random_var(Shape{3, 5}, 9, -2.0, 2.0)});
  INFO(via_softmax.report);
  CHECK(via_softmax.ok);
  // A softmax that underflowed to exactly 0 still gives finite logit gradients.
  Var z(nr::Tensor::from_vector({0.0f, -200.0f, 1.0f}, Shape{1, 3}), true);
  Var h = nr::entropy(nr::softmax(z));
  nr::backward(h, nr::Tensor::ones(h.shape()));
  for (float g : z.grad().to_vector()) CHECK(std::isfinite(g));
}
