// Gradient checks and shape errors for matmul / linear.
#include <catch2/catch.hpp>

#include "nr/nr.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

TEST_CASE("matmul forward matches a hand computation", "[matmul]") {
  Var a(nr::Tensor::from_vector({1, 2, 3, 4, 5, 6}, Shape{2, 3}));
  Var b(nr::Tensor::from_vector({1, 0, 0, 1, 1, 1}, Shape{3, 2}));
  Var c = nr::matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 2});
  CHECK(c.value().at({0, 0}) == 4.0f);
  CHECK(c.value().at({0, 1}) == 5.0f);
  CHECK(c.value().at({1, 0}) == 10.0f);
  CHECK(c.value().at({1, 1}) == 11.0f);
}

TEST_CASE("matmul gradients for every transpose combination", "[matmul][gradcheck]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const Shape sa = ta ? Shape{4, 3} : Shape{3, 4};
      const Shape sb = tb ? Shape{5, 4} : Shape{4, 5};
      auto r = gradcheck([&](const std::vector<Var>& x) { return nr::matmul(x[0], x[1], {.trans_a = ta, .trans_b = tb}); },
                         {random_var(sa, 1), random_var(sb, 2)});
      INFO(r.report);
      CHECK(r.ok);
      CHECK(r.checked == 12 + 20);
    }
}

TEST_CASE("batched matmul and shared right operand", "[matmul][gradcheck]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const Shape sa = ta ? Shape{2, 4, 3} : Shape{2, 3, 4};
      const Shape sb = tb ? Shape{2, 5, 4} : Shape{2, 4, 5};
      const Shape sw = tb ? Shape{5, 4} : Shape{4, 5};
      auto r = gradcheck([&](const std::vector<Var>& x) { return nr::matmul(x[0], x[1], {.trans_a = ta, .trans_b = tb}); },
                         {random_var(sa, 3), random_var(sb, 4)});
      INFO(r.report);
      CHECK(r.ok);
      auto s = gradcheck([&](const std::vector<Var>& x) { return nr::matmul(x[0], x[1], {.trans_a = ta, .trans_b = tb}); },
                         {random_var(sa, 5), random_var(sw, 6)});
      INFO(s.report);
      CHECK(s.ok);
    }
}

TEST_CASE("linear is x W^T with W stored [out, in]", "[matmul][gradcheck]") {
  auto r = gradcheck([](const std::vector<Var>& x) { return nr::linear(x[0], x[1]); },
                     {random_var(Shape{2, 3, 4}, 7), random_var(Shape{6, 4}, 8)});
  INFO(r.report);
  CHECK(r.ok);
  Var x = random_var(Shape{2, 3, 4}, 9);
  Var w = random_var(Shape{6, 4}, 10);
  CHECK(nr::linear(x, w).shape() == Shape{2, 3, 6});
}

TEST_CASE("matmul shape errors name both shapes", "[matmul][errors]") {
  Var a = random_var(Shape{2, 3}, 1);
  Var b = random_var(Shape{4, 5}, 2);
  REQUIRE_THROWS_AS(nr::matmul(a, b), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::matmul(a, b), Catch::Contains("(2, 3)") && Catch::Contains("(4, 5)"));
  Var c = random_var(Shape{3, 3, 4}, 3);
  Var d = random_var(Shape{2, 4, 5}, 4);
  REQUIRE_THROWS_WITH(nr::matmul(c, d), Catch::Contains("batch dimensions differ"));
  REQUIRE_THROWS_AS(nr::linear(random_var(Shape{2, 5}, 1), random_var(Shape{3, 4}, 2)), nr::ShapeError);
  REQUIRE_THROWS_AS(nr::matmul(random_var(Shape{3}, 1), b), nr::ShapeError);
}

TEST_CASE("frozen operands receive no gradient and no gradient memory", "[matmul][autograd]") {
  Var x = Var::constant(nr::Tensor::ones(Shape{2, 3}));
  Var w = Var::parameter(nr::Tensor::ones(Shape{4, 3}));
  Var y = nr::linear(x, w);
  Var s = nr::matmul(y, Var::constant(nr::Tensor::ones(Shape{4, 1})));
  Var loss(nr::Tensor::scalar(0.0f));
  nr::Tensor g = nr::Tensor::ones(s.shape());
  nr::backward(s, g);
  CHECK_FALSE(x.has_grad());
  REQUIRE(w.has_grad());
  CHECK(w.grad().at({0, 0}) == 2.0f);  // sum over the 2 rows of x
}

