// BF16 and oneDNN products: conversions, oneDNN FP32 and BF16 GEMMs against references with
// error bounds derived from the formats, frozen weights stored as BF16, and a small model's loss
// in BF16 against FP32.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "nr/nr.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::CpuGemmBackend;
using nr::DType;
using nr::GemmSettingsScope;
using nr::Precision;
using nr::Shape;
using nr::Var;

namespace {

std::vector<float> random_values(int64_t n, uint64_t seed) {
  nr::Tensor t = nr::Tensor::empty(Shape{n});
  nr::Rng rng(seed);
  nr::uniform_(t, -1.0, 1.0, rng);
  return t.to_vector();
}

// Element (i, j) of op(X) for a row-major X with leading dimension ld.
float op_at(const std::vector<float>& x, bool trans, int64_t ld, int64_t i, int64_t j) {
  return trans ? x[static_cast<size_t>(j * ld + i)] : x[static_cast<size_t>(i * ld + j)];
}

struct Reference {
  std::vector<double> c;    // alpha op(A) op(B) + beta C0, in double
  std::vector<double> mag;  // |alpha| sum_k |a_ik b_kj|: the scale of the rounding errors
};

Reference reference(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const std::vector<float>& a,
                    int64_t lda, const std::vector<float>& b, int64_t ldb, float beta, const std::vector<float>& c0,
                    int64_t ldc) {
  Reference r{std::vector<double>(static_cast<size_t>(M * ldc)), std::vector<double>(static_cast<size_t>(M * ldc))};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0.0, m = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(op_at(a, ta, lda, i, k)) * op_at(b, tb, ldb, k, j);
        s += p;
        m += std::abs(p);
      }
      const size_t e = static_cast<size_t>(i * ldc + j);
      r.c[e] = alpha * s + beta * static_cast<double>(c0[e]);
      r.mag[e] = std::abs(alpha) * m + std::abs(beta * static_cast<double>(c0[e]));
    }
  return r;
}

std::vector<float> rounded_to_bf16(std::vector<float> v) {
  for (float& x : v) x = nr::float_from_bf16_bits(nr::bf16_bits_from_float(x));
  return v;
}

}  // namespace

