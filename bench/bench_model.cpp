// bench_model.cpp — full training steps and evaluation forward passes of the presets.
//
// BM_train_step/<preset>   nr::train_step on random tokens: forward, backward, clipping, AdamW
//                          (full fine-tuning of nr::Llama)
// BM_eval_forward/<preset> the forward pass and the loss under nr::NoGrad
// Batch: nano and tiny 16 sequences, small 2 (a small step on 16 sequences takes seconds), each of
// the preset's full context. One untimed step first sizes every buffer. Counters: "tokens" is
// tokens per second; "FLOPS" the model FLOPs per second (nr::count_flops, train/flops.hpp).
// nrlab bench measures the same steps from the command line with more options.
//
// Run:  build/bin/bench_model [--benchmark_filter=tiny]
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include <nr/nr.hpp>

namespace {

nr::Batch random_batch(int64_t batch, int64_t T, int64_t vocab, uint64_t seed) {
  nr::Rng rng(seed);
  nr::Batch b;
  b.inputs.shape = b.targets.shape = nr::Shape{batch, T};
  for (int64_t i = 0; i < batch * T; ++i) {
    b.inputs.data.push_back(static_cast<int32_t>(rng.uniform() * static_cast<double>(vocab)) % static_cast<int32_t>(vocab));
    b.targets.data.push_back(static_cast<int32_t>(rng.uniform() * static_cast<double>(vocab)) % static_cast<int32_t>(vocab));
  }
  b.tags.assign(static_cast<size_t>(batch), 0);
  return b;
}

void run_model(benchmark::State& state, const std::string& preset, int64_t batch, bool train) {
  nr::set_num_threads(static_cast<int>(state.range(0)));
  const nr::ModelConfig c = nr::preset(preset);
  const int64_t T = c.max_position_embeddings;
  nr::Llama model(c, 1);
  nr::AdamW opt(nr::named_parameters(model), nr::AdamWConfig{.lr = 1e-4});
  const nr::Batch b = random_batch(batch, T, c.vocab_size, 2);
  int64_t step = 0;
  auto one = [&] {
    if (train) {
      benchmark::DoNotOptimize(nr::train_step(model, opt, b, 1e-4, 1.0, step++).loss);
    } else {
      nr::NoGrad ng;
      nr::ForwardContext ctx;
      benchmark::DoNotOptimize(model.loss(b.inputs, b.targets, ctx).item());
    }
  };
  one();  // untimed: sizes the buffers
  for (auto _ : state) one();
  const double tokens = static_cast<double>(batch * T);
  state.counters["tokens"] = benchmark::Counter(tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["FLOPS"] = benchmark::Counter(tokens * nr::count_flops(model, c, T).per_token(train),
                                               benchmark::Counter::kIsIterationInvariantRate,
                                               benchmark::Counter::OneK::kIs1000);
}

const bool registered = [] {
  for (const auto& [preset, batch] : {std::pair<const char*, int64_t>{"nano", 16}, {"tiny", 16}, {"small", 2}})
    for (bool train : {true, false}) {
      const std::string name = std::string(train ? "BM_train_step/" : "BM_eval_forward/") + preset;
      benchmark::RegisterBenchmark(name.c_str(), [preset = std::string(preset), batch = batch, train](
                                                     benchmark::State& st) { run_model(st, preset, batch, train); })
          ->ArgName("threads")
          ->Arg(1)
          ->Arg(2)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->MinTime(0.5);
    }
  return true;
}();

}  // namespace
