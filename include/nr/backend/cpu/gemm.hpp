// nr/backend/cpu/gemm.hpp — every CPU matrix product of nr: OpenBLAS or oneDNN, FP32 or BF16.
//
//   C (M, N) = alpha * op(A) op(B) + beta * C,   op(X) = X or X^T,   C float32
//
// All matrices are row-major. A is (M, K) when not transposed and (K, M) when transposed; B is
// (K, N) or (N, K). beta = 1 accumulates into C, which is how gradients are summed (+=).
// A and B hold float32 or bfloat16 (GemmInput; a frozen weight stored as BF16).
//
// Two process-wide settings choose how a product runs (defaults: oneDNN on a CPU with AVX-512,
// OpenBLAS elsewhere; FP32):
//   set_cpu_gemm_backend(openblas | onednn)  the library for FP32 products: OpenBLAS's sgemm
//        (the kernel OPENBLAS_CORETYPE selects: AVX2 "Haswell" where it is set) or oneDNN's
//        matmul (onednn.hpp: brgemm AVX-512 kernels on an AVX-512 CPU, about 2x the AVX2 one).
//        The default is oneDNN where oneDNN runs AVX-512 kernels (cpu::onednn_has_avx512()):
//        measured at least as fast as OpenBLAS there, whatever kernel OpenBLAS picked
//        (docs/performance.md); OpenBLAS elsewhere. OpenBLAS gives exactly the results nr gave
//        before oneDNN was added; the two differ in the last bits (another summation order);
//   set_precision(fp32 | bf16)  bf16: every product runs BF16 x BF16 -> FP32 through oneDNN
//        (float operands rounded to bf16 on the way in, into scratch memory; accumulation and
//        C stay float32), on CPUs with AVX512_BF16 only (onednn_has_bf16()); elsewhere the
//        setting falls back to FP32 products on the chosen backend.
// Either can also be set by the environment, read at the first product: NR_CPU_GEMM=openblas|
// onednn, NR_PRECISION=fp32|bf16. A product with a BF16 operand and no BF16 compute converts
// that operand to float32 (exactly) and runs in FP32.
//
// OpenBLAS threading (threads.hpp): OpenBLAS runs single-threaded, and a product worth splitting
// is cut along the longer of M and N into blocks of at least 64 (a multiple of 16, the kernels' register
// tile), up to 4 blocks per thread, which the OpenMP threads take dynamically: on a busy machine a
// thread that loses its core leaves its remaining blocks to the others instead of holding
// everyone at the barrier. Each block is an independent cblas_sgemm on the same operands (A's
// rows or B's columns of that block); re-packing the shared operand per block costs about
// 1 / (2 * block) of the block's work. The blocks depend only on the shape and the thread count,
// and every element of C is computed inside one block, so results are the same in every run
// with a given thread count (an element may round differently than in one unsplit call, since
// OpenBLAS treats a block's edges differently). Inside an OpenMP parallel region (attention,
// experts) a product runs on the calling thread only.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <cblas.h>
#include <omp.h>

#include <fmt/format.h>

#include "nr/backend/cpu/bf16.hpp"
#include "nr/backend/cpu/onednn.hpp"
#include "nr/backend/cpu/threads.hpp"