TEST_CASE("bf16 conversion rounds to nearest even and keeps specials", "[bf16]") {
  auto rt = [](float f) { return nr::float_from_bf16_bits(nr::bf16_bits_from_float(f)); };
  CHECK(rt(1.0f) == 1.0f);
  CHECK(rt(-2.5f) == -2.5f);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  CHECK(rt(1.0f + std::ldexp(1.0f, -8)) == 1.0f);
  // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  CHECK(rt(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));
  // Just above halfway rounds up.
  CHECK(rt(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)) == 1.0f + std::ldexp(1.0f, -7));
  CHECK(std::isnan(rt(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(rt(std::numeric_limits<float>::signaling_NaN())));
  CHECK(rt(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(rt(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());  // beyond bf16's range
  CHECK(rt(-0.0f) == 0.0f);
  CHECK(std::signbit(rt(-0.0f)));
  // Relative error of any normal value at most 2^-8 (8 significant bits, half a unit in the last).
  for (float x : random_values(1000, 7)) CHECK(std::abs(rt(x) - x) <= std::ldexp(std::abs(x), -8));

  const nr::Tensor t = nr::Tensor::from_vector(random_values(12, 3), Shape{3, 4});
  const nr::Tensor h = t.to(DType::bf16);
  CHECK(h.dtype() == DType::bf16);
  CHECK(h.storage()->bytes == 12 * 2);
  CHECK(h.to(DType::f32).to_vector() == rounded_to_bf16(t.to_vector()));
  CHECK(h.clone().to(DType::f32).to_vector() == h.to(DType::f32).to_vector());
  CHECK_THROWS_AS(h.data(), nr::Error);
  CHECK_THROWS_AS(t.bf16_data(), nr::Error);

  // The bulk conversion (strided source) agrees with the scalar one.
  const std::vector<float> src = random_values(5 * 9, 4);
  std::vector<uint16_t> dst(5 * 7);
  nr::cpu::f32_to_bf16(src.data(), 5, 7, 9, dst.data());
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 7; ++c)
      CHECK(dst[static_cast<size_t>(r * 7 + c)] == nr::bf16_bits_from_float(src[static_cast<size_t>(r * 9 + c)]));
}

TEST_CASE("settings: defaults, scope guard, and what the CPU offers", "[bf16][settings]") {
  // The defaults: oneDNN FP32 where oneDNN runs AVX-512 kernels, OpenBLAS FP32 elsewhere (unless
  // the environment chose otherwise).
  if (!std::getenv("NR_CPU_GEMM"))
    CHECK(nr::cpu_gemm_backend() == (nr::cpu::onednn_has_avx512() ? CpuGemmBackend::onednn : CpuGemmBackend::openblas));
  if (!std::getenv("NR_PRECISION")) CHECK(nr::precision() == Precision::fp32);
  {
    GemmSettingsScope s(CpuGemmBackend::onednn, Precision::bf16);
    CHECK(nr::cpu_gemm_backend() == CpuGemmBackend::onednn);
    CHECK(nr::bf16_gemm_active() == nr::cpu::onednn_has_bf16());
  }
  if (!std::getenv("NR_PRECISION")) CHECK_FALSE(nr::bf16_gemm_active());
  const std::string f32 = nr::cpu::onednn_impl_name(DType::f32, false, true, 256, 192, 64);
  INFO("oneDNN FP32 kernel: " << f32);
  CHECK_FALSE(f32.empty());
  if (nr::cpu::onednn_has_bf16()) {
    const std::string b16 = nr::cpu::onednn_impl_name(DType::bf16, false, true, 256, 192, 64);
    INFO("oneDNN BF16 kernel: " << b16);
    CHECK(b16.find("bf16") != std::string::npos);
  }
}

TEST_CASE("oneDNN FP32 GEMM matches a double reference for every transpose, stride, alpha and beta", "[bf16][onednn]") {
  GemmSettingsScope s(CpuGemmBackend::onednn, Precision::fp32);
  for (int threads : {1, 2}) {
    nr::set_num_threads(threads);
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [alpha, beta] : {std::pair<float, float>{1.0f, 0.0f}, {0.5f, 1.0f}, {-2.0f, 0.25f}}) {
          INFO("threads " << threads << " trans_a " << ta << " trans_b " << tb << " alpha " << alpha << " beta " << beta);
          const int64_t M = 67, N = 45, K = 131;
          const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
          const auto a = random_values((ta ? K : M) * lda, 1), b = random_values((tb ? N : K) * ldb, 2);
          const auto c0 = random_values(M * ldc, 3);
          std::vector<float> c = c0;
          nr::cpu::gemm(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
          const Reference r = reference(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c0, ldc);
          double worst = 0.0;  // error in units of the float32 bound K * 2^-24 * mag
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < ldc; ++j) {
              const size_t e = static_cast<size_t>(i * ldc + j);
              if (j >= N) {  // padding of C is never written
                CHECK(c[e] == c0[e]);
                continue;
              }
              worst = std::max(worst, std::abs(c[e] - r.c[e]) / ((K + 2) * std::ldexp(1.0, -24) * r.mag[e] + 1e-30));
            }
          INFO("worst error / float32 bound " << worst);
          CHECK(worst <= 1.0);
        }
  }
  nr::set_num_threads(2);
}

TEST_CASE("BF16 GEMM is within the bound bf16's 8-bit mantissa gives, and uses BF16", "[bf16][onednn]") {
  if (!nr::cpu::onednn_has_bf16()) {
    WARN("this CPU has no AVX512_BF16: BF16 products fall back to FP32; checking the fallback only");
  }
  GemmSettingsScope s(CpuGemmBackend::openblas, Precision::bf16);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << " trans_b " << tb);
      const int64_t M = 64, N = 80, K = 576;
      const int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
      const auto a = random_values(M * K, 11), b = random_values(K * N, 12), c0 = random_values(M * N, 13);
      std::vector<float> c = c0;
      nr::cpu::gemm(ta, tb, M, N, K, 1.0f, a.data(), lda, b.data(), ldb, 1.0f, c.data(), ldc);
      const Reference r = reference(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, 1.0f, c0, ldc);
      // Each product a b of operands rounded to bf16 (relative error u = 2^-8 each) is off by at
      // most (2u + u^2) |a b|; the float32 accumulation of K terms adds K 2^-24 of the magnitude.
      const double u = std::ldexp(1.0, -8);
      double worst = 0.0, mean_rel = 0.0;
      for (size_t e = 0; e < c.size(); ++e) {
        const double bound = (2 * u + u * u + (K + 2) * std::ldexp(1.0, -24)) * r.mag[e];
        worst = std::max(worst, std::abs(c[e] - r.c[e]) / bound);
        mean_rel += std::abs(c[e] - r.c[e]) / r.mag[e];
      }
      mean_rel /= static_cast<double>(c.size());
      INFO("worst error / bound " << worst << ", mean error / magnitude " << mean_rel);
      CHECK(worst <= 1.0);
      if (nr::cpu::onednn_has_bf16())  // really BF16: far above float32's error (about 1e-7)
        CHECK(mean_rel > 1e-5);
      else
        CHECK(mean_rel < 1e-6);

      // Operands already representable in bf16 lose nothing: the result is float32-accurate.
      const auto ar = rounded_to_bf16(a), br = rounded_to_bf16(b);
      std::vector<float> cr(static_cast<size_t>(M * N), 0.0f);
      nr::cpu::gemm(ta, tb, M, N, K, 1.0f, ar.data(), lda, br.data(), ldb, 0.0f, cr.data(), ldc);
      const Reference rr = reference(ta, tb, M, N, K, 1.0f, ar, lda, br, ldb, 0.0f, std::vector<float>(cr.size()), ldc);
      double worst_exact = 0.0;
      for (size_t e = 0; e < cr.size(); ++e)
        worst_exact = std::max(worst_exact, std::abs(cr[e] - rr.c[e]) / ((K + 2) * std::ldexp(1.0, -24) * rr.mag[e]));
      CHECK(worst_exact <= 1.0);
    }
}

