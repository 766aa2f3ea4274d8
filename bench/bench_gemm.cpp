// bench_gemm.cpp — nr's GEMM path against raw OpenBLAS cblas_sgemm, on the shapes of the presets.
//
//   C (M, N) = op(A) op(B),  2 M N K floating-point operations per call, row-major float32.
//
// BM_cblas_sgemm   raw cblas_sgemm, OpenBLAS using `threads` of its own pthreads
// BM_nr_gemm       nr::cpu::gemm with nr::set_num_threads(threads): OpenBLAS single-threaded, the
//                  product split into one row (or column) block per OpenMP thread
// Shapes, for the B*T rows of a batch (nano 16 x 128, tiny 16 x 256, small 16 x 512), C the width,
// F the FFN width, and the three products of a Linear layer y = x W^T (W [out, in]):
//   fwd   y (M, out) = x (M, in) W^T          trans_b
//   dx    dx (M, in) = dy (M, out) W          plain
//   dw    dW (out, in) = dy^T (out, M) x      trans_a, K = M (the reduction over the batch)
// with (in, out) = (C, C) (attention projections), (C, F) (gate/up), (F, C) (down).
// The "FLOPS" counter is a rate; Google Benchmark prints it with SI prefixes ("95G/s" = 95 GFLOP/s).
//
// The CPU backends on SmolLM2-135M's shapes (C 576, F 1536, K/V projections 192, vocabulary
// 49 152; 4 x 512 = 2048 rows), the same three products per layer plus the output head:
// BM_openblas      nr::cpu::openblas_gemm (OpenBLAS, split on nr's OpenMP threads; the default)
// BM_onednn_f32    nr::cpu::onednn_gemm, FP32 (oneDNN's brgemm AVX-512 kernel)
// BM_onednn_bf16   nr::cpu::onednn_gemm, BF16 x BF16 -> FP32, operands already in BF16 (a
//                  frozen weight stored as BF16; the ceiling of BF16 compute)
// BM_nr_bf16       nr::cpu::gemm with Precision::bf16 and float operands: includes rounding both
//                  operands to BF16 on every call (what matmul does for float activations)
//
// Run:  build/bin/bench_gemm [--benchmark_filter=tiny|smollm2]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nr/backend/cpu/bf16.hpp>
#include <nr/backend/cpu/gemm.hpp>
#include <nr/core/rng.hpp>

namespace {

struct GemmShape {
  bool ta, tb;
  int64_t M, N, K;
};

std::vector<float> random_matrix(int64_t n, uint64_t seed) {
  nr::Tensor t = nr::Tensor::empty(nr::Shape{n});
  nr::Rng rng(seed);
  nr::uniform_(t, -1.0, 1.0, rng);
  return t.to_vector();
}

// The three products of a Linear layer with `in` -> `out` features over `rows` rows.
GemmShape linear_shape(const std::string& which, int64_t rows, int64_t in, int64_t out) {
  if (which == "fwd") return {false, true, rows, out, in};
  if (which == "dx") return {false, false, rows, in, out};
  return {true, false, out, in, rows};  // dw
}

template <bool Nr>
void run_gemm(benchmark::State& state, GemmShape s, int threads) {
  const int64_t a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K;
  const int64_t b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
  const std::vector<float> a = random_matrix(a_rows * a_cols, 1), b = random_matrix(b_rows * b_cols, 2);
  std::vector<float> c(static_cast<size_t>(s.M * s.N), 0.0f);
  if (Nr) {
    nr::set_num_threads(threads);
  } else {
    openblas_set_num_threads(threads);
  }
  for (auto _ : state) {
    if (Nr)
      nr::cpu::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), b.data(), 0.0f, c.data());
    else
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                  static_cast<int>(s.M), static_cast<int>(s.N), static_cast<int>(s.K), 1.0f, a.data(),
                  static_cast<int>(a_cols), b.data(), static_cast<int>(b_cols), 0.0f, c.data(), static_cast<int>(s.N));
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.M * s.N * s.K),
                                               benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::OneK::kIs1000);
  state.counters["threads"] = threads;
}

enum class Cpu { openblas, onednn_f32, onednn_bf16, nr_bf16 };

