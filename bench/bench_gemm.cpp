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
// Run:  build/bin/bench_gemm [--benchmark_filter=tiny]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstdint>
#include <string>
#include <vector>

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
  return true;
}();

}  // namespace
