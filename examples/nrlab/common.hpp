// nrlab/common.hpp — pieces shared by the nrlab subcommands.
#pragma once

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nr/data/domain.hpp>
#include <nr/io/checkpoint.hpp>
#include <nr/nr.hpp>
#include <nr/train/trainer.hpp>

namespace nrlab {

namespace fs = std::filesystem;

// Creates the backbone type named by config.hidden_act and hands it to `f` (a generic lambda),
// so every subcommand works for Llama (SiLU) and Gemma-style (GELU) FFNs.
template <class F>
decltype(auto) with_model(const nr::ModelConfig& config, uint64_t seed, F&& f) {
  if (config.hidden_act == "silu") {
    nr::Llama model(config, seed);
    return f(model);
  }
  nr::LanguageModel<nr::GemmaStyleBlock> model(config, seed);
  return f(model);
}

inline std::vector<int32_t> tokenize(const std::string& text) { return nr::ByteTokenizer{}.encode(text); }

// SIGINT / SIGTERM request a clean stop: the training loop finishes its step, saves a resumable
// checkpoint and exits. A second signal kills at once (the checkpoint on disk stays valid because
// every write is atomic).
inline std::atomic<int>& stop_signal() {
  static std::atomic<int> s{0};
  return s;
}
inline void install_stop_handlers() {
  auto handler = +[](int sig) {
    if (stop_signal().exchange(sig) != 0) {
      std::signal(sig, SIG_DFL);
      std::raise(sig);
    }
  };
  std::signal(SIGINT, handler);
  std::signal(SIGTERM, handler);
}

// Resumes from the training state in `dir` when there is one (weights, AdamW moments, step);
// returns the step to start from (0 for a fresh run).
template <class Model>
int64_t resume_if_present(const fs::path& dir, Model& model, nr::AdamW& opt, const std::string& label) {
  if (!nr::has_training_state(dir)) return 0;
  const int64_t step = nr::load_training_state(dir, model, opt);
  fmt::print(stderr, "[{}] resuming {} at step {}\n", label, dir.string(), step);
  return step;
}

// Warmup steps when --warmup is not given: a tenth of the run, at most 100.
inline int64_t default_warmup(int64_t warmup, int64_t steps) {
  return warmup >= 0 ? warmup : std::min<int64_t>(100, steps / 10);
}

inline void apply_threads(int threads) {
  if (threads > 0)
    nr::set_num_threads(threads);
  else
    nr::init_threads_from_env();
}

}  // namespace nrlab
