// RMSNorm and softmax: forward values against naive double computations, gradient checks,
// the parallel paths against the same naive formulas, and shape / value errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/nr.hpp"
#include "nr/ops/rms_norm.hpp"
#include "nr/ops/softmax.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

// y = x / sqrt(mean(x^2) + eps) * w, row by row, in double.
std::vector<double> naive_rms_norm(const Tensor& x, const Tensor& w, double eps) {
  const int64_t C = x.shape().back(), R = x.shape().rows();
  std::vector<double> y(static_cast<size_t>(R * C));
  for (int64_t r = 0; r < R; ++r) {
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(x.data()[r * C + c]) * x.data()[r * C + c];
    const double s = 1.0 / std::sqrt(ss / static_cast<double>(C) + eps);
    for (int64_t c = 0; c < C; ++c) y[static_cast<size_t>(r * C + c)] = x.data()[r * C + c] * s * w.data()[c];
  }
  return y;
}

}  // namespace

TEST_CASE("rms_norm forward matches the Llama formula", "[rms_norm]") {
  Var x = random_var(Shape{2, 3, 5}, 11, -2.0, 2.0);
  Var w = random_var(Shape{5}, 12, 0.5, 1.5);
  Var y = nr::rms_norm(x, w, 1e-5);
  REQUIRE(y.shape() == Shape{2, 3, 5});
  const std::vector<double> ref = naive_rms_norm(x.value(), w.value(), 1e-5);
  for (int64_t i = 0; i < y.numel(); ++i) CHECK(y.value().data()[i] == Approx(ref[static_cast<size_t>(i)]).epsilon(1e-6));

  // A hand-checked row: x = (3, 4), w = (1, 2), eps = 0: rms = sqrt(12.5), y = (3, 8) / sqrt(12.5).
  Var a(Tensor::from_vector({3, 4}, Shape{1, 2}));
  Var b(Tensor::from_vector({1, 2}, Shape{2}));
  Var c = nr::rms_norm(a, b, 0.0);
  CHECK(c.value().at({0, 0}) == Approx(3.0 / std::sqrt(12.5)));
  CHECK(c.value().at({0, 1}) == Approx(8.0 / std::sqrt(12.5)));
}

TEST_CASE("rms_norm gradients with respect to x and weight", "[rms_norm][gradcheck]") {
  for (double eps : {1e-5, 1e-1}) {
    INFO("eps " << eps);
    auto r = gradcheck([&](const std::vector<Var>& v) { return nr::rms_norm(v[0], v[1], eps); },
                       {random_var(Shape{2, 3, 6}, 21), random_var(Shape{6}, 22, 0.5, 1.5)});
    INFO(r.report);
    CHECK(r.ok);
    CHECK(r.checked == 36 + 6);
  }
}