TEST_CASE("GEMM inside an OpenMP parallel region runs on the calling thread and stays correct", "[bf16][onednn][threads]") {
  nr::set_num_threads(2);
  for (Precision p : {Precision::fp32, Precision::bf16}) {
    GemmSettingsScope s(CpuGemmBackend::onednn, p);
    const int64_t M = 96, N = 64, K = 200;
    const auto a = random_values(M * K, 21), b = random_values(K * N, 22);
    std::vector<float> serial(static_cast<size_t>(M * N)), nested(static_cast<size_t>(4 * M * N));
    nr::cpu::gemm(false, false, M, N, K, 1.0f, a.data(), b.data(), 0.0f, serial.data());
#pragma omp parallel for num_threads(2)
    for (int i = 0; i < 4; ++i) nr::cpu::gemm(false, false, M, N, K, 1.0f, a.data(), b.data(), 0.0f, nested.data() + i * M * N);
    const Reference r = reference(false, false, M, N, K, 1.0f, a, K, b, N, 0.0f, std::vector<float>(serial.size()), N);
    const double tol = p == Precision::bf16 ? std::ldexp(1.0, -7) : 1e-6;
    for (int i = 0; i < 4; ++i)
      for (size_t e = 0; e < serial.size(); ++e)
        REQUIRE(std::abs(nested[static_cast<size_t>(i) * serial.size() + e] - r.c[e]) <= tol * r.mag[e]);
  }
}

TEST_CASE("a frozen weight stored as BF16: half the memory, same products, gradients to the input", "[bf16][matmul]") {
  Var x = nr::testing::random_var(Shape{3, 5, 64}, 31);
  Var w = Var::constant(nr::Tensor::from_vector(random_values(48 * 64, 32), Shape{48, 64}));
  Var w_rounded = Var::constant(w.value().to(DType::bf16).to(DType::f32));
  const size_t f32_bytes = w.value().storage()->bytes;
  nr::store_as_bf16(w);
  CHECK(w.value().dtype() == DType::bf16);
  CHECK(w.value().storage()->bytes * 2 == f32_bytes);

  // FP32 compute: the BF16 weight is widened exactly, so the result equals the product with the
  // rounded float weight bit for bit, and so does the input gradient.
  {
    Var y = nr::linear(x, w);
    nr::backward(y, nr::Tensor::ones(y.shape()));
    const std::vector<float> dx = x.grad().to_vector();
    x.drop_grad();
    Var y2 = nr::linear(x, w_rounded);
    nr::backward(y2, nr::Tensor::ones(y2.shape()));
    CHECK(y.value().to_vector() == y2.value().to_vector());
    CHECK(dx == x.grad().to_vector());
    x.drop_grad();
  }
  // BF16 compute: close to FP32 within bf16's rounding of x (the weight is already bf16).
  {
    Var ref = nr::linear(x, w_rounded);
    nr::backward(ref, nr::Tensor::ones(ref.shape()));
    const std::vector<float> dx_ref = x.grad().to_vector();
    x.drop_grad();
    GemmSettingsScope s(CpuGemmBackend::openblas, Precision::bf16);
    Var y = nr::linear(x, w);
    nr::backward(y, nr::Tensor::ones(y.shape()));
    const std::vector<float> yv = y.value().to_vector(), rv = ref.value().to_vector(), dx = x.grad().to_vector();
    double max_y = 0.0, max_dx = 0.0;
    for (size_t i = 0; i < yv.size(); ++i) max_y = std::max(max_y, static_cast<double>(std::abs(yv[i] - rv[i])));
    for (size_t i = 0; i < dx.size(); ++i) max_dx = std::max(max_dx, static_cast<double>(std::abs(dx[i] - dx_ref[i])));
    // |x| <= 1, |w| <= 1, K = 64 (forward) or 48 (dx): at most K * 2^-8 in the worst case.
    INFO("max |y_bf16 - y_fp32| " << max_y << ", max |dx_bf16 - dx_fp32| " << max_dx);
    CHECK(max_y <= 64 * std::ldexp(1.0, -8));
    CHECK(max_dx <= 48 * std::ldexp(1.0, -8));
    CHECK(max_y > 0.0);  // the inputs were rounded: BF16 really ran (or this CPU fell back)
    x.drop_grad();
  }
  // Errors: a BF16 value cannot require grad, a trainable weight cannot be stored as BF16.
  Var p = Var::parameter(nr::Tensor::ones(Shape{4, 64}));
  CHECK_THROWS_AS(nr::store_as_bf16(p), nr::ValueError);
  Var q = Var::constant(nr::Tensor::ones(Shape{4, 64}));
  nr::store_as_bf16(q);
  q.set_requires_grad(true);
  CHECK_THROWS_WITH(nr::linear(x, q), Catch::Contains("BF16") && Catch::Contains("requires grad"));
  q.set_requires_grad(false);
  CHECK_FALSE(nr::store_frozen_as_bf16(q));  // already BF16
  nr::store_as_f32(q);
  CHECK(q.value().dtype() == DType::f32);
  CHECK(q.value().to_vector() == std::vector<float>(4 * 64, 1.0f));
}

