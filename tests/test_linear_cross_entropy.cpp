// The fused, chunked output projection + cross-entropy against linear + cross_entropy, its
// gradient check, masking, BF16 weights, and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/nr.hpp"
#include "nr/ops/linear_cross_entropy.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Var;
using nr::testing::random_var;

namespace {

nr::Indices random_targets(const Shape& s, int64_t V, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((i * 7919 + seed * 104729) % static_cast<uint64_t>(V));
  return nr::Indices(t, s);
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
  return m;
}

}  // namespace

TEST_CASE("linear_cross_entropy equals linear + cross_entropy: loss, dx and dW", "[linear_cross_entropy]") {
  const int64_t B = 3, T = 37, C = 24, V = 301;  // N = 111 rows: chunks of 16 leave a partial last chunk
  const nr::Indices t = random_targets(Shape{B, T}, V, 1);
  std::vector<float> weights(static_cast<size_t>(B * T));
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i % 5) * 0.5f;  // some zeros
  for (bool weighted : {false, true})
    for (int64_t chunk : {int64_t{0}, int64_t{16}, int64_t{1}, int64_t{1000}}) {
      INFO("weighted " << weighted << " chunk_rows " << chunk);
      std::span<const float> w = weighted ? std::span<const float>(weights) : std::span<const float>();
      Var x = random_var(Shape{B, T, C}, 2), W = random_var(Shape{V, C}, 3);
      Var ref = nr::cross_entropy(nr::linear(x, W), t, w);
      nr::backward(ref);
      const std::vector<float> dx_ref = x.grad().to_vector(), dw_ref = W.grad().to_vector();
      x.drop_grad();
      W.drop_grad();
      Var loss = nr::linear_cross_entropy(x, W, t, w, {.chunk_rows = chunk});
      REQUIRE(loss.shape() == Shape{});
      nr::backward(loss);
      INFO("loss " << loss.item() << " reference " << ref.item());
      CHECK(std::abs(loss.item() - ref.item()) <= 1e-6 * std::abs(ref.item()));
      const double ex = max_abs_diff(x.grad().to_vector(), dx_ref), ew = max_abs_diff(W.grad().to_vector(), dw_ref);
      INFO("max |dx - dx_ref| " << ex << ", max |dW - dW_ref| " << ew);
      CHECK(ex <= 1e-6);
      CHECK(ew <= 1e-6);
      // Gradients accumulate (+=): a second backward doubles them.
      Var again = nr::linear_cross_entropy(x, W, t, w, {.chunk_rows = chunk});
      nr::backward(again);
      CHECK(max_abs_diff(x.grad().to_vector(), [&] {
              auto v = dx_ref;
              for (float& e : v) e *= 2;
              return v;
            }()) <= 2e-6);
    }
}

TEST_CASE("linear_cross_entropy passes a finite-difference gradient check", "[linear_cross_entropy][gradcheck]") {
  const nr::Indices t = random_targets(Shape{2, 5}, 13, 4);
  const std::vector<float> w = {1, 0, 2, 1, 1, 0.5f, 0, 1, 3, 1};
  auto r = nr::testing::gradcheck(
      [&](const std::vector<Var>& v) { return nr::linear_cross_entropy(v[0], v[1], t, w, {.chunk_rows = 3}); },
      {random_var(Shape{2, 5, 6}, 5), random_var(Shape{13, 6}, 6)});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == 60 + 78);
}

