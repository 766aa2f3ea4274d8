// bench_ops.cpp — each primitive op, forward and backward, at the shapes of the tiny preset.
//
// One iteration = the op's forward (recorded on the tape) + backward from a ones gradient (made
// once; backward() still adds it into the output's gradient, one pass over the output), on
// B = 16 sequences of T = 256 tokens, C = 256 channels, H = 4 heads, F = 704, V = 256:
//   rms_norm        x (B, T, C), weight (C,)
//   silu_mul        gate, up (B, T, F)
//   rope            q (B, T, C), 4 heads
//   attention       q, k, v (B, T, C), 4 heads, causal (the fused kernel)
//   cross_entropy   logits (B*T, V) against random targets
//   embedding       table (V, C), ids (B, T)
//   softmax         x (B*T, V)
//   matmul          x (B*T, C) W^T, W (F, C) (a Linear layer)
//   adamw           one AdamW step over the tiny model's 3.3 M parameters (no backward)
// Counters: "elems" is the rate of output elements per second (forward + backward together);
// attention and matmul also report "FLOPS" (forward + backward matrix products).
//
// Run:  build/bin/bench_ops [--benchmark_filter=attention]
#include <benchmark/benchmark.h>

#include <functional>
#include <string>
#include <vector>

#include <nr/nr.hpp>
#include <nr/testing/gradcheck.hpp>

namespace {

constexpr int64_t B = 16, T = 256, C = 256, H = 4, F = 704, V = 256;

nr::Indices random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  nr::Rng rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(rng.uniform() * static_cast<double>(vocab)) % static_cast<int32_t>(vocab);
  return nr::Indices(std::move(v), nr::Shape{n});
}

// Runs forward + backward of `op` each iteration; `inputs` are zero-graded between iterations.
void run_op(benchmark::State& state, const std::vector<nr::Var>& inputs, const std::function<nr::Var()>& op,
            double flops_per_iter = 0.0) {
  nr::set_num_threads(static_cast<int>(state.range(0)));
  int64_t elems = 0;
  nr::Tensor ones;  // the upstream gradient, made once (its shape is known after the first call)
  for (auto _ : state) {
    nr::Var y = op();
    elems = y.numel();
    if (y.numel() == 1) {
      nr::backward(y);
    } else {
      if (!ones.defined()) ones = nr::Tensor::ones(y.shape());
      nr::backward(y, ones);
    }
    for (const nr::Var& v : inputs) v.zero_grad();
  }
  state.counters["elems"] = benchmark::Counter(static_cast<double>(elems), benchmark::Counter::kIsIterationInvariantRate);
  if (flops_per_iter > 0.0)
    state.counters["FLOPS"] = benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::OneK::kIs1000);
}

void BM_rms_norm(benchmark::State& state) {
  const nr::Var x = nr::testing::random_var(nr::Shape{B, T, C}, 1), w = nr::testing::random_var(nr::Shape{C}, 2);
  run_op(state, {x, w}, [&] { return nr::rms_norm(x, w, 1e-5); });
}
void BM_silu_mul(benchmark::State& state) {
  const nr::Var g = nr::testing::random_var(nr::Shape{B, T, F}, 1, -3, 3), u = nr::testing::random_var(nr::Shape{B, T, F}, 2);
  run_op(state, {g, u}, [&] { return nr::silu_mul(g, u); });
}
void BM_rope(benchmark::State& state) {
  const nr::Var q = nr::testing::random_var(nr::Shape{B, T, C}, 1);
  run_op(state, {q}, [&] { return nr::rope(q, H); });
}
void BM_attention(benchmark::State& state) {
  const nr::Var q = nr::testing::random_var(nr::Shape{B, T, C}, 1), k = nr::testing::random_var(nr::Shape{B, T, C}, 2),
                v = nr::testing::random_var(nr::Shape{B, T, C}, 3);
  // Forward 4 B T^2 C (Q K^T and P V, causal half not discounted), backward twice that.
  run_op(state, {q, k, v}, [&] { return nr::causal_attention(q, k, v, H, H); }, 12.0 * B * T * T * C);
}
void BM_cross_entropy(benchmark::State& state) {
  const nr::Var z = nr::testing::random_var(nr::Shape{B * T, V}, 1, -4, 4);
  const nr::Indices t = random_ids(B * T, V, 2);
  run_op(state, {z}, [&] { return nr::cross_entropy(z, t); });
}
void BM_embedding(benchmark::State& state) {
  const nr::Var table = nr::testing::random_var(nr::Shape{V, C}, 1);
  nr::Indices ids = random_ids(B * T, V, 2);
  ids.shape = nr::Shape{B, T};
  run_op(state, {table}, [&] { return nr::embedding(table, ids); });
}
void BM_softmax(benchmark::State& state) {
  const nr::Var x = nr::testing::random_var(nr::Shape{B * T, V}, 1, -4, 4);
  run_op(state, {x}, [&] { return nr::softmax(x); });
}
void BM_matmul(benchmark::State& state) {
  const nr::Var x = nr::testing::random_var(nr::Shape{B * T, C}, 1), w = nr::testing::random_var(nr::Shape{F, C}, 2);
  run_op(state, {x, w}, [&] { return nr::linear(x, w); }, 6.0 * B * T * C * F);
}
void BM_adamw(benchmark::State& state) {
  nr::set_num_threads(static_cast<int>(state.range(0)));
  nr::Llama model(nr::preset("tiny"), 1);
  const auto params = nr::named_parameters(model);
  for (const auto& [name, p] : params) p.grad_buffer().fill_(1e-3f);
  nr::AdamW opt(params, nr::AdamWConfig{});
  for (auto _ : state) opt.step(1e-4);
  state.counters["params/s"] = benchmark::Counter(static_cast<double>(nr::count_parameters(model)),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

#define NR_OP_BENCH(fn) BENCHMARK(fn)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime()
NR_OP_BENCH(BM_rms_norm);
NR_OP_BENCH(BM_silu_mul);
NR_OP_BENCH(BM_rope);
NR_OP_BENCH(BM_attention);
NR_OP_BENCH(BM_cross_entropy);
NR_OP_BENCH(BM_embedding);
NR_OP_BENCH(BM_softmax);
NR_OP_BENCH(BM_matmul);
NR_OP_BENCH(BM_adamw);

}  // namespace