TEST_CASE("a small model's loss and gradients in BF16 are close to FP32", "[bf16][model]") {
  nr::ModelConfig cfg;
  cfg.hidden_size = 64;
  cfg.intermediate_size = 160;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.num_key_value_heads = 2;
  cfg.max_position_embeddings = 32;
  nr::Llama m(cfg, 5);
  std::vector<int32_t> tok(2 * 33);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = static_cast<int32_t>((i * 37 + i * i) % 256);
  std::vector<int32_t> in, out;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 32; ++t) {
      in.push_back(tok[static_cast<size_t>(b * 33 + t)]);
      out.push_back(tok[static_cast<size_t>(b * 33 + t + 1)]);
    }
  const nr::Indices ids(in, Shape{2, 32}), targets(out, Shape{2, 32});
  // Freeze the backbone except the norms (trainable float32 weights that receive gradients).
  // Larger weights than the initialisation's, so that the logits are of order 1 and the loss
  // moves far from log V: the comparison then sees BF16's rounding in every layer.
  std::vector<Var> norms;
  uint64_t seed = 100;
  for (auto& [name, v] : nr::named_parameters(m)) {
    if (v.shape().rank() == 2) {
      nr::Rng rng(seed++);
      nr::uniform_(v.value(), -0.25, 0.25, rng);
    }
    const bool norm = name.find("norm") != std::string::npos;
    v.set_requires_grad(norm);
    if (norm) norms.push_back(v);
  }
  auto loss_and_grads = [&]() {
    for (Var& v : norms) v.drop_grad();
    nr::ForwardContext ctx;
    Var loss = m.loss(ids, targets, ctx);
    nr::backward(loss);
    std::vector<float> g;
    for (Var& v : norms)
      for (float x : v.grad().to_vector()) g.push_back(x);
    return std::pair<double, std::vector<float>>{loss.item(), g};
  };
  const auto [l32, g32] = loss_and_grads();
  GemmSettingsScope s(CpuGemmBackend::onednn, Precision::bf16);
  int converted = 0;
  for (auto& [name, v] : nr::named_parameters(m))
    if (name.find("embed_tokens") == std::string::npos) converted += nr::store_frozen_as_bf16(v) ? 1 : 0;
  if (nr::cpu::onednn_has_bf16()) CHECK(converted == 2 * 7 + 1);  // 7 projections per layer + lm_head
  const auto [l16, g16] = loss_and_grads();
  double dot = 0.0, n32 = 0.0, n16 = 0.0;
  for (size_t i = 0; i < g32.size(); ++i) {
    dot += static_cast<double>(g32[i]) * g16[i];
    n32 += static_cast<double>(g32[i]) * g32[i];
    n16 += static_cast<double>(g16[i]) * g16[i];
  }
  const double cosine = dot / std::sqrt(n32 * n16);
  INFO("loss fp32 " << l32 << " bf16 " << l16 << ", gradient cosine " << cosine);
  CHECK(std::abs(l32 - std::log(256.0)) > 0.1);  // the model is far from uniform predictions
  CHECK(std::abs(l16 - l32) <= 1e-2 * std::abs(l32));
  if (nr::cpu::onednn_has_bf16()) CHECK(l16 != l32);  // BF16 really ran
  CHECK(cosine > 0.999);
  for (auto& [name, v] : nr::named_parameters(m)) nr::store_as_f32(v);
}