TEST_CASE("threaded GEMM: deterministic, and equal to one call up to rounding", "[matmul][threads]") {
  // cpu::gemm splits a large product into row blocks (M >= N) or column blocks (N > M), one per
  // OpenMP thread, each a cblas_sgemm on the same operands. OpenBLAS's kernels treat the edge
  // of a block differently from its interior, so an element may round differently than in one
  // call; but a given thread count must give the same bits every time. Covers both transposes,
  // leading dimensions wider than the matrices, beta = 1 (accumulation) and extents that are not
  // multiples of the 16-wide blocks.
  const int saved = nr::num_threads();
  nr::set_num_threads(2);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [M, N] : {std::pair<int64_t, int64_t>{301, 70}, {70, 301}}) {
        INFO("trans_a " << ta << " trans_b " << tb << " M " << M << " N " << N);
        const int64_t K = 97;
        const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
        const Var a = random_var(Shape{(ta ? K : M) * lda}, 1), b = random_var(Shape{(tb ? N : K) * ldb}, 2);
        const Var c0 = random_var(Shape{M * ldc}, 3);
        nr::Tensor serial = c0.value().clone(), split = c0.value().clone(), again = c0.value().clone();
        nr::cpu::gemm_serial(ta, tb, M, N, K, 0.5f, a.value().data(), lda, b.value().data(), ldb, 1.0f, serial.data(), ldc);
        nr::cpu::gemm(ta, tb, M, N, K, 0.5f, a.value().data(), lda, b.value().data(), ldb, 1.0f, split.data(), ldc);
        nr::cpu::gemm(ta, tb, M, N, K, 0.5f, a.value().data(), lda, b.value().data(), ldb, 1.0f, again.data(), ldc);
        CHECK(split.to_vector() == again.to_vector());
        float max_diff = 0.0f;
        for (int64_t i = 0; i < M * ldc; ++i) max_diff = std::max(max_diff, std::abs(serial.data()[i] - split.data()[i]));
        CHECK(max_diff < 1e-4f);
      }
  nr::set_num_threads(saved);
}

TEST_CASE("matmul gradients with oneDNN FP32 products, and agreement with OpenBLAS", "[matmul][gradcheck][onednn]") {
  nr::GemmSettingsScope s(nr::CpuGemmBackend::onednn, nr::Precision::fp32);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const Shape sa = ta ? Shape{2, 4, 3} : Shape{2, 3, 4};
      const Shape sb = tb ? Shape{5, 4} : Shape{4, 5};
      auto r = gradcheck([&](const std::vector<Var>& x) { return nr::matmul(x[0], x[1], {.trans_a = ta, .trans_b = tb}); },
                         {random_var(sa, 11), random_var(sb, 12)});
      INFO(r.report);
      CHECK(r.ok);
    }
  // A Linear layer's three products on a larger shape: oneDNN and OpenBLAS agree to float32 rounding.
  Var x = random_var(Shape{64, 96}, 13), w = random_var(Shape{80, 96}, 14);
  Var y = nr::linear(x, w);
  nr::backward(y, nr::Tensor::ones(y.shape()));
  const std::vector<float> y1 = y.value().to_vector(), dx1 = x.grad().to_vector(), dw1 = w.grad().to_vector();
  x.drop_grad();
  w.drop_grad();
  nr::set_cpu_gemm_backend(nr::CpuGemmBackend::openblas);
  Var y2 = nr::linear(x, w);
  nr::backward(y2, nr::Tensor::ones(y2.shape()));
  auto close = [](const std::vector<float>& a, const std::vector<float>& b, double tol) {
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::abs(a[i] - b[i])));
    INFO("max difference " << m);
    return m <= tol;
  };
  CHECK(close(y1, y2.value().to_vector(), 1e-5));    // K = 96 terms of magnitude <= 1
  CHECK(close(dx1, x.grad().to_vector(), 1e-5));     // K = 80
  CHECK(close(dw1, w.grad().to_vector(), 1e-5));     // K = 64
}