TEST_CASE("rms_norm with a frozen weight gives dx only", "[rms_norm][gradcheck]") {
  Var w = Var::constant(random_var(Shape{4}, 32, 0.5, 1.5).value());
  auto r = gradcheck([&](const std::vector<Var>& v) { return nr::rms_norm(v[0], w, 1e-5); },
                     {random_var(Shape{3, 4}, 31)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 12);
  CHECK_FALSE(w.has_grad());

  // A frozen x and a trainable weight: dw only.
  Var x = Var::constant(random_var(Shape{3, 4}, 33).value());
  auto s = gradcheck([&](const std::vector<Var>& v) { return nr::rms_norm(x, v[0], 1e-5); },
                     {random_var(Shape{4}, 34, 0.5, 1.5)});
  INFO(s.report);
  CHECK(s.ok);
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("rms_norm parallel backward matches the naive formula", "[rms_norm]") {
  // 64 x 1024 elements is above the parallel grain: exercises the per-thread partial sums of dw.
  const int64_t R = 64, C = 1024;
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var x = random_var(Shape{R, C}, 41, -2.0, 2.0);
  Var w = random_var(Shape{C}, 42, 0.5, 1.5);
  Var y = nr::rms_norm(x, w, 1e-6);
  Tensor g = random_var(Shape{R, C}, 43).value();
  nr::backward(y, g);
  std::vector<double> dw(static_cast<size_t>(C), 0.0);
  double max_dx_err = 0.0, max_dw_err = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x.value().data() + r * C;
    const float* gr = g.data() + r * C;
    double ss = 0.0, dot = 0.0;
    for (int64_t c = 0; c < C; ++c) {
      ss += static_cast<double>(xr[c]) * xr[c];
      dot += static_cast<double>(gr[c]) * w.value().data()[c] * xr[c];
    }
    const double s = 1.0 / std::sqrt(ss / C + 1e-6);
    for (int64_t c = 0; c < C; ++c) {
      const double dx = s * gr[c] * w.value().data()[c] - s * s * s * xr[c] * dot / C;
      max_dx_err = std::max(max_dx_err, std::abs(dx - x.grad().data()[r * C + c]));
      dw[static_cast<size_t>(c)] += gr[c] * xr[c] * s;
    }
  }
  for (int64_t c = 0; c < C; ++c)
    max_dw_err = std::max(max_dw_err, std::abs(dw[static_cast<size_t>(c)] - w.grad().data()[c]));
  CHECK(max_dx_err < 1e-5);
  CHECK(max_dw_err < 1e-4);
}

TEST_CASE("rms_norm gradients accumulate with +=", "[rms_norm][autograd]") {
  Var x = random_var(Shape{2, 4}, 51);
  Var w = random_var(Shape{4}, 52);
  Tensor g = Tensor::ones(Shape{2, 4});
  Var y1 = nr::rms_norm(x, w, 1e-5);
  nr::backward(y1, g);
  const std::vector<float> dx1 = x.grad().to_vector(), dw1 = w.grad().to_vector();
  Var y2 = nr::rms_norm(x, w, 1e-5);
  nr::backward(y2, g);
  for (size_t i = 0; i < dx1.size(); ++i) CHECK(x.grad().data()[i] == Approx(2.0f * dx1[i]));
  for (size_t i = 0; i < dw1.size(); ++i) CHECK(w.grad().data()[i] == Approx(2.0f * dw1[i]));
}

TEST_CASE("rms_norm errors name the shapes", "[rms_norm][errors]") {
  Var x = random_var(Shape{2, 4}, 1);
  Var w = random_var(Shape{5}, 2);
  REQUIRE_THROWS_AS(nr::rms_norm(x, w, 1e-5), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::rms_norm(x, w, 1e-5), Catch::Contains("(2, 4)") && Catch::Contains("(5,)"));
  REQUIRE_THROWS_WITH(nr::rms_norm(x, random_var(Shape{1, 4}, 3), 1e-5),
                      Catch::Contains("(2, 4)") && Catch::Contains("(1, 4)"));
  REQUIRE_THROWS_AS(nr::rms_norm(x, random_var(Shape{4}, 4), -1.0), nr::ValueError);
}

TEST_CASE("softmax forward: rows sum to 1 and match exp / sum", "[softmax]") {
  Var x = random_var(Shape{3, 2, 7}, 61, -3.0, 3.0);
  Var y = nr::softmax(x);
  REQUIRE(y.shape() == Shape{3, 2, 7});
  for (int64_t r = 0; r < 6; ++r) {
    const float* xr = x.value().data() + r * 7;
    const float* yr = y.value().data() + r * 7;
    double sum = 0.0, ysum = 0.0;
    for (int c = 0; c < 7; ++c) sum += std::exp(static_cast<double>(xr[c]));
    for (int c = 0; c < 7; ++c) {
      CHECK(yr[c] == Approx(std::exp(static_cast<double>(xr[c])) / sum).epsilon(1e-6));
      ysum += yr[c];
    }
    CHECK(ysum == Approx(1.0).epsilon(1e-6));
  }
}

TEST_CASE("softmax is stable for large inputs", "[softmax]") {
  Var x(Tensor::from_vector({1000.0f, 1001.0f, 999.0f, -1000.0f}, Shape{1, 4}));
  Var y = nr::softmax(x);
  const double e = std::exp(1.0), z = 1.0 + e + 1.0 / e;
  CHECK(y.value().at({0, 0}) == Approx(1.0 / z));
  CHECK(y.value().at({0, 1}) == Approx(e / z));
  CHECK(y.value().at({0, 2}) == Approx(1.0 / e / z));
  CHECK(y.value().at({0, 3}) == 0.0f);
}

TEST_CASE("softmax gradients", "[softmax][gradcheck]") {
  auto r = gradcheck([](const std::vector<Var>& v) { return nr::softmax(v[0]); }, {random_var(Shape{2, 3, 5}, 71, -2.0, 2.0)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 30);
  // A single row of one entry: y = 1 whatever x, so dx = 0.
  auto s = gradcheck([](const std::vector<Var>& v) { return nr::softmax(v[0]); }, {random_var(Shape{4, 1}, 72)});
  CHECK(s.ok);
}

TEST_CASE("softmax parallel backward matches y (g - sum(g y))", "[softmax]") {
  const int64_t R = 32, C = 2048;  // above the parallel grain
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var x = random_var(Shape{R, C}, 81, -4.0, 4.0);
  Var y = nr::softmax(x);
  Tensor g = random_var(Shape{R, C}, 82).value();
  nr::backward(y, g);
  double max_err = 0.0;
  for (int64_t r = 0; r < R; ++r) {
    const float* yr = y.value().data() + r * C;
    const float* gr = g.data() + r * C;
    double dot = 0.0;
    for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(gr[c]) * yr[c];
    for (int64_t c = 0; c < C; ++c)
      max_err = std::max(max_err, std::abs(yr[c] * (gr[c] - dot) - x.grad().data()[r * C + c]));
  }
  CHECK(max_err < 1e-6);
}

TEST_CASE("softmax shape errors", "[softmax][errors]") {
  Var s(Tensor::scalar(1.0f), true);
  REQUIRE_THROWS_AS(nr::softmax(s), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::softmax(Var(Tensor::zeros(Shape{3, 0}))), Catch::Contains("(3, 0)"));
}

TEST_CASE("softmax and rms_norm record nothing without grad", "[softmax][rms_norm][autograd]") {
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var x = random_var(Shape{2, 3}, 91);
  Var w = random_var(Shape{3}, 92);
  {
    nr::NoGrad ng;
    Var y = nr::softmax(nr::rms_norm(x, w, 1e-5));
    CHECK_FALSE(y.requires_grad());
  }
  CHECK(tape.empty());
  Var c = nr::rms_norm(Var::constant(x.value()), Var::constant(w.value()), 1e-5);
  CHECK_FALSE(c.requires_grad());
  CHECK(tape.empty());
}