namespace nr {

enum class CpuGemmBackend : uint8_t { openblas, onednn };
enum class Precision : uint8_t { fp32, bf16 };

inline const char* cpu_gemm_backend_name(CpuGemmBackend b) { return b == CpuGemmBackend::openblas ? "openblas" : "onednn"; }
inline const char* precision_name(Precision p) { return p == Precision::fp32 ? "fp32" : "bf16"; }

namespace detail {
// The default FP32 backend: oneDNN where it runs AVX-512 kernels, OpenBLAS elsewhere.
inline CpuGemmBackend default_cpu_gemm_backend() {
  return cpu::onednn_has_avx512() ? CpuGemmBackend::onednn : CpuGemmBackend::openblas;
}
struct GemmSettings {
  std::atomic<CpuGemmBackend> backend{default_cpu_gemm_backend()};
  std::atomic<Precision> precision{Precision::fp32};
};
// The settings, initialised from NR_CPU_GEMM / NR_PRECISION on first use.
inline GemmSettings& gemm_settings() {
  static GemmSettings* s = [] {
    auto* g = new GemmSettings();  // never destroyed: products may run during static destruction
    if (const char* env = std::getenv("NR_CPU_GEMM")) {
      if (std::strcmp(env, "openblas") == 0) g->backend = CpuGemmBackend::openblas;
      else if (std::strcmp(env, "onednn") == 0) g->backend = CpuGemmBackend::onednn;
      else throw ValueError(fmt::format("NR_CPU_GEMM must be 'openblas' or 'onednn', got '{}'", env));
    }
    if (const char* env = std::getenv("NR_PRECISION")) {
      if (std::strcmp(env, "fp32") == 0) g->precision = Precision::fp32;
      else if (std::strcmp(env, "bf16") == 0) g->precision = Precision::bf16;
      else throw ValueError(fmt::format("NR_PRECISION must be 'fp32' or 'bf16', got '{}'", env));
    }
    return g;
  }();
  return *s;
}
}  // namespace detail

inline void set_cpu_gemm_backend(CpuGemmBackend b) { detail::gemm_settings().backend = b; }
inline CpuGemmBackend cpu_gemm_backend() { return detail::gemm_settings().backend; }
inline void set_precision(Precision p) { detail::gemm_settings().precision = p; }
inline Precision precision() { return detail::gemm_settings().precision; }
// Whether precision `p` runs its products in BF16 on this CPU (bf16 and the CPU has AVX512_BF16).
inline bool bf16_compute(Precision p) { return p == Precision::bf16 && cpu::onednn_has_bf16(); }
// Whether products actually run in BF16 now: the process's precision, on this CPU.
inline bool bf16_gemm_active() { return bf16_compute(precision()); }

// Sets the backend and precision for a scope and restores the previous ones at its end (tests,
// benchmarks, comparing both settings in one program). Not for use while other threads multiply.
class GemmSettingsScope {
 public:
  GemmSettingsScope(CpuGemmBackend b, Precision p) : backend_(cpu_gemm_backend()), precision_(precision()) {
    set_cpu_gemm_backend(b);
    set_precision(p);
  }
  ~GemmSettingsScope() {
    set_cpu_gemm_backend(backend_);
    set_precision(precision_);
  }
  GemmSettingsScope(const GemmSettingsScope&) = delete;
  GemmSettingsScope& operator=(const GemmSettingsScope&) = delete;

 private:
  CpuGemmBackend backend_;
  Precision precision_;
};

}  // namespace nr

namespace nr::cpu {

// Products below this many multiply-adds run on one thread: splitting costs more than it saves.
inline constexpr double gemm_split_min_madds = 1 << 18;

// The single-threaded product on raw operands (no splitting).
inline void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta C, and beta = 0 must clear C even if it held garbage (or NaN)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
              static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

// OpenBLAS, split into blocks on nr's OpenMP threads (see the top of this file).
inline void openblas_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  const int threads = omp_in_parallel() ? 1 : num_threads();
  const double madds = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N;
  const int64_t tiles = (extent + 15) / 16;  // 16-wide tiles of the split dimension
  const int parts = static_cast<int>(std::min<int64_t>(4 * static_cast<int64_t>(threads), tiles / 4));
  if (threads <= 1 || parts <= 1 || madds < gemm_split_min_madds) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Block p covers [begin(p), begin(p + 1)) of the split dimension, in whole tiles.
  auto begin = [&](int p) { return std::min(extent, tiles * p / parts * 16); };
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int p = 0; p < parts; ++p) {
    const int64_t b0 = begin(p), b1 = begin(p + 1);
    if (b1 <= b0) continue;
    if (split_rows)  // rows [b0, b1) of C and of op(A)
      gemm_serial(trans_a, trans_b, b1 - b0, N, K, alpha, trans_a ? A + b0 : A + b0 * lda, lda, B, ldb, beta,
                  C + b0 * ldc, ldc);
    else  // columns [b0, b1) of C and of op(B)
      gemm_serial(trans_a, trans_b, M, b1 - b0, K, alpha, A, lda, trans_b ? B + b0 * ldb : B + b0, ldb, beta, C + b0,
                  ldc);
  }
}

