// bench_gemm.cpp — throughput of raw OpenBLAS cblas_sgemm, the baseline for nr's GEMM path.
//
// Computes C = A @ B in row-major float32:
//   A (M, K), B (K, N), C (M, N),  2*M*N*K floating-point operations per call.
// The shapes are those of a small transformer block on B*T = 4096 rows:
//   M=4096 N=256 K=256   attention projection            (C -> C)
//   M=4096 N=704 K=256   gated-FFN up/gate projection    (C -> F)
//   M=4096 N=256 K=704   gated-FFN down projection       (F -> C)
// The "FLOPS" counter is a rate (FLOP per second of wall time); Google Benchmark prints it
// with SI prefixes, so "45G/s" means 45 GFLOP/s.
//
// Run:  build/bin/bench_gemm                 (threads: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace {

std::vector<float> random_matrix(std::size_t rows, std::size_t cols, std::uint32_t seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> m(rows * cols);
    for (auto& x : m) x = dist(gen);
    return m;
}

void BM_cblas_sgemm(benchmark::State& state) {
    const auto M = static_cast<int>(state.range(0));
    const auto N = static_cast<int>(state.range(1));
    const auto K = static_cast<int>(state.range(2));
    const auto a = random_matrix(static_cast<std::size_t>(M), static_cast<std::size_t>(K), 1);  // (M, K)
    const auto b = random_matrix(static_cast<std::size_t>(K), static_cast<std::size_t>(N), 2);  // (K, N)
    std::vector<float> c(static_cast<std::size_t>(M) * static_cast<std::size_t>(N), 0.0f);     // (M, N)

    for (auto _ : state) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K,
                    1.0f, a.data(), K, b.data(), N, 0.0f, c.data(), N);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }

    const double flops_per_call = 2.0 * M * N * K;
    state.counters["FLOPS"] = benchmark::Counter(flops_per_call,
                                                 benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::OneK::kIs1000);
}

}  // namespace

BENCHMARK(BM_cblas_sgemm)
    ->ArgNames({"M", "N", "K"})
    ->Args({4096, 256, 256})
    ->Args({4096, 704, 256})
    ->Args({4096, 256, 704})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
