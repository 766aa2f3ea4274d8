// Embedding lookup and cross-entropy: forward values against naive computations, gradient checks
// (repeated ids, weighted and masked tokens), the parallel paths, and shape / value errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/nr.hpp"
#include "nr/ops/cross_entropy.hpp"
#include "nr/ops/embedding.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Indices;
using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

// -log softmax(z)[t] for one row, in double.
double naive_nll(const float* z, int64_t V, int32_t t) {
  double sum = 0.0;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v]));
  return std::log(sum) - z[t];
}

}  // namespace

// ---- embedding ---------------------------------------------------------------------------

TEST_CASE("embedding copies the rows of its ids", "[embedding]") {
  Var w(Tensor::from_vector({0, 1, 10, 11, 20, 21, 30, 31, 40, 41}, Shape{5, 2}));
  const Indices ids({3, 0, 3, 4, 1, 1}, Shape{2, 3});
  Var y = nr::embedding(w, ids);
  REQUIRE(y.shape() == Shape{2, 3, 2});
  CHECK(y.value().at({0, 0, 0}) == 30.0f);
  CHECK(y.value().at({0, 0, 1}) == 31.0f);
  CHECK(y.value().at({0, 1, 1}) == 1.0f);
  CHECK(y.value().at({1, 0, 0}) == 40.0f);
  CHECK(y.value().at({1, 2, 1}) == 11.0f);
  CHECK_FALSE(y.requires_grad());  // a constant table records nothing
  // A flat list of ids gives (N, C).
  CHECK(nr::embedding(w, Indices({2}, Shape{1})).shape() == Shape{1, 2});
}

