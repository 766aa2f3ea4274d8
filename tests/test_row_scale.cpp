// scale_rows: per-row scaling (a per-token gate), forward values, gradients, shape errors.
#include <catch2/catch.hpp>

#include "nr/nr.hpp"
#include "nr/ops/row_scale.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Var;

TEST_CASE("scale_rows multiplies each row by its scalar", "[row_scale]") {
  Var x(nr::Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}));
  Var s(nr::Tensor::from_vector({2, -1}, Shape{2, 1}));
  const Var y = nr::scale_rows(x, s);
  CHECK(y.value().to_vector() == std::vector<float>{2, 4, 6, -4, -5, -6});
}

TEST_CASE("scale_rows gradients", "[row_scale][gradcheck]") {
  auto r = nr::testing::gradcheck([](const std::vector<Var>& v) { return nr::scale_rows(v[0], v[1]); },
                                  {nr::testing::random_var(Shape{2, 3, 4}, 1), nr::testing::random_var(Shape{2, 3, 1}, 2)});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("scale_rows shape errors name both shapes", "[row_scale][errors]") {
  Var x = nr::testing::random_var(Shape{2, 3, 4}, 1);
  REQUIRE_THROWS_WITH(nr::scale_rows(x, nr::testing::random_var(Shape{2, 3, 2}, 2)),
                      Catch::Contains("(2, 3, 2)") && Catch::Contains("(2, 3, 4)"));
  REQUIRE_THROWS_AS(nr::scale_rows(x, nr::testing::random_var(Shape{3, 2, 1}, 2)), nr::ShapeError);
}