// A GEMM operand: row-major elements of type `dtype` (float, or bfloat16 bits) with leading
// dimension ld.
struct GemmInput {
  const void* data = nullptr;
  DType dtype = DType::f32;
  int64_t ld = 0;
};

namespace gemm_detail {
// op(X)'s stored matrix is (rows, cols): (M, K) or (K, M) for A, (K, N) or (N, K) for B.
// Returns X converted to `to`, dense (ld = cols), in `keep` (scratch from the storage cache), or X
// itself when it already has that type.
inline GemmInput convert_operand(const GemmInput& x, int64_t rows, int64_t cols, DType to, std::shared_ptr<Storage>& keep) {
  if (x.dtype == to) return x;
  keep = Storage::allocate_cpu(static_cast<size_t>(rows * cols) * dtype_size(to));
  if (to == DType::bf16)
    f32_to_bf16(static_cast<const float*>(x.data), rows, cols, x.ld, static_cast<uint16_t*>(keep->ptr));
  else
    bf16_to_f32(static_cast<const uint16_t*>(x.data), rows, cols, x.ld, static_cast<float*>(keep->ptr));
  return GemmInput{keep->ptr, to, cols};
}
}  // namespace gemm_detail

// The product with operands of any dtype, dispatched by the settings above.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, GemmInput A, GemmInput B,
                 float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta C (no operand is read)
    gemm_serial(false, false, M, N, 0, alpha, nullptr, 1, nullptr, 1, beta, C, ldc);
    return;
  }
  const bool bf16 = bf16_gemm_active();
  const DType compute = bf16 ? DType::bf16 : DType::f32;
  std::shared_ptr<Storage> a_keep, b_keep;  // converted copies live until the product is done
  const GemmInput a = gemm_detail::convert_operand(A, trans_a ? K : M, trans_a ? M : K, compute, a_keep);
  const GemmInput b = gemm_detail::convert_operand(B, trans_b ? N : K, trans_b ? K : N, compute, b_keep);
  if (bf16 || cpu_gemm_backend() == CpuGemmBackend::onednn)
    onednn_gemm(compute, trans_a, trans_b, M, N, K, alpha, a.data, a.ld, b.data, b.ld, beta, C, ldc);
  else
    openblas_gemm(trans_a, trans_b, M, N, K, alpha, static_cast<const float*>(a.data), a.ld,
                  static_cast<const float*>(b.data), b.ld, beta, C, ldc);
}

// Float operands with leading dimensions. With OpenBLAS and FP32 this is exactly openblas_gemm.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm(trans_a, trans_b, M, N, K, alpha, GemmInput{A, DType::f32, lda}, GemmInput{B, DType::f32, ldb}, beta, C, ldc);
}

// Convenience for dense row-major operands: leading dimensions follow from the shapes.
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 const float* B, float beta, float* C) {
  gemm(trans_a, trans_b, M, N, K, alpha, A, trans_a ? M : K, B, trans_b ? K : N, beta, C, N);
}

// Dense operands of any dtype (A, B as Tensor data pointers with their dtypes).
inline void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, DType a_type,
                 const void* B, DType b_type, float beta, float* C) {
  gemm(trans_a, trans_b, M, N, K, alpha, GemmInput{A, a_type, trans_a ? M : K}, GemmInput{B, b_type, trans_b ? K : N},
       beta, C, N);
}

}  // namespace nr::cpu