TEST_CASE("embedding gradients with repeated ids", "[embedding][gradcheck]") {
  const Indices ids({1, 3, 1, 1, 0, 3}, Shape{2, 3});  // id 2 unused, 1 three times, 3 twice
  auto r = gradcheck([&](const std::vector<Var>& v) { return nr::embedding(v[0], ids); }, {random_var(Shape{4, 5}, 201)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 20);

  // dW[v] = sum of the output gradients of the tokens reading row v.
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var w = random_var(Shape{4, 5}, 202);
  Var y = nr::embedding(w, ids);
  nr::backward(y, Tensor::ones(y.shape()));
  const float counts[4] = {1, 3, 0, 2};
  for (int64_t v = 0; v < 4; ++v)
    for (int64_t c = 0; c < 5; ++c) CHECK(w.grad().at({v, c}) == counts[v]);
}

TEST_CASE("embedding parallel backward scatter-adds every token", "[embedding]") {
  // 256 tokens x 512 channels is above the parallel grain (column blocks run in parallel).
  const int64_t V = 7, C = 512, N = 256;
  std::vector<int32_t> id_values(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) id_values[static_cast<size_t>(n)] = static_cast<int32_t>((n * 5) % V);
  const Indices ids(id_values, Shape{N});
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var w = random_var(Shape{V, C}, 211);
  Var y = nr::embedding(w, ids);
  const Tensor g = random_var(Shape{N, C}, 212).value();
  nr::backward(y, g);
  std::vector<double> ref(static_cast<size_t>(V * C), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) ref[static_cast<size_t>(ids[n] * C + c)] += g.data()[n * C + c];
  double max_err = 0.0;
  for (int64_t i = 0; i < V * C; ++i) max_err = std::max(max_err, std::abs(ref[static_cast<size_t>(i)] - w.grad().data()[i]));
  CHECK(max_err < 1e-5);
}

TEST_CASE("embedding errors", "[embedding][errors]") {
  Var w = random_var(Shape{5, 3}, 1);
  const Indices bad({0, 7, 2}, Shape{3});
  REQUIRE_THROWS_AS(nr::embedding(w, bad), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::embedding(w, bad), Catch::Contains("index 7") && Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_AS(nr::embedding(w, Indices({-1}, Shape{1})), nr::ValueError);
  Var flat = random_var(Shape{15}, 2);
  REQUIRE_THROWS_AS(nr::embedding(flat, Indices({0}, Shape{1})), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::embedding(flat, Indices({0, 1}, Shape{2})), Catch::Contains("(15,)") && Catch::Contains("(2,)"));
}

// ---- cross-entropy -----------------------------------------------------------------------

TEST_CASE("cross_entropy of uniform logits is log V", "[cross_entropy]") {
  const int64_t V = 13;
  Var z = Var::parameter(Tensor::full(Shape{2, 3, V}, 0.7f));
  const Indices t({0, 5, 12, 3, 3, 9}, Shape{2, 3});
  Var loss = nr::cross_entropy(z, t);
  CHECK(loss.shape() == Shape{});
  CHECK(loss.item() == Approx(std::log(13.0)).epsilon(1e-6));
  for (double nll : nr::cross_entropy_per_token(z, t)) CHECK(nll == Approx(std::log(13.0)).epsilon(1e-12));
}

TEST_CASE("cross_entropy matches the naive mean and weighted mean", "[cross_entropy]") {
  const int64_t N = 6, V = 9;
  Var z = random_var(Shape{2, 3, V}, 301, -3.0, 3.0);
  const Indices t({8, 0, 4, 4, 1, 7}, Shape{2, 3});
  std::vector<double> nll(N);
  for (int64_t n = 0; n < N; ++n) nll[static_cast<size_t>(n)] = naive_nll(z.value().data() + n * V, V, t[n]);
  double mean = 0.0;
  for (double v : nll) mean += v / N;
  CHECK(nr::cross_entropy(z, t).item() == Approx(mean).epsilon(1e-6));

  const std::vector<float> w = {1, 0, 2, 0.5f, 0, 1};
  double num = 0.0, den = 0.0;
  for (size_t n = 0; n < 6; ++n) {
    num += w[n] * nll[n];
    den += w[n];
  }
  CHECK(nr::cross_entropy(z, t, w).item() == Approx(num / den).epsilon(1e-6));

  const std::vector<double> per = nr::cross_entropy_per_token(z.value(), t);
  REQUIRE(per.size() == 6);
  for (size_t n = 0; n < 6; ++n) CHECK(per[n] == Approx(nll[n]).epsilon(1e-6));
}

TEST_CASE("cross_entropy is stable for large logits", "[cross_entropy]") {
  Var z(Tensor::from_vector({1000.0f, 1001.0f, -1000.0f, 0.0f}, Shape{1, 4}));
  const double expected = std::log(1.0 + std::exp(1.0)) + 1.0 - 1.0;  // log(e^1000 + e^1001) - 1000
  CHECK(nr::cross_entropy(z, Indices({0}, Shape{1})).item() == Approx(expected));
  CHECK(std::isfinite(nr::cross_entropy(z, Indices({2}, Shape{1})).item()));
  CHECK(nr::cross_entropy_per_token(z, Indices({2}, Shape{1}))[0] == Approx(2001.0 + std::log(1.0 + std::exp(-1.0))));
}

TEST_CASE("cross_entropy gradients with and without weights", "[cross_entropy][gradcheck]") {
  const Indices t({2, 0, 6, 6, 1, 3}, Shape{2, 3});
  auto r = gradcheck([&](const std::vector<Var>& v) { return nr::cross_entropy(v[0], t); },
                     {random_var(Shape{2, 3, 7}, 311, -2.0, 2.0)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 42);

  const std::vector<float> w = {1, 0, 0.5f, 2, 0, 1};  // two masked tokens
  auto s = gradcheck([&](const std::vector<Var>& v) { return nr::cross_entropy(v[0], t, w); },
                     {random_var(Shape{2, 3, 7}, 312, -2.0, 2.0)});
  INFO(s.report);
  CHECK(s.ok);

  // Masked tokens get exactly zero gradient; each row's gradient sums to zero.
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var z = random_var(Shape{6, 7}, 313);
  Var loss = nr::cross_entropy(z, Indices(t.data, Shape{6}), w);
  nr::backward(loss);
  for (int64_t v = 0; v < 7; ++v) {
    CHECK(z.grad().at({1, v}) == 0.0f);
    CHECK(z.grad().at({4, v}) == 0.0f);
  }
  for (int64_t n = 0; n < 6; ++n) {
    double sum = 0.0;
    for (int64_t v = 0; v < 7; ++v) sum += z.grad().at({n, v});
    CHECK(std::abs(sum) < 1e-6);
  }
}

TEST_CASE("cross_entropy parallel backward matches (softmax - onehot) / N", "[cross_entropy]") {
  const int64_t N = 64, V = 1024;  // above the parallel grain
  std::vector<int32_t> tv(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) tv[static_cast<size_t>(n)] = static_cast<int32_t>((n * 37) % V);
  const Indices t(tv, Shape{N});
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var z = random_var(Shape{N, V}, 321, -5.0, 5.0);
  Var loss = nr::cross_entropy(z, t);
  nr::backward(loss);
  double max_err = 0.0, mean = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const float* zn = z.value().data() + n * V;
    mean += naive_nll(zn, V, t[n]) / N;
    double sum = 0.0;
    for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(zn[v]));
    for (int64_t v = 0; v < V; ++v) {
      const double ref = (std::exp(static_cast<double>(zn[v])) / sum - (v == t[n] ? 1.0 : 0.0)) / N;
      max_err = std::max(max_err, std::abs(ref - z.grad().data()[n * V + v]));
    }
  }
  CHECK(loss.item() == Approx(mean).epsilon(1e-6));
  CHECK(max_err < 1e-7);
}

TEST_CASE("cross_entropy_per_token records nothing", "[cross_entropy][autograd]") {
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var z = random_var(Shape{3, 4}, 331);
  const std::vector<double> nll = nr::cross_entropy_per_token(z, Indices({0, 1, 2}, Shape{3}));
  CHECK(nll.size() == 3);
  CHECK(tape.empty());
  // A transposed (non-contiguous) view is read through a contiguous copy.
  const Tensor zt = z.value().transpose();  // (4, 3)
  const std::vector<double> per = nr::cross_entropy_per_token(zt, Indices({0, 1, 2, 0}, Shape{4}));
  CHECK(per[1] == Approx(-std::log(std::exp(zt.at({1, 1})) /
                                   (std::exp(zt.at({1, 0})) + std::exp(zt.at({1, 1})) + std::exp(zt.at({1, 2}))))));
}

TEST_CASE("cross_entropy errors", "[cross_entropy][errors]") {
  Var z = random_var(Shape{2, 3, 5}, 1);
  const Indices good({0, 1, 2, 3, 4, 0}, Shape{2, 3});
  const Indices flat({0, 1, 2, 3, 4, 0}, Shape{6});
  REQUIRE_THROWS_AS(nr::cross_entropy(z, flat), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::cross_entropy(z, flat), Catch::Contains("(2, 3, 5)") && Catch::Contains("(6,)"));
  REQUIRE_THROWS_WITH(nr::cross_entropy_per_token(z, flat), Catch::Contains("(2, 3, 5)") && Catch::Contains("(6,)"));
  const Indices bad({0, 1, 2, 5, 4, 0}, Shape{2, 3});
  REQUIRE_THROWS_AS(nr::cross_entropy(z, bad), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::cross_entropy(z, bad), Catch::Contains("index 5") && Catch::Contains("[0, 5)"));
  REQUIRE_THROWS_AS(nr::cross_entropy_per_token(z, bad), nr::ValueError);
  const std::vector<float> short_w = {1, 1, 1};
  REQUIRE_THROWS_AS(nr::cross_entropy(z, good, short_w), nr::ShapeError);
  const std::vector<float> zero_w(6, 0.0f);
  REQUIRE_THROWS_AS(nr::cross_entropy(z, good, zero_w), nr::ValueError);
  const std::vector<float> neg_w = {1, 1, -1, 1, 1, 1};
  REQUIRE_THROWS_AS(nr::cross_entropy(z, good, neg_w), nr::ValueError);
  REQUIRE_THROWS_AS(nr::cross_entropy(Var(Tensor::scalar(1.0f), true), Indices()), nr::ShapeError);
}