TEST_CASE("a frozen head: no weight gradient, only dx; and a BF16-stored head", "[linear_cross_entropy][bf16]") {
  const int64_t N = 70, C = 32, V = 97;
  const nr::Indices t = random_targets(Shape{N}, V, 7);
  Var x = random_var(Shape{N, C}, 8);
  Var W = Var::constant(random_var(Shape{V, C}, 9).value());
  Var loss = nr::linear_cross_entropy(x, W, t, {}, {.chunk_rows = 32});
  nr::backward(loss);
  CHECK_FALSE(W.has_grad());
  const std::vector<float> dx = x.grad().to_vector();
  x.drop_grad();

  // Stored as BF16: with FP32 compute, equal to the FP32 op on the rounded weight.
  Var Wr = Var::constant(W.value().to(nr::DType::bf16).to(nr::DType::f32));
  nr::store_as_bf16(W);
  Var lb = nr::linear_cross_entropy(x, W, t, {}, {.chunk_rows = 32});
  nr::backward(lb);
  const std::vector<float> dxb = x.grad().to_vector();
  x.drop_grad();
  Var lr = nr::linear_cross_entropy(x, Wr, t, {}, {.chunk_rows = 32});
  nr::backward(lr);
  CHECK(lb.item() == lr.item());
  CHECK(dxb == x.grad().to_vector());
  x.drop_grad();
  // With BF16 compute, close to FP32 (the loss is a mean of log-probabilities of order 5).
  nr::GemmSettingsScope s(nr::CpuGemmBackend::onednn, nr::Precision::bf16);
  Var l16 = nr::linear_cross_entropy(x, W, t, {}, {.chunk_rows = 32});
  nr::backward(l16);
  INFO("loss fp32 " << loss.item() << " bf16 " << l16.item());
  CHECK(std::abs(l16.item() - loss.item()) <= 2e-2);
  CHECK(max_abs_diff(x.grad().to_vector(), dx) <= 1e-3);
}

TEST_CASE("per-token NLL equals cross_entropy_per_token of the full logits", "[linear_cross_entropy]") {
  const int64_t N = 50, C = 16, V = 40;
  const nr::Indices t = random_targets(Shape{5, 10}, V, 11);
  const Var x = random_var(Shape{5, 10, C}, 12), W = random_var(Shape{V, C}, 13);
  std::vector<double> ref;
  {
    nr::NoGrad ng;
    ref = nr::cross_entropy_per_token(nr::linear(x, W), t);
  }
  const std::vector<double> nll = nr::linear_cross_entropy_per_token(x, W, t, {.chunk_rows = 7});
  REQUIRE(nll.size() == static_cast<size_t>(N));
  for (size_t i = 0; i < nll.size(); ++i) CHECK(std::abs(nll[i] - ref[i]) <= 1e-6 * std::max(1.0, std::abs(ref[i])));
  CHECK(nr::active_tape().empty());
}

TEST_CASE("linear_cross_entropy errors name the shapes and values", "[linear_cross_entropy][errors]") {
  const Var x = random_var(Shape{2, 3, 4}, 1), W = random_var(Shape{5, 4}, 2);
  const nr::Indices t = random_targets(Shape{2, 3}, 5, 3);
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, random_var(Shape{5, 3}, 4), t), nr::ShapeError);
  CHECK_THROWS_WITH(nr::linear_cross_entropy(x, W, random_targets(Shape{3, 2}, 5, 1)),
                    Catch::Contains("(2, 3, 4)") && Catch::Contains("(3, 2)"));
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, W, nr::Indices({0, 1, 2, 3, 4, 5}, Shape{2, 3})), nr::ValueError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, W, t, std::vector<float>{1, 1}), nr::ShapeError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, W, t, std::vector<float>(6, 0.0f)), nr::ValueError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, W, t, std::vector<float>{1, 1, -1, 1, 1, 1}), nr::ValueError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(x, W, t, {}, {.chunk_rows = -1}), nr::ValueError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(random_var(Shape{4}, 1), W, nr::Indices({}, Shape{})), nr::ShapeError);
  CHECK_THROWS_AS(nr::linear_cross_entropy(random_var(Shape{0, 4}, 1), W, nr::Indices({}, Shape{0})), nr::ValueError);
  Var Wb = Var::constant(W.value().to(nr::DType::bf16));
  Wb.set_requires_grad(true);
  CHECK_THROWS_WITH(nr::linear_cross_entropy(x, Wb, t), Catch::Contains("BF16"));
}