void run_backend(benchmark::State& state, GemmShape s, int threads, Cpu which) {
  const int64_t a_rows = s.ta ? s.K : s.M, a_cols = s.ta ? s.M : s.K;
  const int64_t b_rows = s.tb ? s.N : s.K, b_cols = s.tb ? s.K : s.N;
  const std::vector<float> a = random_matrix(a_rows * a_cols, 1), b = random_matrix(b_rows * b_cols, 2);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  nr::cpu::f32_to_bf16(a.data(), a_rows, a_cols, a_cols, a16.data());
  nr::cpu::f32_to_bf16(b.data(), b_rows, b_cols, b_cols, b16.data());
  std::vector<float> c(static_cast<size_t>(s.M * s.N), 0.0f);
  nr::set_num_threads(threads);
  nr::GemmSettingsScope scope(nr::CpuGemmBackend::openblas, which == Cpu::nr_bf16 ? nr::Precision::bf16 : nr::Precision::fp32);
  if (which == Cpu::nr_bf16 && !nr::bf16_gemm_active()) {
    state.SkipWithError("this CPU has no AVX512_BF16");
    return;
  }
  std::string impl;
  if (which == Cpu::onednn_f32 || which == Cpu::onednn_bf16)
    impl = nr::cpu::onednn_impl_name(which == Cpu::onednn_bf16 ? nr::DType::bf16 : nr::DType::f32, s.ta, s.tb, s.M, s.N, s.K);
  for (auto _ : state) {
    switch (which) {
      case Cpu::openblas:
        nr::cpu::openblas_gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), a_cols, b.data(), b_cols, 0.0f, c.data(), s.N);
        break;
      case Cpu::onednn_f32:
        nr::cpu::onednn_gemm(nr::DType::f32, s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), a_cols, b.data(), b_cols, 0.0f,
                             c.data(), s.N);
        break;
      case Cpu::onednn_bf16:
        nr::cpu::onednn_gemm(nr::DType::bf16, s.ta, s.tb, s.M, s.N, s.K, 1.0f, a16.data(), a_cols, b16.data(), b_cols,
                             0.0f, c.data(), s.N);
        break;
      case Cpu::nr_bf16:
        nr::cpu::gemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, a.data(), a_cols, b.data(), b_cols, 0.0f, c.data(), s.N);
        break;
    }
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.M * s.N * s.K),
                                               benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::OneK::kIs1000);
  state.counters["threads"] = threads;
  if (!impl.empty()) state.SetLabel(impl);
}

struct Preset {
  const char* name;
  int64_t rows, C, F;
};

const bool registered = [] {
  const Preset presets[] = {{"nano", 16 * 128, 128, 352}, {"tiny", 16 * 256, 256, 704}, {"small", 16 * 512, 512, 1408}};
  for (const Preset& p : presets)
    for (const char* which : {"fwd", "dx", "dw"})
      for (const auto& [layer, in, out] : {std::tuple<const char*, int64_t, int64_t>{"attn", p.C, p.C},
                                           {"up", p.C, p.F},
                                           {"down", p.F, p.C}})
        for (int threads : {1, 2}) {
          const GemmShape s = linear_shape(which, p.rows, in, out);
          const std::string suffix = std::string(p.name) + "/" + layer + "_" + which + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(("BM_cblas_sgemm/" + suffix).c_str(),
                                       [s, threads](benchmark::State& st) { run_gemm<false>(st, s, threads); })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->MinTime(0.1);
          benchmark::RegisterBenchmark(("BM_nr_gemm/" + suffix).c_str(),
                                       [s, threads](benchmark::State& st) { run_gemm<true>(st, s, threads); })
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime()
              ->MinTime(0.1);
        }
  // SmolLM2-135M, 2048 rows: attention q/o (576 -> 576), k/v (576 -> 192), FFN gate/up
  // (576 -> 1536) and down (1536 -> 576), the output head (576 -> 49 152).
  const std::pair<const char*, Cpu> backends[] = {
      {"BM_openblas", Cpu::openblas}, {"BM_onednn_f32", Cpu::onednn_f32}, {"BM_onednn_bf16", Cpu::onednn_bf16},
      {"BM_nr_bf16", Cpu::nr_bf16}};
  for (const auto& [layer, in, out] : {std::tuple<const char*, int64_t, int64_t>{"qo", 576, 576},
                                       {"kv", 576, 192},
                                       {"up", 576, 1536},
                                       {"down", 1536, 576},
                                       {"head", 576, 49152}})
    for (const char* which : {"fwd", "dx", "dw"})
      for (int threads : {1, 2})
        for (const auto& [name, backend] : backends) {
          const GemmShape s = linear_shape(which, 2048, in, out);
          const std::string id = std::string(name) + "/smollm2/" + layer + "_" + which + "/threads:" + std::to_string(threads);
          benchmark::RegisterBenchmark(id.c_str(), [s, threads, backend = backend](benchmark::State& st) {
            run_backend(st, s, threads, backend);
          })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.2);
        }
  return true;
}();

}  // namespace
