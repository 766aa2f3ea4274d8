// nrlab/common.hpp — what the nrlab subcommands share: the recipes library (nr/recipes/*, whose
// names nrlab uses unqualified), signal handling, threads, printing helpers and readable
// command-line range checks.
#pragma once

#include <atomic>
#include <csignal>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nr/nr.hpp>
#include <nr/recipes/downstream.hpp>
#include <nr/recipes/evaluate.hpp>
#include <nr/recipes/extend.hpp>
#include <nr/recipes/load.hpp>
#include <nr/recipes/pretrain.hpp>
#include <nr/recipes/prune.hpp>
#include <nr/recipes/registry.hpp>
#include <nr/recipes/reproduce.hpp>
#include <nr/recipes/tables.hpp>

namespace nrlab {

namespace fs = std::filesystem;
using namespace nr::recipes;

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

inline void apply_threads(int threads) {
  if (threads > 0)
    nr::set_num_threads(threads);
  else
    nr::init_threads_from_env();
}

// The recipes' messages, one line each on stderr.
inline MessageFn to_stderr() {
  return [](const std::string& line) { fmt::print(stderr, "{}\n", line); };
}

inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// Range checks whose message says what is wrong in words ("must be at least 1, got 0") instead
// of CLI11's "Value 0 not in range 0.000000 to 1.797693e+308".
inline CLI::Validator at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& in) -> std::string {
        double v = 0.0;
        if (!CLI::detail::lexical_cast(in, v)) return fmt::format("must be a number, got '{}'", in);
        return v >= lo ? std::string() : fmt::format("must be at least {}, got {}", lo, in);
      },
      fmt::format("NUMBER >= {}", lo));
}
inline CLI::Validator above(double lo) {
  return CLI::Validator(
      [lo](std::string& in) -> std::string {
        double v = 0.0;
        if (!CLI::detail::lexical_cast(in, v)) return fmt::format("must be a number, got '{}'", in);
        return v > lo ? std::string() : fmt::format("must be greater than {}, got {}", lo, in);
      },
      fmt::format("NUMBER > {}", lo));
}
inline CLI::Validator between(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        double v = 0.0;
        if (!CLI::detail::lexical_cast(in, v)) return fmt::format("must be a number, got '{}'", in);
        return v >= lo && v <= hi ? std::string() : fmt::format("must be between {} and {}, got {}", lo, hi, in);
      },
      fmt::format("NUMBER in [{}, {}]", lo, hi));
}
inline CLI::Validator positive() { return above(0.0); }
inline CLI::Validator non_negative() { return at_least(0.0); }

// Binds an option to a std::optional (empty unless given on the command line).
template <class T>
CLI::Option* add_optional(CLI::App* c, const std::string& name, std::optional<T>& target, const std::string& help) {
  return c->add_option_function<T>(name, [&target](const T& v) { target = v; }, help);
}

}  // namespace nrlab
